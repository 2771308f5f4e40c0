package vfs

import (
	"context"
	"math"
	"time"

	"github.com/dualstore/dualstore/index"
)

// acquireWith returns the shared state of an open file, loading it on
// first open; created, if not nil, are the attributes of a file Create has
// just made, whose state (empty) is then not read back from the index.
func (f *FS) acquireWith(ctx context.Context, ino uint64, created *index.Attr) (*fileState, error) {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	if st, ok := f.files[ino]; ok {
		st.opens++
		return st, nil
	}
	st := &fileState{fs: f, ino: ino, rechunkFrom: math.MaxUint64}
	if created != nil && created.Size == 0 {
		st.setChunks(nil)
		st.mtime = created.Mtime
	} else if err := st.load(ctx); err != nil {
		return nil, err
	}
	st.opens = 1
	f.files[ino] = st
	return st, nil
}

// release drops one reference; the last one commits anything left (a
// safety net: Flush already did) and purges an orphan the kernel has
// already forgotten. It returns the commit's error, which it logs.
func (f *FS) release(ctx context.Context, st *fileState) error {
	f.filesMu.Lock()
	st.opens--
	last := st.opens == 0
	f.filesMu.Unlock()
	if !last {
		return nil
	}
	cerr := st.commit(ctx)
	if cerr != nil {
		f.log.Error().Uint64("ino", st.ino).Err(cerr).Msg("commit at release failed")
	}
	f.filesMu.Lock()
	if st.opens > 0 { // opened again while committing: the state lives on
		f.filesMu.Unlock()
		return cerr
	}
	delete(f.files, st.ino)
	f.closed.Add(1)
	forgotten := f.orphans[st.ino]
	if forgotten {
		delete(f.orphans, st.ino)
	}
	f.filesMu.Unlock()
	st.mu.Lock()
	st.dropOverlay()
	st.mu.Unlock()
	st.releaseHeld() // whatever did not commit is garbage now
	if forgotten {
		f.purge(ctx, st.ino)
	}
	return cerr
}

// IsOpen reports whether ino has open-file state (an open handle, or a
// truncate in progress).
func (f *FS) IsOpen(ino uint64) bool {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	_, ok := f.files[ino]
	return ok
}

// Dirty reports whether ino, open, holds writes its index entry does not
// have yet (a stream being cut, staged extents, a pending truncate): what
// the index lists for it is then not its content.
func (f *FS) Dirty(ino uint64) bool {
	f.filesMu.Lock()
	st, ok := f.files[ino]
	f.filesMu.Unlock()
	if !ok {
		return false
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.dirty || st.streaming()
}

// Closed counts the open-file states dropped so far (see EntryAttr).
func (f *FS) Closed() uint64 { return f.closed.Load() }

// Unlinked notes an inode whose last name went (unlink, rename over it).
// It is not purged yet: the kernel still holds it (it resolved the name
// just before, and a path being replaced by rename may be opened through
// it), and so may open files. Forgot and the last release purge it,
// whichever comes second. An orphan left by a crash is purged at the next
// mount.
func (f *FS) Unlinked(a index.Attr) {
	if a.Nlink != 0 {
		return
	}
	f.filesMu.Lock()
	if _, ok := f.orphans[a.Ino]; !ok {
		f.orphans[a.Ino] = false
	}
	f.filesMu.Unlock()
}

// Ref notes that the front end (the kernel, under FUSE) holds ino again:
// a lookup answered.
func (f *FS) Ref(ino uint64) {
	f.filesMu.Lock()
	if _, ok := f.orphans[ino]; ok {
		f.orphans[ino] = false
	}
	f.filesMu.Unlock()
}

// Forgot notes that the front end dropped its last reference to ino (the
// kernel's FORGET). An orphan with no open file is purged now.
func (f *FS) Forgot(ino uint64) {
	f.filesMu.Lock()
	_, orphan := f.orphans[ino]
	_, open := f.files[ino]
	switch {
	case !orphan:
		f.filesMu.Unlock()
		return
	case open:
		f.orphans[ino] = true
		f.filesMu.Unlock()
		return
	}
	delete(f.orphans, ino)
	f.filesMu.Unlock()
	f.purge(context.Background(), ino)
}

func (f *FS) purge(ctx context.Context, ino uint64) {
	if err := f.meta.Purge(context.WithoutCancel(ctx), ino); err != nil {
		f.log.Error().Uint64("ino", ino).Err(err).Msg("purge of unlinked inode failed; it is purged at the next mount")
	}
}

// overlayAttr replaces size and mtime with an open file's unflushed ones.
func (f *FS) overlayAttr(a *index.Attr) {
	f.filesMu.Lock()
	st, ok := f.files[a.Ino]
	f.filesMu.Unlock()
	if !ok {
		return
	}
	st.mu.RLock()
	if st.dirty {
		a.Size = st.size
		a.Holes = st.holesLocked()
		a.Mtime = st.mtime
		if st.mtime.After(a.Ctime) {
			a.Ctime = st.mtime
		}
	}
	st.mu.RUnlock()
}

// SetOpenMtime keeps an explicit utimes from being overwritten by the
// write time of an open file's next commit.
func (f *FS) SetOpenMtime(ino uint64, t time.Time) {
	f.filesMu.Lock()
	st, ok := f.files[ino]
	f.filesMu.Unlock()
	if ok {
		st.mu.Lock()
		st.mtime = t
		st.mu.Unlock()
	}
}

// Attr returns an inode's attributes as of now: the size and mtime of an
// open file's unflushed writes if it has any, else the index's.
//
// The open file is looked at before the index, never after. The other
// order loses appends: a GETATTR that reads the index just before another
// handle's flush commits, and the (by then clean) open file just after,
// answers the size from before the last write; the kernel takes it (no
// write happened since it asked) and the next O_APPEND write of another
// process lands on top of that write. Looking first is safe: unflushed
// state seen is at least as new as the index, and a clean state means
// every write so far is in the index read afterwards. Writes that finish
// after the kernel asked make it drop the answer anyway (attr_version).
func (f *FS) Attr(ctx context.Context, ino uint64) (index.Attr, error) {
	ov := index.Attr{Ino: ino}
	f.overlayAttr(&ov) // sets Mtime only if the open file has unflushed writes
	a, err := f.meta.GetAttr(ctx, ino)
	if err != nil {
		return a, err
	}
	if !ov.Mtime.IsZero() {
		a.Size, a.Holes, a.Mtime = ov.Size, ov.Holes, ov.Mtime
		if a.Mtime.After(a.Ctime) {
			a.Ctime = a.Mtime
		}
	}
	return a, nil
}

// EntryAttr completes the attributes an index call returned with an
// entry (lookup, link): for an open file they are read again in the
// order Attr needs. closed is Closed() as read before the index call: a
// file that was open and dirty when the index was read, and flushed and
// closed since, is no longer open, but the index's size was from before
// its writes; the kernel would take that size (no write since it asked)
// and keep it, with its page cache cut to it, for the attribute timeout.
// Such a file was dropped from the open files meanwhile, which changes
// Closed(), and is read again too.
func (f *FS) EntryAttr(ctx context.Context, a index.Attr, closed uint64) (index.Attr, error) {
	if !f.IsOpen(a.Ino) && f.closed.Load() == closed {
		return a, nil
	}
	return f.Attr(ctx, a.Ino)
}
