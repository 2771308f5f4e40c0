package stores

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// IDSize is the length of a chunk id in bytes (a 256-bit hash).
const IDSize = 32

// ID identifies a chunk: the 256-bit hash of its uncompressed bytes. Which
// hash (BLAKE3-256 or SHA512/256) is a property of the filesystem, not of the
// store; stores never compute it.
type ID [IDSize]byte

// String returns the lower-case hex form of the id (64 characters).
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the all-zero id, which no real chunk has.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the 64-character hex form of an id. It rejects anything
// else, so a parsed id is always safe to turn into a path.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("stores: chunk id %q: want %d hex characters, got %d", s, 2*IDSize, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("stores: chunk id %q: %w", s, err)
	}
	return id, nil
}

// IDFromBytes copies a 32-byte slice into an ID.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != IDSize {
		return id, fmt.Errorf("stores: chunk id: want %d bytes, got %d", IDSize, len(b))
	}
	copy(id[:], b)
	return id, nil
}

var (
	// ErrNotFound is wrapped by every error that reports a chunk the store
	// does not hold, and by GetMeta's for a meta object it does not hold.
	ErrNotFound = errors.New("chunk not found")
	// ErrCorrupt is wrapped by every error that reports a chunk whose stored
	// copy cannot be decoded, does not hash to its id, or cannot be the
	// chunk at all (not a regular file, or not of a size its Bound
	// allows), and by GetMeta's for a meta object that cannot be what was
	// put (larger than the caller's bound, or not a plain file).
	ErrCorrupt = errors.New("chunk corrupt")
	// ErrClosed is returned by every call on a closed store.
	ErrClosed = errors.New("store closed")
	// ErrTimeout is the cause callers give the deadline of a store call
	// (context.WithTimeoutCause): a store that hangs past it is counted as
	// failing, unlike a caller that merely gave up.
	ErrTimeout = errors.New("store call timed out")
	// ErrNoMeta is wrapped by the errors of MetaStore calls on a wrapper
	// (Tier, Fault) none of whose stores keeps meta objects: the caller
	// learns that its index backup has nowhere to go, rather than that an
	// object is missing.
	ErrNoMeta = errors.New("store keeps no meta objects")
)

// Store holds chunks by id. Implementations are safe for concurrent use.
//
// Contracts every implementation keeps (checked by storetest.Run):
//   - Get of a missing chunk returns an error wrapping ErrNotFound, never
//     (nil, nil).
//   - Get returns a slice the caller owns; Put does not keep data after it
//     returns, so the caller may reuse the buffer (unless ctx carries
//     WithImmutableData).
//   - Put of an id the store already holds succeeds without rewriting it.
//   - Put is atomic: a concurrent or later Get sees all of the chunk or
//     ErrNotFound, never a part, also after a crash.
//   - Delete of a missing chunk succeeds (it is idempotent).
//   - Stat reports the chunk's logical (uncompressed) size, or -1 where the
//     store cannot tell it cheaply; a missing chunk wraps ErrNotFound.
//   - Reads are bounded by BoundOf(ctx, id): Get returns a chunk of a size
//     the bound allows or an error wrapping ErrCorrupt, without reading
//     or decoding much past the bound; Stat of a chunk larger than its
//     max wraps ErrCorrupt (or reports -1).
//   - After Close every call returns an error wrapping ErrClosed.
//   - A call whose ctx is already done fails with an error wrapping
//     ctx.Err() and changes nothing.
//
// Because Put does not rewrite, repairing a chunk whose stored copy is bad
// takes a Delete before the Put.
type Store interface {
	// Name is a short human name for logs and stats ("primary-0").
	Name() string
	// Type is the backend kind ("local", "s3", "mem").
	Type() string
	Get(ctx context.Context, id ID) ([]byte, error)
	Put(ctx context.Context, id ID, data []byte) error
	Stat(ctx context.Context, id ID) (size int64, err error)
	Delete(ctx context.Context, id ID) error
	Close() error
}

