package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// fileState is the content of one regular file while it is open (or being
// truncated), shared by every handle on the inode so two handles see the
// same bytes. Its content is:
//
//	chunks (committed or already cut, in the stores)
//	+ an active stream (sequential writes at the end, being chunked and
//	  written to both tiers as they arrive)
//	or an overlay (a sparse staging file on local disk holding the dirty
//	  extents of non-sequential writes and truncates; re-chunked at flush,
//	  from the first dirty chunk until the new cuts meet the old ones).
//
// Memory stays bounded whatever the file size: a stream holds about one
// chunk, the overlay lives on disk.
type fileState struct {
	fs  *FS
	ino uint64

	mu     sync.RWMutex
	chunks []index.Chunk
	offs   []uint64 // offs[i] is where chunks[i] starts; offs[len(chunks)] is their end
	// listHoles sums the holes of chunks (set by setChunks).
	listHoles uint64
	size      uint64
	mtime     time.Time
	dirty     bool
	werr      error // a write failed: reported at the next write/flush/fsync

	stream *chunker.Stream
	batch  *dual.Batch
	// pend holds the bytes of a file written from empty while they are
	// fewer than the chunker's MinSize: the chunker could not cut them
	// anyway, so a small file becomes its one chunk at flush without a
	// chunker (its goroutine and buffers) ever being started.
	pend     []byte
	streamMu sync.Mutex // guards streamed and held: emit runs on the chunker's goroutine
	streamed []index.Chunk
	// held are the chunk ids this file's uncommitted content may
	// reference: gc leaves them alone until the commit (or the revert)
	// releases them.
	held []stores.ID

	stage       *os.File
	extents     []extent // sorted, disjoint, merged
	punched     []extent // holes punched over the chunks (holes.go); disjoint from extents
	rechunkFrom uint64

	// ra is the prefetch state of sequential reads (see prefetchAfter).
	ra readahead

	opens int // guarded by fs.filesMu
}

type extent struct{ start, end uint64 }

func (st *fileState) setChunks(chunks []index.Chunk) {
	st.chunks = chunks
	st.offs = make([]uint64, len(chunks)+1)
	var off uint64
	st.listHoles = 0
	for i, c := range chunks {
		st.offs[i] = off
		off += uint64(c.Size)
		if c.Hole() {
			st.listHoles += uint64(c.Size)
		}
	}
	st.offs[len(chunks)] = off
}

func (st *fileState) chunkEnd() uint64 { return st.offs[len(st.chunks)] }

// load (re)reads the committed state from the index, discarding anything
// uncommitted. Caller holds mu (or owns st exclusively).
func (st *fileState) load(ctx context.Context) error {
	st.dropOverlay()
	if st.stream != nil {
		st.stream.Abort()
		_ = st.batch.Wait()
		st.stream, st.batch = nil, nil
	}
	st.pend = nil
	st.streamMu.Lock()
	st.streamed = nil
	st.streamMu.Unlock()
	st.releaseHeld()
	a, err := st.fs.meta.GetAttr(ctx, st.ino)
	if err != nil {
		return err
	}
	chunks, err := st.fs.meta.Chunks(ctx, st.ino)
	if err != nil {
		return err
	}
	st.setChunks(chunks)
	if st.chunkEnd() != a.Size {
		return fmt.Errorf("inode %d: index chunk list covers %d bytes but the size is %d: %w", st.ino, st.chunkEnd(), a.Size, index.ErrCorrupt)
	}
	st.size, st.mtime, st.dirty, st.werr = a.Size, a.Mtime, false, nil
	return nil
}

// releaseHeld lets gc see this file's chunk holds again: after a commit
// the index references what the file uses, after a revert the rest is
// garbage.
func (st *fileState) releaseHeld() {
	st.streamMu.Lock()
	held := st.held
	st.held = nil
	st.streamMu.Unlock()
	st.fs.dm.Release(held...)
}

func (st *fileState) dropOverlay() {
	if st.stage != nil {
		st.stage.Close()
		st.stage = nil
	}
	st.extents, st.punched = nil, nil
	st.rechunkFrom = math.MaxUint64
}

