package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
)

const (
	// chunkExt ends every chunk's key, as in the local store.
	chunkExt = ".chunk"
	// shardLen is how many hex digits of the id name its "directory", as
	// in the local store: some servers (versitygw's posix backend, ceph
	// with a filesystem gateway) map key prefixes to directories.
	shardLen = 4
	// dialTimeout bounds a TCP connect; a server that does not accept
	// within it is as good as down.
	dialTimeout = 10 * time.Second
	// retryUnit and retryCap shape the backoff of Get's body retries,
	// like minio-go's request retries (200ms doubling, capped at 1s).
	retryUnit = 200 * time.Millisecond
	retryCap  = time.Second
)

// errCallTimeout is the cause of the deadline Options.Timeout sets, so an
// error can say the store timed out rather than that the caller gave up.
var errCallTimeout = errors.New("s3 call timed out")

// Store is a chunk store in an S3 bucket. Safe for concurrent use.
type Store struct {
	name   string
	where  string // scheme://host/bucket/prefix, for errors
	opts   Options
	client *minio.Client
	core   minio.Core
	tr     *http.Transport
	bucket string
	// keyPrefix is "" or the normalised prefix plus "/".
	keyPrefix  string
	timeout    time.Duration
	retries    int
	credSource string
	// casync is set for LayoutCasync; codec is nil in the dualstore
	// layout.
	casync bool
	codec  *codec

	sem chan struct{}
	out outage

	// mu guards closed and the WaitGroup's Add, so Close never waits for
	// a call that starts after it.
	mu      sync.Mutex
	closed  bool
	calls   sync.WaitGroup
	closing context.Context
	stop    context.CancelCauseFunc
}

var (
	_ stores.Store  = (*Store)(nil)
	_ stores.Lister = (*Store)(nil)
)

// New connects to the server and checks that the bucket exists and that
// the credentials may use it (creating the bucket when opts.CreateBucket
// is set). Its errors name the endpoint and the bucket; a credentials
// problem wraps ErrAuth, an unreachable server ErrUnavailable, a missing
// bucket ErrNoBucket.
func New(ctx context.Context, opts Options) (*Store, error) {
	s, err := newStore(opts)
	if err != nil {
		return nil, err
	}
	if err := s.checkBucket(ctx); err != nil {
		s.stop(stores.ErrClosed)
		s.tr.CloseIdleConnections()
		if s.codec != nil {
			s.codec.close()
		}
		return nil, err
	}
	return s, nil
}

// newStore builds the store without any network access.
func newStore(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	host, secure, _ := opts.endpoint()
	prefix := normPrefix(opts.Prefix)
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	where := scheme + "://" + host + "/" + opts.Bucket
	if prefix != "" {
		where += "/" + prefix
	}
	creds, source, err := resolveCredentials(opts)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	s := &Store{
		name:       opts.Name,
		where:      where,
		opts:       opts,
		bucket:     opts.Bucket,
		timeout:    opts.timeout(),
		retries:    opts.attempts() - 1,
		credSource: source,
		sem:        make(chan struct{}, opts.concurrency()),
		out:        outage{base: opts.outageBackoff()},
		casync:     opts.Layout == LayoutCasync,
	}
	if s.name == "" {
		s.name = "s3://" + opts.Bucket
		if prefix != "" {
			s.name += "/" + prefix
		}
	}
	if prefix != "" {
		s.keyPrefix = prefix + "/"
	}
	s.tr = s.transport(secure)
	lookup := minio.BucketLookupAuto
	switch opts.Addressing {
	case AddressingPath:
		lookup = minio.BucketLookupPath
	case AddressingVirtualHost:
		lookup = minio.BucketLookupDNS
	}
	s.client, err = minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Transport:    s.tr,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   opts.attempts(),
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	if s.casync {
		if s.codec, err = newCodec(); err != nil {
			return nil, fmt.Errorf("s3 %s: %w", where, err)
		}
	}
	s.client.SetAppInfo("dualstore", "1")
	s.core = minio.Core{Client: s.client}
	s.closing, s.stop = context.WithCancelCause(context.Background())
	return s, nil
}

