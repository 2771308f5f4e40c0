package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
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
	name    string
	release <-chan struct{}
}

var (
	_ gofs.NodeLookuper    = (*hangNode)(nil)
	_ gofs.NodeWrapChilder = (*hangNode)(nil)
)

// WrapChild makes every node of the loopback hang on the name.
func (n *hangNode) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &hangNode{LoopbackNode: ops.(*gofs.LoopbackNode), name: n.name, release: n.release}
}

func (n *hangNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == n.name {
		<-n.release
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// hungChunk opens a store on a FUSE filesystem where every lookup of one
// chunk's file hangs until release is called (and at the test's end):
// each Get or Stat of that chunk blocks in the kernel. release returns
// once no call of the store is left blocked.
func hungChunk(t *testing.T) (*Local, stores.ID, func()) {
	t.Helper()
	requireFUSE(t)
	id := idOf([]byte("hangs"))
	backing, mnt := t.TempDir(), t.TempDir()
	loop, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	root := &hangNode{LoopbackNode: loop.(*gofs.LoopbackNode), name: id.String() + chunkExt, release: ch}
	srv, err := gofs.Mount(mnt, root, &gofs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "dualstore-test-hang", Name: "hang",
	}})
	if err != nil {
		t.Fatalf("mount the hanging loopback on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	l, err := New(Options{Root: mnt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Mkdir(l.shardDir(id), dirPerm); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() { close(ch) })
		storetest.WaitFor(t, 10*time.Second, func() error {
			if n := l.abandoned.Load(); n != 0 {
				return fmt.Errorf("%d abandoned calls still blocked after release", n)
			}
			return nil
		})
	}
	t.Cleanup(release) // before the store closes and the filesystem goes
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
