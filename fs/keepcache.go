package fs

import "sync"

// keepCache decides, open by open, whether the kernel may keep the page
// cache it holds for a file (FOPEN_KEEP_CACHE) or must drop it first.
//
// Keeping it is what makes warm reads fast, and it is right as long as the
// cache holds the file's content. Writes go through the kernel (no
// writeback cache), which copies them into the page cache as it sends
// them, so the cache follows them; but not exactly while someone writes:
// the kernel drops pages whenever an answer shows a new size or mtime
// (auto_inval_data) or an open does not keep the cache, and a drop that
// lands between a write's copy into the cache and its arrival here lets a
// concurrent read fetch the old bytes (zeros past the old end) into the
// cache again, where they stay. A failed write reverts the file behind
// the kernel's back, too (handle.reverted).
//
// So the policy of libfuse's passthrough_hp cache=auto: an open keeps the
// cache only if nobody opened the file for writing (or truncated it) since
// the kernel last dropped it, and nobody has it open for writing now. The
// first open after the last writer has gone drops the cache; every open
// after that keeps it, so a file written once is read from the page cache
// from its second open on (or its first after a remount).
//
// An inode the kernel forgets takes its page cache with it, and its entry
// goes. Entries exist only for files open for writing or written since
// their last drop, so the map stays small.
type keepCache struct {
	mu sync.Mutex
	m  map[uint64]cacheState
}

type cacheState struct {
	writers int  // open handles that may write
	changed bool // content may differ from the kernel's cache
}

// open returns whether an open of ino may keep the kernel's cache and
// whether someone has it open for writing already, and counts a writer.
func (k *keepCache) open(ino uint64, write bool) (keep, writing bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.m[ino]
	writing = s.writers > 0
	switch {
	case !ok:
		keep = true
	case s.writers > 0:
		keep = false // and it stays changed: the writer goes on
	default:
		keep = !s.changed
		s.changed = false // this open drops the cache: it is right again
	}
	if write {
		s.writers++
		s.changed = true
	}
	k.set(ino, s)
	return keep, writing
}

// release ends a handle opened with open.
func (k *keepCache) release(ino uint64, write bool) {
	if !write {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.m[ino]
	if s.writers > 0 {
		s.writers--
	}
	k.set(ino, s)
}

// change notes content that changed behind the kernel's back or through
// a path other than an open for writing (truncate, a revert).
func (k *keepCache) change(ino uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.m[ino]
	s.changed = true
	k.set(ino, s)
}

// forget drops the entry of an inode the kernel has forgotten (and with it
// its page cache).
func (k *keepCache) forget(ino uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.m[ino]; ok && s.writers == 0 {
		delete(k.m, ino)
	}
}

// set stores s, or deletes the entry when there is nothing to remember.
// Caller holds mu.
func (k *keepCache) set(ino uint64, s cacheState) {
	if s.writers == 0 && !s.changed {
		delete(k.m, ino)
		return
	}
	if k.m == nil {
		k.m = map[uint64]cacheState{}
	}
	k.m[ino] = s
}
