package main

import (
	"errors"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// pageSize is the unit in which unsynced data is kept: a write that does
// not cover a whole page first copies the rest of the page from the file
// as the mount sees it.
const pageSize = 64 << 10

// fileKey names a backing inode. Unsynced data belongs to the inode, not
// to a name: a temp file renamed into place keeps its unsynced data, and
// an fsync through any name or descriptor of the inode writes it all.
type fileKey struct{ dev, ino uint64 }

func keyOf(st *syscall.Stat_t) fileKey { return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)} }

// files holds every backing inode that has unsynced data or an open
// handle. Lock order: files.mu before file.mu.
type files struct {
	mu sync.Mutex
	m  map[fileKey]*file
}

func newFiles() *files { return &files{m: map[fileKey]*file{}} }

// file is one backing inode as the mount sees it: the backing file's
// bytes below clean, overlaid with the pages written since the last
// fsync, cut or zero-extended to size.
type file struct {
	// Guarded by files.mu.
	opens int  // open handles
	gone  bool // its last name was removed: drop it with the last handle

	mu    sync.Mutex
	size  int64            // the size the mount sees
	clean int64            // backing bytes at and past clean are stale: they read as zeros. clean <= size.
	pages map[int64][]byte // page index → pageSize bytes; bytes past size are zero
	dirty bool             // something to write at the next fsync
}

// get returns the inode's file, made from the backing size when it has
// none, and counts an open handle when open is set.
func (fs *files) get(key fileKey, backingSize int64, open bool) *file {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[key]
	if f == nil {
		f = &file{size: backingSize, clean: backingSize, pages: map[int64][]byte{}}
		fs.m[key] = f
	}
	if open {
		f.opens++
	}
	return f
}

// size returns the size the mount sees, if the layer knows better than
// the backing file.
func (fs *files) size(key fileKey) (int64, bool) {
	fs.mu.Lock()
	f := fs.m[key]
	fs.mu.Unlock()
	if f == nil {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size, true
}

// release ends one open handle of f, or a use without one (open false),
// and forgets f once nothing needs it: no handle, and nothing unsynced or
// no name left.
func (fs *files) release(key fileKey, f *file, open bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if open {
		f.opens--
	}
	f.mu.Lock()
	idle := f.opens == 0 && (f.gone || !f.dirty)
	f.mu.Unlock()
	if idle && fs.m[key] == f {
		delete(fs.m, key)
	}
}

// removed is called after the last name of an inode was removed (unlink,
// or rename over it): its unsynced data can never be synced by name
// again, and the backing filesystem may reuse the inode number for a new
// file, which must not inherit it. Open handles keep it until they end.
func (fs *files) removed(key fileKey) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[key]
	if f == nil {
		return
	}
	f.gone = true
	if f.opens == 0 {
		delete(fs.m, key)
	}
}

// readAt reads what the mount sees at off; fd is the backing file.
func (f *file) readAt(fd int, p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= f.size {
		return 0, nil
	}
	n := int(min(int64(len(p)), f.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		idx, in := pos/pageSize, pos%pageSize
		seg := p[done:min(n, done+int(pageSize-in))]
		if pg, ok := f.pages[idx]; ok {
			copy(seg, pg[in:])
		} else if err := f.readBacking(fd, seg, pos); err != nil {
			return done, err
		}
		done += len(seg)
	}
	return n, nil
}

// readBacking fills p with the backing file's bytes at off: those below
// clean, zeros from clean on. f.mu is held.
func (f *file) readBacking(fd int, p []byte, off int64) error {
	k := 0
	if off < f.clean {
		want := int(min(int64(len(p)), f.clean-off))
		for k < want {
			r, err := unix.Pread(fd, p[k:want], off+int64(k))
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			if r == 0 {
				break // the backing file is shorter than it was: zeros
			}
			k += r
		}
	}
	clear(p[k:])
	return nil
}

// writeAt keeps p, written at off, in memory; fd is the backing file, read
// for the rest of a page that p covers only in part.
func (f *file) writeAt(fd int, p []byte, off int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		idx, in := pos/pageSize, int(pos%pageSize)
		k := min(len(p)-done, pageSize-in)
		pg, ok := f.pages[idx]
		if !ok {
			pg = make([]byte, pageSize)
			if in != 0 || k != pageSize {
				start := idx * pageSize
				if end := min(start+pageSize, f.size); end > start {
					if err := f.readBacking(fd, pg[:end-start], start); err != nil {
						return err
					}
				}
			}
			f.pages[idx] = pg
		}
		copy(pg[in:], p[done:done+k])
		done += k
	}
	f.size = max(f.size, off+int64(len(p)))
	f.dirty = true
	return nil
}

// truncate sets the size the mount sees, in memory.
func (f *file) truncate(size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size == f.size {
		return
	}
	if size < f.size {
		for idx, pg := range f.pages {
			switch start := idx * pageSize; {
			case start >= size:
				delete(f.pages, idx)
			case start+pageSize > size:
				clear(pg[size-start:])
			}
		}
		f.clean = min(f.clean, size)
	}
	f.size = size
	f.dirty = true
}

// sync writes what the mount sees to the backing file fd (opened for
// writing) and forgets the pages. The backing file is not fsynced: it
// stands for the disk, which the simulated power loss does not reach.
func (f *file) sync(fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size > f.clean {
		// Stale bytes past clean that no page covers must read as zeros.
		if err := unix.Ftruncate(fd, f.clean); err != nil {
			return err
		}
	}
	idxs := make([]int64, 0, len(f.pages))
	for idx := range f.pages {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	for _, idx := range idxs {
		start := idx * pageSize
		b := f.pages[idx][:min(pageSize, f.size-start)]
		for len(b) > 0 {
			n, err := unix.Pwrite(fd, b, start)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			b, start = b[n:], start+int64(n)
		}
	}
	if err := unix.Ftruncate(fd, f.size); err != nil {
		return err
	}
	f.pages = map[int64][]byte{}
	f.clean = f.size
	f.dirty = false
	return nil
}
