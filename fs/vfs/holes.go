package vfs

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dualstore/dualstore/index"
)

// # Holes
//
// A file's content is chunks and holes (index.Chunk entries with the zero
// id): a truncate past the end, a write past the end, fallocate and a
// punched hole record a hole in constant time whatever its length, a read
// of a hole returns zeros with no store I/O, and re-chunking after a write
// near a hole streams only the data around the write.
//
// The merged view of an open file at offset p is, in this order: a dirty
// extent (the staging file's bytes), a punched range (zeros), the chunk
// list entry (a chunk's bytes or a hole's zeros), or, past the chunks of
// a file being streamed, the bytes in the chunker. With an overlay the
// chunk list always covers at least [0, size): growing appends a hole, and
// dirty extents and punched ranges override what the list says.

// ErrFileTooBig is returned by a write, truncate or allocate that would
// make a file larger than Options.MaxFileSize (EFBIG). The file is not
// changed.
var ErrFileTooBig = errors.New("file too large")

// DefaultMaxFileSize is the largest file a mount accepts unless configured
// otherwise: 8 TiB, below the 16 TiB limit of ext4 (with 4 KiB blocks),
// the smallest of the local filesystems the staging dir is likely on, so
// the staging file is never the limit.
const DefaultMaxFileSize = 8 << 40

// zeros backs the reads of holes: never modified, handed out as slices.
var zeros = make([]byte, 1<<20)

// checkSize refuses a size past the maximum, before anything changes.
func (st *fileState) checkSize(end uint64) error {
	if max := st.fs.opts.MaxFileSize; end > max {
		return fmt.Errorf("inode %d: %d bytes, the maximum file size is %d: %w", st.ino, end, max, ErrFileTooBig)
	}
	return nil
}

// appendHole appends a hole of n bytes to the chunk list, merged with a
// hole at its end.
func (st *fileState) appendHole(n uint64) {
	if n == 0 {
		return
	}
	chunks := slices.Clone(st.chunks)
	if k := len(chunks); k > 0 && chunks[k-1].Hole() {
		n += uint64(chunks[k-1].Size)
		chunks = chunks[:k-1]
	}
	st.setChunks(append(chunks, index.Holes(n)...))
}

// growLocked extends the file to size with a hole. Caller holds mu.
func (st *fileState) growLocked(size uint64) error {
	if size <= st.size {
		return nil
	}
	if st.stage == nil && st.streaming() {
		if err := st.finishStream(); err != nil {
			return err
		}
	}
	if st.stage != nil && st.chunkEnd() > st.size {
		// The list still holds what a shrink cut off: zeros now.
		if err := st.punchLocked(st.size, min(st.chunkEnd(), size)); err != nil {
			return err
		}
	}
	if end := st.chunkEnd(); size > end {
		st.appendHole(size - end)
	}
	st.size = size
	return nil
}

// shrinkList cuts the chunk list at size when that needs no re-chunking
// (size falls in a hole or on a chunk boundary). Caller holds mu; the file
// has no overlay and no stream.
func (st *fileState) shrinkList(size uint64) bool {
	i := sort.Search(len(st.chunks), func(i int) bool { return st.offs[i+1] > size })
	if i == len(st.chunks) {
		return false
	}
	chunks := slices.Clone(st.chunks[:i])
	switch {
	case st.offs[i] == size:
	case st.chunks[i].Hole():
		chunks = append(chunks, index.Chunk{Size: uint32(size - st.offs[i])})
	default:
		return false
	}
	st.setChunks(chunks)
	st.size = size
	return true
}

// punchLocked makes [a, b) a hole (b at most the size): dirty extents in
// it go, the range reads as zeros, and the next commit re-chunks around
// it. Caller holds mu.
func (st *fileState) punchLocked(a, b uint64) error {
	if a >= b {
		return nil
	}
	if err := st.toStaging(); err != nil {
		return err
	}
	st.extents = cutRange(st.extents, a, b)
	st.punched = addRange(st.punched, a, b)
	st.rechunkFrom = min(st.rechunkFrom, a)
	return nil
}

// addRange adds [a, b) to a sorted, disjoint, merged list.
func addRange(list []extent, a, b uint64) []extent {
	if a >= b {
		return list
	}
	var out []extent
	i := 0
	for ; i < len(list) && list[i].end < a; i++ {
		out = append(out, list[i])
	}
	n := extent{a, b}
	for ; i < len(list) && list[i].start <= b; i++ {
		n.start = min(n.start, list[i].start)
		n.end = max(n.end, list[i].end)
	}
	out = append(out, n)
	return append(out, list[i:]...)
}