// emit receives a cut chunk from a stream and queues its write to both
// tiers. A chunk the index references and the stores hold is not written
// again: that is the dedup that makes a second copy cheap.
//
// The id is held (see dual.Manager.Hold) before the dedup check, so gc
// cannot remove the chunk between the check and the commit.
func (st *fileState) emit(c chunker.Chunk, batch *dual.Batch, out *[]index.Chunk) error {
	id := stores.ID(c.ID)
	st.fs.dm.Hold(id)
	st.streamMu.Lock()
	st.held = append(st.held, id)
	*out = append(*out, index.Chunk{ID: id, Size: uint32(len(c.Data))})
	st.streamMu.Unlock()
	st.fs.ctr.chunksCut.Add(1)
	// A chunk the index references is skipped only if the stores really
	// hold it (a stat per tier): a chunk lost from a tier, or both, comes
	// back when its bytes are written again, instead of the new file being
	// as unreadable as the damaged one.
	if !st.fs.known(id) {
		return batch.Put(id, c.Data)
	}
	size := int64(len(c.Data))
	return batch.PutUnlessStored(id, c.Data, func() bool {
		if !st.fs.dm.Stored(context.Background(), id, size) {
			return false
		}
		st.fs.ctr.dedupHits.Add(1)
		st.fs.ctr.dedupBytes.Add(size)
		return true
	})
}

// startStream begins chunking sequential writes at the end of the file.
// The last chunk is fed again first, so the cuts are the ones a chunking
// of the whole file would make and appends dedup against earlier copies.
func (st *fileState) startStream(ctx context.Context) error {
	refeed := st.pend
	st.pend = nil
	// After a hole, chunking starts afresh: no chunk to feed again.
	if n := len(st.chunks); n > 0 && !st.chunks[n-1].Hole() {
		last := st.chunks[n-1]
		data, err := st.fs.chunk(ctx, last)
		if err != nil {
			return err
		}
		refeed = data
		st.setChunks(st.chunks[:n-1])
	}
	batch := st.fs.dm.NewBatch(context.WithoutCancel(ctx), nil)
	st.streamMu.Lock()
	st.streamed = nil
	st.streamMu.Unlock()
	s, err := chunker.NewStreamWith(st.fs.params, st.fs.hash, func(c chunker.Chunk) error {
		return st.emit(c, batch, &st.streamed)
	}, st.fs.streamOpts)
	if err != nil {
		return err
	}
	st.stream, st.batch = s, batch
	if len(refeed) > 0 {
		if _, err := s.Write(refeed); err != nil {
			return err
		}
	}
	return nil
}

// streaming reports whether bytes at the end of the file are not cut
// into chunks yet (an active stream, or the pending bytes of a small file).
func (st *fileState) streaming() bool { return st.stream != nil || len(st.pend) > 0 }

// cutPending makes the pending bytes of a small file its one chunk.
func (st *fileState) cutPending() error {
	data := st.pend
	st.pend = nil
	batch := st.fs.dm.NewInlineBatch(context.Background())
	var cut []index.Chunk
	err := st.emit(chunker.Chunk{Data: data, ID: st.fs.hash(data)}, batch, &cut)
	if err := errors.Join(err, batch.Wait()); err != nil {
		return err
	}
	st.setChunks(append(st.chunks, cut...))
	if st.chunkEnd() != st.size {
		return fmt.Errorf("inode %d: pending bytes made %d bytes, file has %d", st.ino, st.chunkEnd(), st.size)
	}
	return nil
}

// finishStream cuts the final chunk of the active stream (or the pending
// bytes), waits for every chunk to be stored, and appends the chunks to
// the list.
func (st *fileState) finishStream() error {
	if st.stream == nil {
		return st.cutPending()
	}
	s, b := st.stream, st.batch
	st.stream, st.batch = nil, nil
	err := s.Close()
	st.fs.ctr.chunksPredicted.Add(s.Predicted())
	werr := b.Wait()
	st.streamMu.Lock()
	cut := st.streamed
	st.streamed = nil
	st.streamMu.Unlock()
	if err := errors.Join(err, werr); err != nil {
		return err
	}
	st.setChunks(append(st.chunks, cut...))
	if st.chunkEnd() != st.size {
		return fmt.Errorf("inode %d: stream produced %d bytes, file has %d", st.ino, st.chunkEnd(), st.size)
	}
	return nil
}