// transport is minio-go's default transport with our timeouts: a dead
// server fails a connect within dialTimeout, a hung one a request within
// Timeout, and connections are kept for reuse as many as calls may run.
func (s *Store) transport(secure bool) *http.Transport {
	perAttempt := s.timeout
	if perAttempt == 0 {
		perAttempt = 5 * time.Minute
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(dialTimeout, perAttempt), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          2 * cap(s.sem),
		MaxIdleConnsPerHost:   cap(s.sem),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(dialTimeout, perAttempt),
		ResponseHeaderTimeout: perAttempt,
		ExpectContinueTimeout: time.Second,
		// Chunks are stored as they are; never let the transport decode
		// a Content-Encoding a proxy added.
		DisableCompression: true,
	}
	if secure {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.opts.InsecureSkipVerify}
	}
	return tr
}

// probeKey is the object New reads to check the bucket and the
// credentials. Nobody writes it; List skips it (it is no chunk's key).
const probeKey = ".dualstore-probe"

// checkBucket is New's probe: a GET of probeKey, which needs only the
// permission Get needs anyway. A GET, not a HEAD: HEAD answers carry no
// error body, and some servers answer a HEAD with unknown credentials 404,
// which would read as "bucket missing" or "chunk missing".
func (s *Store) checkBucket(ctx context.Context) error {
	cctx, done, err := s.begin(ctx, "open", nil, true)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.rangedStat(cctx, s.keyPrefix+probeKey)
	var er minio.ErrorResponse
	errors.As(err, &er)
	if er.Code == minio.NoSuchKey {
		err = nil
	}
	if er.Code == minio.NoSuchBucket {
		if !s.opts.CreateBucket {
			s.out.ok()
			return fmt.Errorf("s3 %s: %w (create it, or set create_bucket)", s.where, ErrNoBucket)
		}
		err = s.client.MakeBucket(cctx, s.bucket, minio.MakeBucketOptions{Region: s.opts.Region})
		if errors.As(err, &er) && (er.Code == "BucketAlreadyOwnedByYou" || er.Code == "BucketAlreadyExists") {
			err = nil // created meanwhile
		}
	}
	if err != nil {
		err = s.fail(ctx, cctx, "open bucket", nil, err)
		if errors.Is(err, ErrAuth) {
			err = fmt.Errorf("%w (the store needs s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on the bucket; without s3:ListBucket AWS answers a missing chunk with AccessDenied)", err)
		}
		return err
	}
	s.out.ok()
	return nil
}

// rangedStat returns the size of key with a GET of its first byte. Not a
// HEAD: HEAD answers carry no error body, so the server's error code is
// lost, and some servers answer a HEAD with credentials they do not know
// with 404 (versitygw) or 400, which would read as a missing chunk.
func (s *Store) rangedStat(ctx context.Context, key string) (int64, error) {
	var opts minio.GetObjectOptions
	_ = opts.SetRange(0, 0)
	body, info, h, err := s.core.GetObject(ctx, s.bucket, key, opts)
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code == "InvalidRange" {
		return 0, nil // exists, and is empty: there is no first byte
	}
	if err != nil {
		return 0, err
	}
	body.Close()
	return objectSize(key, info, h)
}

// objectSize is the whole object's size from the answer to a ranged GET:
// the total of its Content-Range ("bytes 0-0/1234"), or its
// Content-Length when the server ignored the range and sent it all.
func objectSize(key string, info minio.ObjectInfo, h http.Header) (int64, error) {
	cr := h.Get("Content-Range")
	if cr == "" {
		return info.Size, nil
	}
	i := strings.LastIndexByte(cr, '/')
	size, perr := strconv.ParseInt(cr[i+1:], 10, 64)
	if i < 0 || perr != nil || size < 0 {
		return 0, fmt.Errorf("ranged GET of %s: unexpected Content-Range %q", key, cr)
	}
	return size, nil
}

// Name returns the configured name, or "s3://bucket/prefix".
func (s *Store) Name() string { return s.name }

// Type returns "s3".
func (s *Store) Type() string { return "s3" }

// String describes the store without its credentials, so printing a Store
// with any fmt verb is safe.
func (s *Store) String() string { return fmt.Sprintf("s3 store %s (%s)", s.name, s.where) }

// GoString is String, so %#v is safe too.
func (s *Store) GoString() string { return s.String() }

// Where returns "scheme://host/bucket[/prefix]": what errors name.
func (s *Store) Where() string { return s.where }

