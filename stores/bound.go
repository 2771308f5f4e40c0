package stores

import (
	"context"
	"fmt"
)

// MaxChunkSize is the largest chunk any store reads: the chunker's own
// ceiling (chunker.MaxSizeLimit, 64 MiB), above which no filesystem's
// max_size may be set. A stored object that is, or decodes to, more is a
// corrupt copy, whatever the caller's context says; it is never read
// whole nor decoded past this bound.
const MaxChunkSize = 64 << 20

type expectedKey struct{}

// expected is the size the caller knows one chunk to have.
type expected struct {
	id   ID
	size int64
}

type maxKey struct{}

// WithExpectedSize returns ctx telling the stores that chunk id is size
// bytes (uncompressed), as the index says: a Get of id under it returns
// exactly size bytes, or an error wrapping ErrCorrupt, without reading a
// stored object that cannot be such a chunk (a raw copy of another size,
// a compressed one past the zstd bound of size) and without decoding one
// past size. It applies to id only, so a context passed on to reads of
// other chunks does no harm.
func WithExpectedSize(ctx context.Context, id ID, size int64) context.Context {
	if size < 0 {
		return ctx
	}
	return context.WithValue(ctx, expectedKey{}, expected{id, size})
}

// WithMaxSize returns ctx bounding every chunk read under it to max bytes
// (the filesystem's chunker max_size): a chunk larger is ErrCorrupt, as
// for WithExpectedSize. The smallest max given along ctx holds; one above
// MaxChunkSize, or not positive, changes nothing.
func WithMaxSize(ctx context.Context, max int64) context.Context {
	if max <= 0 || max >= MaxChunkSize {
		return ctx
	}
	if cur, ok := ctx.Value(maxKey{}).(int64); ok && cur <= max {
		return ctx
	}
	return context.WithValue(ctx, maxKey{}, max)
}

// Bound is what a read of one chunk may return (see BoundOf).
type Bound struct {
	// Exact is the chunk's size where the caller knows it, else -1.
	Exact int64
	// Max is the most it may be: never above MaxChunkSize.
	Max int64
}

// BoundOf returns the bound on a read of chunk id under ctx: the size
// WithExpectedSize gave for id, and the max of WithMaxSize (MaxChunkSize
// without one). Every store applies it in Get, and its Max in Stat.
func BoundOf(ctx context.Context, id ID) Bound {
	b := Bound{Exact: -1, Max: MaxChunkSize}
	if m, ok := ctx.Value(maxKey{}).(int64); ok {
		b.Max = m
	}
	if e, ok := ctx.Value(expectedKey{}).(expected); ok && e.id == id {
		b.Exact = e.size
	}
	return b
}

// Limit is the most bytes the chunk may have: Exact where known (and not
// past Max, which no read can pass), else Max.
func (b Bound) Limit() int64 {
	if b.Exact >= 0 && b.Exact <= b.Max {
		return b.Exact
	}
	return b.Max
}

// Check returns nil when a chunk of n bytes is what the bound allows, and
// an error wrapping ErrCorrupt that says why not otherwise.
func (b Bound) Check(n int64) error {
	switch {
	case n > b.Max:
		return fmt.Errorf("%w: %d bytes, more than any chunk (%d)", ErrCorrupt, n, b.Max)
	case b.Exact >= 0 && n != b.Exact:
		return fmt.Errorf("%w: %d bytes, the chunk has %d", ErrCorrupt, n, b.Exact)
	}
	return nil
}

// StoredLimit is the most bytes a stored form of the chunk may take: a
// raw copy holds Limit bytes, a zstd frame at most CompressedBound of
// them.
func (b Bound) StoredLimit() int64 { return CompressedBound(b.Limit()) }

// CompressedBound is the largest zstd frame that n bytes compress to:
// zstd's own worst case (ZSTD_COMPRESSBOUND: n plus n/256, plus up to 64
// bytes for small inputs, covering incompressible data stored in raw
// blocks with the frame header and checksum) and a 1 KiB margin for
// encoders that split blocks more finely. A larger frame cannot hold a
// chunk of n bytes written by any encoder in use (ours, desync's, casync's).
func CompressedBound(n int64) int64 {
	const block = 128 << 10
	extra := n >> 8
	if n < block {
		extra += (block - n) >> 11
	}
	return n + extra + 1<<10
}