// Lister is implemented by stores that can enumerate the chunks they hold
// (needed by gc and by a comparison of everything a store holds). fn is
// called once per chunk, in no particular order; if fn returns an error the
// listing stops and List returns that error.
type Lister interface {
	List(ctx context.Context, fn func(id ID) error) error
}

// Syncer is implemented by stores that buffer durability (local stores with
// fsync disabled per chunk): Sync makes every chunk put so far durable. It is
// how fsync() on a file batches the syncs of all its chunks into one call.
type Syncer interface {
	Sync(ctx context.Context) error
}

type immutableDataKey struct{}

// WithImmutableData returns ctx marked for Puts whose data the caller will
// never modify: chunk bytes, which are content-addressed and shared
// read-only once cut. A store that may abandon a write at its deadline
// (stores/local) then lets the abandoned write keep reading data instead
// of copying every chunk first in case the caller reuses its buffer.
func WithImmutableData(ctx context.Context) context.Context {
	return context.WithValue(ctx, immutableDataKey{}, true)
}

// ImmutableData reports whether ctx was marked by WithImmutableData.
func ImmutableData(ctx context.Context) bool {
	v, _ := ctx.Value(immutableDataKey{}).(bool)
	return v
}

// MetaStore is implemented by stores that keep named objects beside their
// chunks: the index backup (index/replica) lives there, so that either tier
// alone can bring a filesystem back. Meta objects are never chunks: a chunk
// listing (Lister) never reports them, and gc, compare, repair and migrate,
// which walk chunk ids, never touch them.
//
// Contracts every implementation keeps (checked by storetest.Run when the
// store implements MetaStore):
//   - name is checked with ValidMetaName; a bad name is refused, never
//     turned into a path or key.
//   - PutMeta is atomic and durable when it returns: a later GetMeta sees
//     all of data or the previous object, never a part, also after a crash.
//     A PutMeta of an existing name replaces it.
//   - GetMeta of a missing name wraps ErrNotFound; an object larger than max
//     bytes is refused (wrapping ErrCorrupt) without reading it whole.
//   - ListMeta returns every object whose name starts with prefix, sorted
//     by name, with its size.
//   - DeleteMeta of a missing name succeeds.
type MetaStore interface {
	PutMeta(ctx context.Context, name string, data []byte) error
	GetMeta(ctx context.Context, name string, max int64) ([]byte, error)
	ListMeta(ctx context.Context, prefix string) ([]MetaInfo, error)
	DeleteMeta(ctx context.Context, name string) error
}

// MetaInfo describes one meta object.
type MetaInfo struct {
	Name string
	Size int64
}

// MaxMetaName is the longest meta object name ValidMetaName accepts.
const MaxMetaName = 240

// ValidMetaName checks a meta object name: 1 to MaxMetaName bytes of
// '/'-separated parts, each of [A-Za-z0-9._-] and none "." or "..", with no
// leading, trailing or doubled '/'. Such a name is safe as a relative path
// and as an object key on every backend.
func ValidMetaName(name string) error {
	if name == "" || len(name) > MaxMetaName {
		return fmt.Errorf("stores: meta name %q: want 1 to %d bytes", name, MaxMetaName)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("stores: meta name %q: character %q not allowed", name, c)
			}
			continue
		}
		part := name[start:i]
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("stores: meta name %q: empty, \".\" or \"..\" part", name)
		}
		start = i + 1
	}
	return nil
}

// Sharer is implemented by stores whose chunks other tools write and read
// too (a casync-layout local store, shared with desync and casync): an
// index of another tool may reference any chunk there, so gc never removes
// one from such a store, neither an unreferenced chunk of this filesystem
// nor one it does not know (desync prune, with every index, is the tool
// for that), and a new filesystem may start over one that holds chunks.
type Sharer interface {
	Shared() bool
}

// IsShared reports whether s is a Sharer that says it is shared.
func IsShared(s Store) bool {
	sh, ok := s.(Sharer)
	return ok && sh.Shared()
}
