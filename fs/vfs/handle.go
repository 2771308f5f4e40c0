package vfs

import (
	"context"
	"sync"

	"github.com/dualstore/dualstore/index"
)

// Handle is one open file description. Every handle on an inode shares the
// inode's open-file state, so two handles see the same bytes. Its methods
// take the caller's ctx as it is: a front end that must not be cancelled
// mid-write (FUSE, see package fs) detaches it first.
type Handle struct {
	st   *fileState
	once sync.Once
}

// Open opens ino; the first open of an inode loads its size and chunk
// list from the metadata. Release ends the handle.
func (f *FS) Open(ctx context.Context, ino uint64) (*Handle, error) {
	return f.OpenCreated(ctx, ino, nil)
}

// OpenCreated is Open; created, if not nil, are the attributes of a file
// Create has just made, whose state (empty) is then not read back from
// the index.
func (f *FS) OpenCreated(ctx context.Context, ino uint64, created *index.Attr) (*Handle, error) {
	st, err := f.acquireWith(ctx, ino, created)
	if err != nil {
		return nil, err
	}
	return &Handle{st: st}, nil
}

// Ino returns the handle's inode number.
func (h *Handle) Ino() uint64 { return h.st.ino }

// Read reads len(dest) bytes from off (fewer at EOF) and returns them as
// slices, n bytes in all: of the cached chunks themselves, which are never
// modified, so a reply can be written from them without a copy (readv);
// or, for a file with staged writes, of dest, filled with the merged
// view. The caller must not modify the slices.
func (h *Handle) Read(ctx context.Context, dest []byte, off int64) (slices [][]byte, n int, err error) {
	slices, n, err = h.st.readv(ctx, dest, uint64(off))
	if err != nil {
		return nil, 0, err
	}
	h.st.fs.ctr.bytesRead.Add(int64(n))
	return slices, n, nil
}

// Write writes data at off: at the end of the file it is streamed through
// the chunker into the stores, anywhere else staged on local disk. A
// failed write is reported again by every later Write and Flush until the
// file reverts (see Flush).
func (h *Handle) Write(ctx context.Context, data []byte, off int64) (int, error) {
	n, err := h.st.write(ctx, data, uint64(off))
	h.st.fs.ctr.bytesWritten.Add(int64(n))
	return n, err
}

// Allocate applies fallocate(2) (see fileState.allocate): holes, no space
// reserved in the stores. Committed by the next Flush, like a write.
func (h *Handle) Allocate(ctx context.Context, off, length uint64, mode uint32) error {
	return h.st.allocate(off, length, mode)
}

// Seek answers lseek(2)'s SeekData and SeekHole on the file's current
// content (unflushed writes and holes included).
func (h *Handle) Seek(off uint64, whence int) (uint64, error) {
	return h.st.seek(off, whence)
}

// Truncate changes the file's size (truncate(2), O_TRUNC). Like a write,
// it is committed by the next Flush.
func (h *Handle) Truncate(ctx context.Context, size uint64) error {
	return h.st.truncate(ctx, size)
}

// Flush commits what was written: every chunk is stored, then the new
// chunk list is committed to the metadata. If a chunk could not be
// stored, the file goes back to its last committed content and the error
// is returned (the front end's page cache of the file is stale then). It
// may run any number of times.
func (h *Handle) Flush(ctx context.Context) error {
	return h.st.commit(ctx)
}

// Fsync is Flush, then makes the chunks and the metadata durable (FS.Sync).
func (h *Handle) Fsync(ctx context.Context) error {
	if err := h.Flush(ctx); err != nil {
		return err
	}
	return h.st.fs.Sync(ctx)
}

// Release ends the handle; the last handle on an inode commits anything
// left (a safety net: Flush already did), drops the open-file state and
// purges an orphan the front end has already forgotten (see Forgot). It
// returns the commit's error, which it has logged; later calls do nothing.
func (h *Handle) Release(ctx context.Context) error {
	var err error
	h.once.Do(func() { err = h.st.fs.release(ctx, h.st) })
	return err
}