// write applies one write(2) and returns how many bytes it wrote. A write
// past the maximum file size changes nothing (ErrFileTooBig). A staging
// file that takes only part of a write (ENOSPC) gives a short write and
// its error to this call alone: what it did write is kept, nothing else
// is dropped. A stream whose chunks cannot be stored fails this and every
// later write and flush (the bytes are gone; the file reverts).
func (st *fileState) write(ctx context.Context, data []byte, off uint64) (int, error) {
	if err := st.checkSize(off + uint64(len(data))); err != nil {
		return 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.werr != nil {
		return 0, st.werr
	}
	if st.batch != nil {
		if err := st.batch.Err(); err != nil {
			st.werr = err
			return 0, err
		}
	}
	n, err := st.writeLocked(ctx, data, off)
	if n > 0 {
		st.dirty = true
		st.mtime = time.Now()
	}
	if err != nil {
		var se *stagingError
		if !errors.As(err, &se) {
			st.werr = err
		}
		return n, err
	}
	return n, nil
}

// stagingError is a failed write to the staging file: it concerns the
// call that made it, not the file's other data.
type stagingError struct{ err error }

func (e *stagingError) Error() string { return e.err.Error() }
func (e *stagingError) Unwrap() error { return e.err }

func (st *fileState) writeLocked(ctx context.Context, data []byte, off uint64) (int, error) {
	if off > st.size {
		// The gap is a hole, recorded in constant time.
		if err := st.growLocked(off); err != nil {
			return 0, err
		}
	}
	if st.stage == nil && off == st.size {
		if st.stream == nil && len(st.chunks) == 0 && uint(len(st.pend)+len(data)) < st.fs.params.MinSize {
			st.pend = append(st.pend, data...)
			st.size += uint64(len(data))
			return len(data), nil
		}
		if st.stream == nil {
			st.fs.log.Debug().Uint64("ino", st.ino).Uint64("off", off).Int("chunks", len(st.chunks)).Msg("stream starts")
			if err := st.startStream(ctx); err != nil {
				return 0, err
			}
		}
		if _, err := st.stream.Write(data); err != nil {
			return 0, err
		}
		st.size += uint64(len(data))
		return len(data), nil
	}
	if st.stage == nil {
		st.fs.log.Debug().Uint64("ino", st.ino).Uint64("off", off).Uint64("size", st.size).Int("len", len(data)).Msg("non-sequential write: staging")
	}
	if err := st.toStaging(); err != nil {
		return 0, err
	}
	n, err := st.stage.WriteAt(data, int64(off))
	if n > 0 {
		end := off + uint64(n)
		st.addExtent(off, end)
		st.punched = cutRange(st.punched, off, end)
		st.rechunkFrom = min(st.rechunkFrom, off)
		if end > st.chunkEnd() {
			st.appendHole(end - st.chunkEnd()) // the list covers the size (the extent overrides)
		}
		st.size = max(st.size, end)
	}
	if err != nil {
		return n, &stagingError{fmt.Errorf("staging file for inode %d: %w", st.ino, err)}
	}
	return n, nil
}

// toStaging switches to the overlay. The staging file is unlinked at once,
// so a crash leaves nothing behind.
func (st *fileState) toStaging() error {
	if st.stage != nil {
		return nil
	}
	if st.streaming() {
		if err := st.finishStream(); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(st.fs.opts.StagingDir, fmt.Sprintf("ino-%d-*", st.ino))
	if err != nil {
		return fmt.Errorf("staging file for inode %d: %w", st.ino, err)
	}
	os.Remove(f.Name())
	// Dirty bytes sit at their file offsets (sparse); the file's length
	// does not matter: only the extents are ever read.
	st.stage = f
	st.extents, st.punched = nil, nil
	st.rechunkFrom = math.MaxUint64
	if st.chunkEnd() < st.size {
		st.appendHole(st.size - st.chunkEnd())
	}
	return nil
}

func (st *fileState) addExtent(start, end uint64) {
	if start >= end {
		return
	}
	var out []extent
	i := 0
	for ; i < len(st.extents) && st.extents[i].end < start; i++ {
		out = append(out, st.extents[i])
	}
	n := extent{start, end}
	for ; i < len(st.extents) && st.extents[i].start <= end; i++ {
		n.start = min(n.start, st.extents[i].start)
		n.end = max(n.end, st.extents[i].end)
	}
	out = append(out, n)
	out = append(out, st.extents[i:]...)
	st.extents = out
}

func (st *fileState) clipExtents(size uint64) {
	st.extents = cutRange(st.extents, size, math.MaxUint64)
	st.punched = cutRange(st.punched, size, math.MaxUint64)
}

// truncate applies truncate(2)/O_TRUNC. Growing records a hole (constant
// time whatever the length); shrinking into a hole or onto a chunk
// boundary cuts the list, elsewhere it re-chunks the last chunk at the
// next commit. Past the maximum file size it changes nothing.
func (st *fileState) truncate(ctx context.Context, size uint64) error {
	if err := st.checkSize(size); err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dirty = true
	st.mtime = time.Now()
	if size == st.size && st.werr == nil {
		return nil
	}
	if size == 0 {
		// Everything goes: no need to wait for, or even finish, a stream.
		if st.stream != nil {
			st.stream.Abort()
			_ = st.batch.Wait()
			st.stream, st.batch = nil, nil
			st.streamMu.Lock()
			st.streamed = nil
			st.streamMu.Unlock()
		}
		st.pend = nil
		st.dropOverlay()
		st.setChunks(nil)
		st.size, st.werr = 0, nil
		return nil
	}
	if st.werr != nil {
		return st.werr
	}
	if size > st.size {
		if err := st.growLocked(size); err != nil {
			st.werr = err
			return err
		}
		return nil
	}
	if st.stage == nil && !st.streaming() && st.shrinkList(size) {
		return nil
	}
	if err := st.toStaging(); err != nil {
		st.werr = err
		return err
	}
	st.clipExtents(size)
	st.rechunkFrom = min(st.rechunkFrom, size)
	st.size = size
	return nil
}

// readv reads len(dest) bytes from off (fewer at EOF) for a read reply.
// The bytes come back as slices: of the cached chunks themselves, which
// are never modified, so the reply is written from them without a copy;
// or, for a file with an overlay, of dest, filled with the merged view.
func (st *fileState) readv(ctx context.Context, dest []byte, off uint64) ([][]byte, int, error) {
	for {
		st.mu.RLock()
		if !st.streaming() || off+uint64(len(dest)) <= st.chunkEnd() || off >= st.size {
			var (
				out [][]byte
				n   int
				err error
			)
			if st.stage == nil {
				out, n, err = st.slicesLocked(ctx, len(dest), off)
			} else {
				n, err = st.readLocked(ctx, dest, off)
				out = [][]byte{dest[:n]}
			}
			st.mu.RUnlock()
			return out, n, err
		}
		st.mu.RUnlock()
		// The read wants bytes still inside the chunker: cut them now
		// (read-your-writes). Later appends start a new stream.
		st.fs.log.Debug().Uint64("ino", st.ino).Uint64("off", off).Msg("read of bytes being chunked: stream cut")
		st.mu.Lock()
		if st.streaming() {
			if err := st.finishStream(); err != nil {
				st.werr = err
				st.mu.Unlock()
				return nil, 0, err
			}
		}
		st.mu.Unlock()
	}
}

// slicesLocked is readLocked for a file without an overlay, returning
// slices of the chunks instead of copying them. Caller holds mu.
func (st *fileState) slicesLocked(ctx context.Context, size int, off uint64) ([][]byte, int, error) {
	if off >= st.size {
		return nil, 0, nil
	}
	end := min(off+uint64(size), st.size)
	var out [][]byte
	for p := off; p < end; {
		b, err := st.chunkAt(ctx, p, end)
		if err != nil {
			return out, int(p - off), err
		}
		out = append(out, b)
		p += uint64(len(b))
	}
	return out, int(end - off), nil
}

// chunkAt returns the bytes of the chunk that holds offset p, from p up to
// the chunk's end or limit, whichever comes first, and prefetches the
// chunks after it. Caller holds mu.
func (st *fileState) chunkAt(ctx context.Context, p, limit uint64) ([]byte, error) {
	i := sort.Search(len(st.chunks), func(i int) bool { return st.offs[i+1] > p })
	if i >= len(st.chunks) {
		return nil, fmt.Errorf("inode %d: offset %d beyond its chunks (%d bytes): %w", st.ino, p, st.chunkEnd(), index.ErrCorrupt)
	}
	if st.chunks[i].Hole() {
		return zeros[:min(st.offs[i+1]-p, limit-p, uint64(len(zeros)))], nil
	}
	data, err := st.fs.chunk(ctx, st.chunks[i])
	if err != nil {
		return nil, err
	}
	st.prefetchAfter(i)
	within := p - st.offs[i]
	return data[within : within+min(uint64(len(data))-within, limit-p)], nil
}

// readLocked reads the merged view (overlay over chunks). Caller holds mu.
func (st *fileState) readLocked(ctx context.Context, dest []byte, off uint64) (int, error) {
	if off >= st.size {
		return 0, nil
	}
	end := min(off+uint64(len(dest)), st.size)
	p := off
	for p < end {
		limit := end
		if st.stage != nil {
			i := sort.Search(len(st.extents), func(i int) bool { return st.extents[i].end > p })
			if i < len(st.extents) && st.extents[i].start <= p {
				n := min(st.extents[i].end, end) - p
				if _, err := st.stage.ReadAt(dest[p-off:p-off+n], int64(p)); err != nil && err != io.EOF {
					return int(p - off), fmt.Errorf("staging file for inode %d: %w", st.ino, err)
				}
				p += n
				continue
			}
			if i < len(st.extents) {
				limit = min(limit, st.extents[i].start)
			}
			if j, next := find(st.punched, p, limit); j >= 0 {
				n := min(st.punched[j].end, limit) - p
				clear(dest[p-off : p-off+n])
				p += n
				continue
			} else {
				limit = next
			}
		}
		b, err := st.chunkAt(ctx, p, limit)
		if err != nil {
			return int(p - off), err
		}
		copy(dest[p-off:], b)
		p += uint64(len(b))
	}
	return int(end - off), nil
}

// readahead is the prefetch window of one open file: like the kernel's
// readahead, it starts small and doubles while reads stay sequential (up
// to the mount's prefetch setting), and falls back to the minimum on a
// jump, so random reads do not fetch chunks nobody asked for.
type readahead struct {
	mu   sync.Mutex
	seen bool // a read happened: last is set
	last int  // chunk index of the last read
	win  int
}

// minPrefetch is the window of a file's first read and after a jump.
const minPrefetch = 2

// prefetchAfter notes a read of chunk i and prefetches the chunks after
// it. Caller holds mu (read or write).
func (st *fileState) prefetchAfter(i int) {
	st.fs.prefetch(st.chunks, i+1, st.ra.next(i, st.fs.opts.Prefetch))
}

// next notes a read of chunk i and returns how many chunks to prefetch
// after it, at most max.
func (r *readahead) next(i, max int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.seen || (i != r.last && i != r.last+1):
		r.win = min(minPrefetch, max)
	case i == r.last+1:
		r.win = min(r.win*2, max)
	}
	r.seen, r.last = true, i
	return r.win
}

// errResync stops a re-chunking stream once its cuts meet the old ones.
var errResync = errors.New("resynchronised with the old chunk boundaries")

// rechunk turns the overlay into chunks and holes: it keeps the list
// before the first dirty entry, then walks the merged view from there:
// data runs stream through the chunker, hole runs (punched, or holes of
// the list no write covers) become hole entries without a byte read. As
// soon as a new cut (or a hole) lands on an old boundary past the last
// dirty byte, the old list is reused from there on.
func (st *fileState) rechunk(ctx context.Context) error {
	old, oldOffs := st.chunks, st.offs
	oldEnd := st.chunkEnd()
	from := min(st.rechunkFrom, st.size)
	i := sort.Search(len(old), func(j int) bool { return oldOffs[j+1] > from })
	if i == len(old) && i > 0 && !old[i-1].Hole() {
		// Appending or extending past the old end: feed the last chunk
		// again so the cuts match a chunking of the whole file.
		i--
	}
	start := oldOffs[min(i, len(old))]
	lastDirty := from
	if n := len(st.extents); n > 0 {
		lastDirty = max(lastDirty, st.extents[n-1].end)
	}
	if n := len(st.punched); n > 0 {
		lastDirty = max(lastDirty, st.punched[n-1].end)
	}
	// Old boundaries we may resynchronise on: only if the old entries
	// after them are still the file's content up to its end.
	bounds := map[uint64]int{}
	if oldEnd == st.size {
		for j := i + 1; j < len(old); j++ {
			if oldOffs[j] >= lastDirty && oldOffs[j] > start {
				bounds[oldOffs[j]] = j
			}
		}
	}

	var out []index.Chunk // the new entries from start
	// resync is the old entry to resume from, set by the chunker's
	// goroutine (a cut on an old boundary) or by this one (a hole there).
	var resync atomic.Int64
	resync.Store(-1)
	var s *chunker.Stream
	var batch *dual.Batch
	var cut []index.Chunk
	var streamAt uint64 // where the current stream started
	endStream := func() error {
		if s == nil {
			return nil
		}
		cerr := s.Close()
		st.fs.ctr.chunksPredicted.Add(s.Predicted())
		if resync.Load() >= 0 {
			cerr = nil
		}
		werr := batch.Wait()
		s, batch = nil, nil
		st.streamMu.Lock()
		out = append(out, cut...)
		cut = nil
		st.streamMu.Unlock()
		if err := errors.Join(cerr, werr); err != nil && !errors.Is(err, errResync) {
			return err
		}
		return nil
	}
	abort := func() {
		if s != nil {
			s.Abort()
			_ = batch.Wait()
			s, batch = nil, nil
		}
	}
	buf := make([]byte, 1<<20)
	for p := start; p < st.size && resync.Load() < 0; {
		end, hole := st.segment(p)
		if hole {
			if err := endStream(); err != nil {
				return err
			}
			if resync.Load() >= 0 {
				break
			}
			if j, ok := bounds[p]; ok && old[j].Hole() {
				resync.Store(int64(j))
				break
			}
			if n := len(out); n > 0 && out[n-1].Hole() {
				h := uint64(out[n-1].Size) + end - p
				out = append(out[:n-1], index.Holes(h)...)
			} else {
				out = append(out, index.Holes(end-p)...)
			}
			p = end
			continue
		}
		if s == nil {
			streamAt = p
			batch = st.fs.dm.NewBatch(context.WithoutCancel(ctx), nil)
			at := streamAt
			b := batch
			var err error
			s, err = chunker.NewStreamWith(st.fs.params, st.fs.hash, func(c chunker.Chunk) error {
				endOff := at + c.Offset + uint64(len(c.Data))
				if err := st.emit(c, b, &cut); err != nil {
					return err
				}
				if j, ok := bounds[endOff]; ok {
					resync.Store(int64(j))
					return errResync
				}
				return nil
			}, st.fs.streamOpts)
			if err != nil {
				_ = batch.Wait()
				return err
			}
		}
		for q := p; q < end; {
			n := min(uint64(len(buf)), end-q)
			if _, err := st.readLocked(ctx, buf[:n], q); err != nil {
				abort()
				return err
			}
			if _, err := s.Write(buf[:n]); err != nil {
				break // resynchronised (or failed: endStream says which)
			}
			q += n
		}
		p = end
	}
	if err := endStream(); err != nil {
		return err
	}
	chunks := append(append([]index.Chunk{}, old[:i]...), out...)
	if j := resync.Load(); j >= 0 {
		chunks = append(chunks, old[j:]...)
	}
	st.setChunks(chunks)
	if st.chunkEnd() != st.size {
		return fmt.Errorf("inode %d: re-chunking produced %d bytes, file has %d", st.ino, st.chunkEnd(), st.size)
	}
	st.dropOverlay()
	return nil
}

// commit makes the file's current content durable in the stores and its
// chunk list committed in the index (flush and fsync). On a failed chunk
// write the file goes back to its last committed content and the error
// is returned: nothing in the index points at a chunk that is not stored.
func (st *fileState) commit(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.commitLocked(ctx)
}

func (st *fileState) commitLocked(ctx context.Context) error {
	fail := func(err error) error {
		st.fs.log.Error().Uint64("ino", st.ino).Err(err).Msg("write failed; file reverted to its last committed content")
		if lerr := st.load(context.WithoutCancel(ctx)); lerr != nil {
			st.werr = lerr
		}
		return err
	}
	if st.werr != nil {
		return fail(st.werr)
	}
	if st.streaming() {
		if err := st.finishStream(); err != nil {
			return fail(err)
		}
	}
	if st.stage != nil {
		if err := st.rechunk(ctx); err != nil {
			// The dirty bytes are still in the staging file: nothing is
			// dropped, and the next flush tries again.
			st.fs.log.Error().Uint64("ino", st.ino).Err(err).Msg("re-chunking for a commit failed; the changes stay staged for the next flush")
			return err
		}
	}
	if !st.dirty {
		st.releaseHeld()
		return nil
	}
	if _, err := st.fs.meta.CommitChunks(context.WithoutCancel(ctx), st.ino, st.chunks, st.mtime); err != nil {
		return err // keep the state dirty (and the holds): a later flush may succeed
	}
	st.fs.committed()
	st.dirty = false
	st.releaseHeld()
	return nil
}