// cutRange removes [a, b) from a sorted, disjoint list.
func cutRange(list []extent, a, b uint64) []extent {
	var out []extent
	for _, e := range list {
		if e.end <= a || e.start >= b {
			out = append(out, e)
			continue
		}
		if e.start < a {
			out = append(out, extent{e.start, a})
		}
		if e.end > b {
			out = append(out, extent{b, e.end})
		}
	}
	return out
}

// find returns the index of the range of list holding p, or -1, and the
// start of the next range after p (or max).
func find(list []extent, p, max uint64) (int, uint64) {
	i := sort.Search(len(list), func(i int) bool { return list[i].end > p })
	if i < len(list) && list[i].start <= p {
		return i, max
	}
	if i < len(list) {
		return -1, min(list[i].start, max)
	}
	return -1, max
}

// segment classifies the merged view at p (p < size): it returns where the
// run of like bytes starting at p ends, and whether they are a hole.
// Caller holds mu.
func (st *fileState) segment(p uint64) (end uint64, hole bool) {
	size := st.size
	if st.stage != nil {
		if i, next := find(st.extents, p, size); i >= 0 {
			return min(st.extents[i].end, size), false
		} else {
			size = next
		}
		if i, next := find(st.punched, p, size); i >= 0 {
			return min(st.punched[i].end, size), true
		} else {
			size = next
		}
	}
	if p >= st.chunkEnd() {
		return size, false // in the chunker, not cut yet
	}
	j := sort.Search(len(st.chunks), func(j int) bool { return st.offs[j+1] > p })
	return min(st.offs[j+1], size), st.chunks[j].Hole()
}

// holesLocked is how many bytes of the file are holes. Caller holds mu.
func (st *fileState) holesLocked() uint64 {
	if st.stage == nil && st.chunkEnd() <= st.size {
		// No overlay: the list's holes, whatever streams after them (an
		// attribute read of a file being written costs no walk).
		return st.listHoles
	}
	var n uint64
	for p := uint64(0); p < st.size; {
		end, hole := st.segment(p)
		if hole {
			n += end - p
		}
		p = end
	}
	return n
}

// Whence values of lseek(2) for holes.
const (
	SeekData = 3
	SeekHole = 4
)

// errNoData is lseek's ENXIO: no data (or no offset) at or after off.
var errNoData = errors.New("no data at or after the offset")

// ErrNoData is what Seek returns for an offset at or past the end, or for
// SEEK_DATA with only holes after it (ENXIO).
var ErrNoData = errNoData

// seek answers SEEK_DATA and SEEK_HOLE: the first offset at or after off
// that is data (a hole). The end of the file counts as a hole.
func (st *fileState) seek(off uint64, whence int) (uint64, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if off >= st.size {
		return 0, ErrNoData
	}
	for p := off; p < st.size; {
		end, hole := st.segment(p)
		if hole == (whence == SeekHole) {
			return p, nil
		}
		p = end
	}
	if whence == SeekHole {
		return st.size, nil
	}
	return 0, ErrNoData
}

// fallocate modes (linux/falloc.h).
const (
	FallocKeepSize  = 0x01
	FallocPunchHole = 0x02
	FallocZeroRange = 0x10
)

// allocate applies fallocate(2). Allocation reserves nothing in the stores
// (a hole costs nothing and chunks are written when data is): mode 0
// extends the size with a hole, FALLOC_FL_KEEP_SIZE alone changes nothing,
// PUNCH_HOLE and ZERO_RANGE make the range a hole (ZERO_RANGE may extend
// the size). Other modes wrap errors.ErrUnsupported.
func (st *fileState) allocate(off, length uint64, mode uint32) error {
	end := off + length
	if length == 0 || end < off {
		return fmt.Errorf("inode %d: fallocate of %d bytes at %d: %w", st.ino, length, off, errInvalid)
	}
	keep := mode&FallocKeepSize != 0
	switch mode {
	case 0, FallocKeepSize, FallocPunchHole | FallocKeepSize, FallocZeroRange, FallocZeroRange | FallocKeepSize:
	default:
		return fmt.Errorf("inode %d: fallocate mode %#x: %w", st.ino, mode, errors.ErrUnsupported)
	}
	if !keep {
		if err := st.checkSize(end); err != nil {
			return err
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.werr != nil {
		return st.werr
	}
	if mode == FallocKeepSize || (mode == 0 && end <= st.size) {
		return nil
	}
	if mode&(FallocPunchHole|FallocZeroRange) != 0 {
		if err := st.punchLocked(off, min(end, st.size)); err != nil {
			return err
		}
	}
	if !keep {
		if err := st.growLocked(end); err != nil {
			return err
		}
	}
	st.dirty = true
	st.mtime = time.Now()
	return nil
}

// errInvalid is EINVAL.
var errInvalid = index.ErrInvalid
