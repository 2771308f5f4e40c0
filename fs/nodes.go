package fs

import (
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// The kernel keeps every inode it has looked up (a find, an ls -l, a
// big copy) until memory pressure or an unmount makes it forget it, and
// go-fuse keeps a node for each of them until it does: about 450 bytes
// a file, 450 MB for a walk of a million files. The kernel's cache is the
// kernel's; the daemon need not hold a copy of all of it. nodeLRU tracks
// the nodes the kernel holds, least recently looked up first, and past
// Options.MaxNodes asks the kernel to forget the oldest (FUSE_NOTIFY_PRUNE,
// Linux 6.16 and later; on older kernels an invalidation of their
// directory entries). The kernel drops those it does not use (an open
// file, a working directory, a directory with cached entries below it
// stays) and sends FORGET for them, which frees their nodes; the next
// access to one costs a LOOKUP.

// pruneBatch is how many node ids go into one prune notification.
const pruneBatch = 512

// nodeLRU is an intrusive list of the nodes the kernel may hold, the
// least recently looked up at the front. The root and the control
// directory's nodes are not in it.
type nodeLRU struct {
	max int // 0: no bound

	mu         sync.Mutex
	head, tail *node
	n          int
	// epoch counts the pruning rounds (wrapping); a node remembers the
	// one it was added in (see victims).
	epoch uint16
	// added counts the nodes added since the last round began: the next
	// one waits for max/16 of them, so that nodes the kernel keeps (in
	// use) cannot make every lookup start a round, and the FORGETs of
	// the last round have come in before the list is measured again.
	added int

	pruning atomic.Bool
	// fallback is set once the kernel refused a prune notification:
	// entries are invalidated instead.
	fallback atomic.Bool
	pruned   atomic.Int64 // nodes the kernel was asked to forget
}

// touch puts n at the back of the list (most recently used), adding it
// if it is not there. It reports whether the list is over its bound.
func (l *nodeLRU) touch(n *node) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.lruIn {
		if l.tail == n {
			return false
		}
		l.unlinkLocked(n)
	} else {
		n.lruEpoch = l.epoch
		l.added++
	}
	l.pushLocked(n)
	return l.max > 0 && l.n > l.max && l.added >= l.max/16
}

// remove takes n out of the list (the kernel forgot it).
func (l *nodeLRU) remove(n *node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.lruIn {
		l.unlinkLocked(n)
	}
}

func (l *nodeLRU) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *nodeLRU) pushLocked(n *node) {
	n.lruPrev, n.lruNext, n.lruIn = l.tail, nil, true
	if l.tail != nil {
		l.tail.lruNext = n
	} else {
		l.head = n
	}
	l.tail = n
	l.n++
}

func (l *nodeLRU) unlinkLocked(n *node) {
	if n.lruPrev != nil {
		n.lruPrev.lruNext = n.lruNext
	} else {
		l.head = n.lruNext
	}
	if n.lruNext != nil {
		n.lruNext.lruPrev = n.lruPrev
	} else {
		l.tail = n.lruPrev
	}
	n.lruPrev, n.lruNext, n.lruIn = nil, nil, false
	l.n--
}

// victim is a node chosen by victims; recent says it was added in the
// last two rounds.
type victim struct {
	n      *node
	recent bool
}

// victims returns up to k nodes from the front of the list and moves
// them to the back, so that the next round asks about others first (the
// kernel may keep any of them: then they come round again).
func (l *nodeLRU) victims(k int) []victim {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.added = 0
	out := make([]victim, 0, min(k, l.n))
	for range min(k, l.n) {
		n := l.head
		l.unlinkLocked(n)
		l.pushLocked(n)
		out = append(out, victim{n, l.epoch-n.lruEpoch < 2})
	}
	return out
}

// pruneIfOver starts a pruning round in the background unless one is
// running. Called after touch reported the list over its bound.
func (f *FS) pruneIfOver() {
	if !f.nodes.pruning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer f.nodes.pruning.Store(false)
		f.prune()
	}()
}

// prune asks the kernel to forget the least recently used nodes, down
// to 7/8 of the bound (so that a round is not due at every lookup).
func (f *FS) prune() {
	l := &f.nodes
	excess := l.len() - l.max*7/8
	if excess <= 0 {
		return
	}
	vs := l.victims(excess)
	batch := make([]*gofs.Inode, 0, pruneBatch)
	flush := func() {
		if len(batch) > 0 {
			f.forgetNodes(batch)
			batch = batch[:0]
		}
	}
	for _, v := range vs {
		// A node in no directory is one go-fuse never took into its
		// tree (a lookup that lost a race, a hard link to a known inode),
		// which will never be forgotten, or an unlinked one, which the
		// kernel forgets by itself: it leaves the list here. One added in
		// the last two rounds may still be on its way into the tree.
		if _, parent := v.n.Parent(); parent == nil && !v.recent {
			l.remove(v.n)
			continue
		}
		batch = append(batch, v.n.EmbeddedInode())
		if len(batch) == pruneBatch {
			flush()
		}
	}
	flush()
}

// forgetNodes asks the kernel to forget the nodes; it answers with
// FORGET for those it does not use.
func (f *FS) forgetNodes(ns []*gofs.Inode) {
	l := &f.nodes
	if !l.fallback.Load() {
		errno := ns[0].NotifyPrune(ns)
		if errno == 0 {
			l.pruned.Add(int64(len(ns)))
			return
		}
		if errno != syscall.ENOSYS && errno != syscall.EINVAL {
			f.log.Debug().Err(errno).Int("nodes", len(ns)).Msg("prune notification failed")
			return
		}
		f.log.Info().Err(errno).Msg("the kernel does not take prune notifications: invalidating entries instead")
		l.fallback.Store(true)
	}
	for _, in := range ns {
		// An entry invalidated over an open file or a directory with
		// entries cached below would be dropped from the name cache
		// while still in use; those stay.
		if in.IsDir() && len(in.Children()) > 0 || f.vfs.IsOpen(in.StableAttr().Ino) {
			continue
		}
		name, parent := in.Parent()
		if parent == nil {
			continue
		}
		if errno := parent.NotifyEntry(name); errno == 0 {
			l.pruned.Add(1)
		}
	}
}