// CredentialSource says where the credentials came from ("config
// (access_key)", "environment (AWS_ACCESS_KEY_ID)", a shared file and
// profile, or "anonymous"). It never holds a secret.
func (s *Store) CredentialSource() string { return s.credSource }

// key returns the object key of id: [prefix/]<4 hex>/<64 hex>.chunk, or
// .cacnk in the casync layout (desync's S3Store.nameFromID).
func (s *Store) key(id stores.ID) string {
	h := id.String()
	return s.keyPrefix + h[:shardLen] + "/" + h + s.ext()
}

// parseKey returns the id a key names, or false for a key that is not one
// of this store's chunks (another prefix's, a misplaced or foreign one).
func (s *Store) parseKey(key string) (stores.ID, bool) {
	rest, ok := strings.CutPrefix(key, s.keyPrefix)
	if !ok {
		return stores.ID{}, false
	}
	shard, name, ok := strings.Cut(rest, "/")
	if !ok || len(shard) != shardLen {
		return stores.ID{}, false
	}
	hex, ok := strings.CutSuffix(name, s.ext())
	if !ok {
		return stores.ID{}, false
	}
	id, err := stores.ParseID(hex)
	if err != nil || id.String() != hex || hex[:shardLen] != shard {
		return stores.ID{}, false // upper case or misplaced: Get would not find it
	}
	return id, true
}

