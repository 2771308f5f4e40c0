package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

// hangNode is go-fuse's loopback node whose lookups of one name block
// until released: how a call into a hung filesystem (a dead NFS server, a
// wedged disk, a stalled FUSE daemon) blocks in the kernel, where no
// context reaches it. (A FIFO no longer does: the store refuses one
// without waiting on it.)
type hangNode struct {
	*gofs.LoopbackNode
	h *hang
}

// hang is what every hangNode of one mount shares: the name whose
// lookups block (none until set), and the channel that lets them go.
type hang struct {
	name    atomic.Pointer[string]
	release chan struct{}
}

var (
	_ gofs.NodeLookuper    = (*hangNode)(nil)
	_ gofs.NodeWrapChilder = (*hangNode)(nil)
)

// WrapChild makes every node of the loopback hang on the name.
func (n *hangNode) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &hangNode{LoopbackNode: ops.(*gofs.LoopbackNode), h: n.h}
}

func (n *hangNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if p := n.h.name.Load(); p != nil && *p == name {
		<-n.h.release
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// hangingStore opens a store with opts on a FUSE filesystem that is asked
// for every name a path walk passes (no entry caching) and answers at once,
// until hangOn(name) makes every lookup of that file name block until
// release is called (and at the test's end). release returns once no call
// of the store is left blocked.
func hangingStore(t *testing.T, opts Options) (l *Local, hangOn func(name string), release func()) {
	t.Helper()
	requireFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	loop, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	h := &hang{release: make(chan struct{})}
	var zero time.Duration
	srv, err := gofs.Mount(mnt, &hangNode{LoopbackNode: loop.(*gofs.LoopbackNode), h: h}, &gofs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "dualstore-test-hang", Name: "hang"},
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
	})
	if err != nil {
		t.Fatalf("mount the hanging loopback on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	opts.Root = mnt
	l, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var once sync.Once
	release = func() {
		once.Do(func() { close(h.release) })
		storetest.WaitFor(t, 10*time.Second, func() error {
			if n := l.abandoned.Load(); n != 0 {
				return fmt.Errorf("%d abandoned calls still blocked after release", n)
			}
			return nil
		})
	}
	t.Cleanup(release) // before the store closes and the filesystem goes
	return l, func(name string) { h.name.Store(&name) }, release
}

// hungChunk is a hangingStore where every Get or Stat of one chunk (no
// such chunk is stored) blocks in the kernel.
func hungChunk(t *testing.T) (*Local, stores.ID, func()) {
	t.Helper()
	l, hangOn, release := hangingStore(t, Options{})
	id := idOf([]byte("hangs"))
	if err := os.Mkdir(l.shardDir(id), dirPerm); err != nil {
		t.Fatal(err)
	}
	hangOn(filepath.Base(l.path(id)))
	return l, id, release
}

// TestHungFilesystem checks that calls end at their context's deadline
// even when the filesystem does not answer, that the number of operations
// left blocked is bounded, and that the store works again once the
// filesystem answers.
func TestHungFilesystem(t *testing.T) {
	l, id, release := hungChunk(t)

	for i := range maxAbandoned {
		ctx, cancel := context.WithTimeoutCause(context.Background(), 20*time.Millisecond, stores.ErrTimeout)
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, err = l.Get(ctx, id)
		} else {
			_, err = l.Stat(ctx, id)
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d on a hung chunk file: %v, want a deadline error", i, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("call %d returned after %s, long past its 20ms deadline", i, d)
		}
	}
	if n := l.abandoned.Load(); n != maxAbandoned {
		t.Fatalf("%d abandoned operations, want %d", n, maxAbandoned)
	}
	// The bound is reached: calls fail at once, even ones that would not
	// hang, without adding blocked threads.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other := idOf([]byte("fine"))
	if err := l.Put(ctx, other, []byte("fine")); !errors.Is(err, errHung) {
		t.Fatalf("Put while %d operations are blocked: %v, want errHung", maxAbandoned, err)
	}
	if n := l.abandoned.Load(); n != maxAbandoned {
		t.Fatalf("%d abandoned operations after a refused call, want %d", n, maxAbandoned)
	}

	// The filesystem answers again.
	release()
	if err := l.Put(ctx, other, []byte("fine")); err != nil {
		t.Fatalf("Put after the filesystem recovered: %v", err)
	}
	if got, err := l.Get(ctx, other); err != nil || string(got) != "fine" {
		t.Fatalf("Get after the filesystem recovered: %q, %v", got, err)
	}
	// Close does not wait for anything abandoned.
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
}

// TestMetaHungFilesystem: meta calls go through the same guard as chunk
// calls, so once maxAbandoned operations are blocked in a hung filesystem
// they fail at once too.
func TestMetaHungFilesystem(t *testing.T) {
	l, id, release := hungChunk(t)
	for range maxAbandoned {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		_, err := l.Get(ctx, id)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get of a hung chunk file: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := l.PutMeta(ctx, "x", []byte("x")); !errors.Is(err, errHung) {
		t.Errorf("PutMeta while the filesystem hangs: %v, want errHung", err)
	}
	if _, err := l.GetMeta(ctx, "x", 10); !errors.Is(err, errHung) {
		t.Errorf("GetMeta while the filesystem hangs: %v, want errHung", err)
	}
	if _, err := l.ListMeta(ctx, ""); !errors.Is(err, errHung) {
		t.Errorf("ListMeta while the filesystem hangs: %v, want errHung", err)
	}
	if err := l.DeleteMeta(ctx, "x"); !errors.Is(err, errHung) {
		t.Errorf("DeleteMeta while the filesystem hangs: %v, want errHung", err)
	}
	release()
	if err := l.PutMeta(ctx, "x", []byte("x")); err != nil {
		t.Errorf("PutMeta after the filesystem recovered: %v", err)
	}
}

// TestSyncAbandonedKeepsTracked hangs the lookups of a tracked chunk file,
// so that its open for the fsync blocks as a call into a hung filesystem
// does: Sync ends at its deadline, what it did not sync stays tracked, and
// the next Sync, once the filesystem answers, syncs everything.
func TestSyncAbandonedKeepsTracked(t *testing.T) {
	l, hangOn, release := hangingStore(t, Options{SyncMode: SyncModeFsync})
	ids := putN(t, l, 3)
	hung := l.path(ids[0])
	hangOn(filepath.Base(hung))

	ctx, cancel := context.WithTimeoutCause(t.Context(), 50*time.Millisecond, stores.ErrTimeout)
	defer cancel()
	err := l.Sync(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync with a hung file: %v, want a deadline error", err)
	}
	files, dirs := tracked(l)
	if !files[hung] || len(dirs) == 0 {
		t.Errorf("after the abandoned Sync: tracked %v and %v, want %s and the directories", files, dirs, hung)
	}
	release()
	if _, dirs := tracked(l); len(dirs) == 0 {
		t.Errorf("the directories went untracked though their files' Sync failed")
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked", nf, nd)
	}
}
