// Package s3 is the chunk store kept in a bucket of any S3-compatible
// object store (AWS S3, MinIO, Ceph RGW, versitygw, …), built on
// minio-go. One chunk is one object, `<prefix>/<first 4 hex of id>/<64 hex
// id>.chunk`, holding the chunk's bytes as they are: the same layout as
// an uncompressed local store, so copying a bucket to disk (or a local
// store to a bucket) with any sync tool gives a working store. With
// Options.Layout LayoutCasync the objects are those desync's S3 store
// reads and writes instead: `<prefix>/<4 hex>/<64 hex id>.cacnk`, one zstd
// frame each, the id the SHA512/256 of the uncompressed bytes; an object
// that is no frame is stores.ErrCorrupt, and the store is shared with
// desync (stores.Sharer), so gc never deletes from it.
//
// It must not import anything of dualstore but package stores.
//
// # Invariants
//
//   - Put is one single-part PUT (never multipart), which S3 makes atomic:
//     a reader sees the whole chunk or NoSuchKey. Put first checks whether
//     the object exists and leaves it alone if so.
//   - Keys are built only from ID.String(), so no id can name an object
//     outside the prefix; List reports only keys that are exactly a chunk
//     of this prefix and skips everything else (other prefixes, foreign or
//     misplaced objects).
//   - A missing object is stores.ErrNotFound, and nothing else is: a
//     missing bucket is ErrNoBucket, refused credentials ErrAuth, an
//     unreachable server ErrUnavailable, a call that ran out of time
//     stores.ErrTimeout. Whether a chunk exists is asked with a GET of its
//     first byte, never a HEAD: a HEAD's answer has no body, so its error
//     code is lost, and servers answer unknown credentials to a HEAD with
//     400 or 404.
//   - Get does not verify a chunk against its id; the tier does. It is
//     bounded by the chunk's stores.Bound: an object whose Content-Length
//     is more than the chunk can take stored is ErrCorrupt without its
//     body being read, a body is read through a limit of that plus one
//     byte, and a chunk of another size (or, in the casync layout, a
//     frame decoding past it) is ErrCorrupt.
//   - Meta objects (stores.MetaStore: the index backup) are the objects
//     `<prefix>/_meta/<name>`. `_meta` is no 4-hex shard, so List never
//     reports them. PutMeta is one single-part PUT, which replaces; GetMeta
//     refuses an object whose Content-Length is over its bound without
//     reading the body, and never reads more than bound+1 bytes. A prefix
//     with a `_meta` segment is refused: it would lie among the meta
//     objects of the store one level up.
//   - Secrets never reach a log or an error: Options.String redacts them,
//     and errors name the endpoint, bucket, prefix and chunk only.
//
// # Timeouts, retries and outages
//
// What we rely on minio-go for, and what we add:
//
//   - Request retries are minio-go's: a request failing with a network
//     error (refused, reset, timeout) or a retryable answer (HTTP 408, 429,
//     499, 500, 502, 503, 504, 520, or the codes SlowDown, InternalError,
//     RequestTimeout, Throttling, ExpiredToken…) is sent again up to
//     Options.Retries times, after a full-jitter exponential backoff of
//     200ms doubling up to 1s (minio-go's package defaults, which we do not
//     change). Other answers (403, 404, 400) are final at once.
//   - minio-go does not retry a GET whose body breaks off after the
//     headers; Get does, with the same backoff and count.
//   - Options.Timeout bounds a whole call, retries included (a context
//     deadline; the error wraps stores.ErrTimeout). The HTTP transport
//     bounds each attempt too: connecting and the TLS handshake within
//     10s, the response headers within Timeout.
//   - The caller's context still applies: the dual manager's store_timeout
//     is the outer bound, and cancelling a call (a `fastest` read that lost
//     the race) ends its request.
//   - Outages: once a call finds the server unreachable after its retries,
//     or times out, every call fails at once with ErrUnavailable for
//     Options.OutageBackoff (doubling while the outage lasts, at most 15s);
//     then calls try the server again. A mount whose S3 tier is down thus
//     keeps writing at local speed (the missed chunks go to the pending
//     backfill list) instead of waiting out timeouts chunk by chunk.
//   - Options.Concurrency bounds the calls talking to the server at once;
//     more wait for a slot (or for their context).
//
// # Credentials
//
// Explicit keys (Options.AccessKey/SecretKey/SessionToken) win. Without
// them the standard AWS chain is read: the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the shared files
// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, and the AWS config
// file, profile AWS_PROFILE or "default"). That the store reads the
// environment and these files itself is a deliberate exception to "only
// cmd reads the environment": it is the chain every S3 tool follows, and
// resolving it here keeps the mount and the offline commands alike. No
// credentials at all is an error (ErrNoCredentials) unless
// Options.Anonymous is set. Instance-metadata (EC2/ECS role) credentials
// are not looked up: probing that endpoint off-cloud can hang.
package s3