// begin admits a call: it fails at once when ctx is done, the store is
// closed or an outage is assumed, waits for a slot of the concurrency
// bound, and returns the call's context (ended by Close, bounded by
// Timeout when timed) and the function that ends the call.
func (s *Store) begin(ctx context.Context, op string, id *stores.ID, timed bool) (context.Context, func(), error) {
	fail := func(err error) (context.Context, func(), error) {
		if id == nil {
			return nil, nil, fmt.Errorf("s3 %s: %s: %w", s.where, op, err)
		}
		return nil, nil, fmt.Errorf("s3 %s: %s %s: %w", s.where, op, id, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(stores.ErrClosed)
	}
	s.calls.Add(1)
	s.mu.Unlock()
	if err := s.out.check(); err != nil {
		s.calls.Done()
		return fail(err)
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		s.calls.Done()
		return fail(ctx.Err())
	case <-s.closing.Done():
		s.calls.Done()
		return fail(stores.ErrClosed)
	}
	// Another call may have found the server down while this one waited.
	if err := s.out.check(); err != nil {
		<-s.sem
		s.calls.Done()
		return fail(err)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(s.closing, func() { cancel(stores.ErrClosed) })
	tcancel := context.CancelFunc(func() {})
	if timed && s.timeout > 0 {
		cctx, tcancel = context.WithTimeoutCause(cctx, s.timeout, errCallTimeout)
	}
	return cctx, func() {
		tcancel()
		unhook()
		cancel(nil)
		<-s.sem
		s.calls.Done()
	}, nil
}

// fail turns a failed call's error into the store's: it names the store,
// the operation and the chunk, wraps the sentinel that says what went
// wrong, and feeds the outage breaker. ctx is the caller's, cctx the
// call's own.
func (s *Store) fail(ctx, cctx context.Context, op string, id *stores.ID, err error) error {
	switch {
	case ctx.Err() != nil:
		// The caller gave up (or its deadline passed): say so first, so
		// errors.Is(err, ctx.Err()) holds. A deadline whose cause is
		// stores.ErrTimeout is the caller's bound on a store call (the
		// dual manager's store_timeout): the server hung, an outage.
		if errors.Is(context.Cause(ctx), stores.ErrTimeout) {
			s.out.failed(fmt.Errorf("%s: no answer within the caller's store timeout", op))
		}
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	case errors.Is(context.Cause(cctx), stores.ErrClosed):
		err = fmt.Errorf("%w: %w", stores.ErrClosed, err)
	case errors.Is(context.Cause(cctx), errCallTimeout):
		s.out.failed(fmt.Errorf("%s timed out after %s", op, s.timeout))
		err = fmt.Errorf("%w: no answer within %s (timeout): %w", stores.ErrTimeout, s.timeout, err)
	default:
		if unreachable(err) {
			s.out.failed(err)
		} else if answered(err) {
			s.out.ok()
		}
		err = classify(err)
	}
	if id == nil {
		return fmt.Errorf("s3 %s: %s: %w", s.where, op, err)
	}
	return fmt.Errorf("s3 %s: %s %s: %w", s.where, op, id, err)
}

// Get reads the chunk. It does not verify it (the tier does); a missing
// object wraps stores.ErrNotFound, and a body cut short is retried like a
// failed request. In the casync layout the object is decompressed, and
// one that is no zstd frame or does not decode wraps stores.ErrCorrupt.
//
// Reads are bounded (stores.BoundOf): an object whose Content-Length is
// more than its chunk can take stored (the chunk's expected size, else the
// max; in the casync layout the zstd bound of that) is ErrCorrupt without
// its body being read, a body is never read past that limit, and a chunk
// of another size than expected, or that decodes past its bound, is
// ErrCorrupt too.
func (s *Store) Get(ctx context.Context, id stores.ID) ([]byte, error) {
	cctx, done, err := s.begin(ctx, "get", &id, true)
	if err != nil {
		return nil, err
	}
	defer done()
	b := stores.BoundOf(ctx, id)
	limit := b.Limit()
	if s.casync {
		limit = b.StoredLimit()
	}
	for attempt := 0; ; attempt++ {
		data, retry, err := s.get(cctx, id, limit)
		if err == nil {
			data, err = s.decode(data, b)
		}
		if err == nil || errors.Is(err, stores.ErrCorrupt) {
			s.out.ok() // the server answered
		}
		if err == nil {
			return data, nil
		}
		if errors.Is(err, stores.ErrCorrupt) {
			return nil, fmt.Errorf("s3 %s: get %s: %s: %w", s.where, id, s.key(id), err)
		}
		if !retry || attempt >= s.retries || !sleep(cctx, backoff(attempt)) {
			return nil, s.fail(ctx, cctx, "get", &id, err)
		}
	}
}

// get is one GET, of an object of at most limit bytes (a larger one wraps
// stores.ErrCorrupt, and no more than limit+1 bytes of a body are read).
// retry says the request succeeded but reading the body failed, which
// minio-go does not retry by itself.
func (s *Store) get(ctx context.Context, id stores.ID, limit int64) (data []byte, retry bool, err error) {
	body, info, _, err := s.core.GetObject(ctx, s.bucket, s.key(id), minio.GetObjectOptions{})
	if err != nil {
		return nil, false, err
	}
	defer body.Close()
	if info.Size > limit {
		return nil, false, fmt.Errorf("%w: the object is %d bytes, more than the chunk can take stored (%d)", stores.ErrCorrupt, info.Size, limit)
	}
	r := io.LimitReader(body, limit+1)
	if info.Size >= 0 {
		data = make([]byte, info.Size)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, ctx.Err() == nil, fmt.Errorf("reading %d bytes: %w", info.Size, err)
		}
		return data, false, nil
	}
	data, err = io.ReadAll(r)
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("reading the object: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("%w: the object is more than the chunk can take stored (%d)", stores.ErrCorrupt, limit)
	}
	return data, false, nil
}

// backoff is the wait before retry attempt+1: full jitter over an
// exponential step.
func backoff(attempt int) time.Duration {
	d := min(retryUnit<<min(attempt, 10), retryCap)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx is done, and reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Put stores the chunk as one object with a single PUT, which S3 makes
// atomic: readers see all of it or none. A check first (rangedStat) skips
// chunks the bucket holds already, so they are not rewritten (measured
// against versitygw: about 5% slower for new chunks, five times faster for
// present ones). A conditional PUT (If-None-Match: *) would save the check,
// but servers answer a present key with 412 before reading the body and
// reset the connection, which the client sees as a network failure.
func (s *Store) Put(ctx context.Context, id stores.ID, data []byte) error {
	cctx, done, err := s.begin(ctx, "put", &id, true)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.rangedStat(cctx, s.key(id))
	if err == nil {
		s.out.ok()
		return nil
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.Code != minio.NoSuchKey {
		return s.fail(ctx, cctx, "put", &id, err)
	}
	if err := s.put(cctx, id, data); err != nil {
		return s.fail(ctx, cctx, "put", &id, err)
	}
	s.out.ok()
	return nil
}

func (s *Store) put(ctx context.Context, id stores.ID, data []byte) error {
	// The transport may still read a request body after the response
	// came (a server that answers an error before reading it): the guard
	// makes sure nothing reads the caller's buffer once Put has returned.
	data = s.encode(data)
	contentType := "application/octet-stream"
	if s.casync {
		contentType = "application/zstd" // as desync's StoreChunk
	}
	body := &guardedReader{r: bytes.NewReader(data)}
	defer body.close()
	_, err := s.client.PutObject(ctx, s.bucket, s.key(id), body, int64(len(data)), minio.PutObjectOptions{
		ContentType:      contentType,
		DisableMultipart: true,
	})
	return err
}

// guardedReader reads from r until closed, then fails every read.
type guardedReader struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

var errBodyClosed = errors.New("s3: request body read after Put returned")

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errBodyClosed
	}
	return g.r.Read(p)
}

func (g *guardedReader) Seek(off int64, whence int) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errBodyClosed
	}
	return g.r.Seek(off, whence)
}

func (g *guardedReader) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Stat returns the object's size (chunks are stored as they are, so that
// is the chunk's size); a missing object wraps stores.ErrNotFound. In the
// casync layout it is the size the zstd frame header records (-1 when it
// records none), read with a ranged GET of the header only; an object
// that is no zstd frame wraps stores.ErrCorrupt. So does an object larger
// than any chunk (the bound's max, stores.BoundOf; in the casync layout,
// larger than the zstd bound of it, or whose header says so).
func (s *Store) Stat(ctx context.Context, id stores.ID) (int64, error) {
	cctx, done, err := s.begin(ctx, "stat", &id, true)
	if err != nil {
		return 0, err
	}
	defer done()
	max := stores.BoundOf(ctx, id).Max
	var size int64
	if s.casync {
		size, err = s.frameSize(cctx, s.key(id), max)
	} else if size, err = s.rangedStat(cctx, s.key(id)); err == nil && size > max {
		err = fmt.Errorf("%w: the object is %d bytes, more than any chunk (%d)", stores.ErrCorrupt, size, max)
	}
	if errors.Is(err, stores.ErrCorrupt) {
		s.out.ok()
		return 0, fmt.Errorf("s3 %s: stat %s: %s: %w", s.where, id, s.key(id), err)
	}
	if err != nil {
		return 0, s.fail(ctx, cctx, "stat", &id, err)
	}
	s.out.ok()
	return size, nil
}

// Delete removes the chunk's object; a missing one is not an error.
func (s *Store) Delete(ctx context.Context, id stores.ID) error {
	cctx, done, err := s.begin(ctx, "delete", &id, true)
	if err != nil {
		return err
	}
	defer done()
	err = s.client.RemoveObject(cctx, s.bucket, s.key(id), minio.RemoveObjectOptions{})
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code == minio.NoSuchKey {
		err = nil
	}
	if err != nil {
		return s.fail(ctx, cctx, "delete", &id, err)
	}
	s.out.ok()
	return nil
}

// List calls fn for every chunk below the prefix, page by page. Keys that
// are not `<prefix>/<4 hex>/<64 hex>.chunk` (`.cacnk` in the casync
// layout) are skipped: other prefixes, foreign objects, misplaced chunks,
// the meta objects below `<prefix>/_meta/`. Options.Timeout bounds each
// page's request, not the whole listing. Chunks put or deleted while List
// runs may or may not be reported.
func (s *Store) List(ctx context.Context, fn func(id stores.ID) error) error {
	// A listing may outlast Timeout; the transport's response timeout
	// bounds each page instead.
	cctx, done, err := s.begin(ctx, "list", nil, false)
	if err != nil {
		return err
	}
	defer done()
	for obj := range s.client.ListObjectsIter(cctx, s.bucket, minio.ListObjectsOptions{Prefix: s.keyPrefix, Recursive: true}) {
		if obj.Err != nil {
			return s.fail(ctx, cctx, "list", nil, obj.Err)
		}
		id, ok := s.parseKey(obj.Key)
		if !ok {
			continue
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	if err := cctx.Err(); err != nil {
		return s.fail(ctx, cctx, "list", nil, err)
	}
	s.out.ok()
	return nil
}

// Close ends the calls still running (they fail wrapping
// stores.ErrClosed), waits for them, and releases the connections; later
// calls fail with stores.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("s3 %s: close: %w", s.where, stores.ErrClosed)
	}
	s.closed = true
	s.mu.Unlock()
	s.stop(stores.ErrClosed)
	s.calls.Wait()
	s.tr.CloseIdleConnections()
	if s.codec != nil {
		s.codec.close()
	}
	return nil
}
