package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

// fsyncCounter is go-fuse's loopback node, counting the FUSE_FSYNC
// requests the kernel sends for files: what reaches the daemon of a FUSE
// filesystem when a store under it syncs.
type fsyncCounter struct {
	*gofs.LoopbackNode
	fsyncs *atomic.Int64
}

var (
	_ gofs.NodeFsyncer     = (*fsyncCounter)(nil)
	_ gofs.NodeWrapChilder = (*fsyncCounter)(nil)
)

// WrapChild makes every node of the loopback count.
func (n *fsyncCounter) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &fsyncCounter{LoopbackNode: ops.(*gofs.LoopbackNode), fsyncs: n.fsyncs}
}

func (n *fsyncCounter) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	n.fsyncs.Add(1)
	if fs, ok := f.(gofs.FileFsyncer); ok {
		return fs.Fsync(ctx, flags)
	}
	return syscall.EBADF
}

// mountLoopback mounts go-fuse's loopback of a temp dir on another and
// returns the mount point and the daemon's count of file fsyncs. It fails
// in CI (CI=true) and skips loudly elsewhere without /dev/fuse and root.
func mountLoopback(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	requireFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	loop, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	fsyncs := new(atomic.Int64)
	root := &fsyncCounter{LoopbackNode: loop.(*gofs.LoopbackNode), fsyncs: fsyncs}
	srv, err := gofs.Mount(mnt, root, &gofs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "dualstore-test-loopback", Name: "loopback",
	}})
	if err != nil {
		t.Fatalf("mount the loopback on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
		if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), " "+mnt+" ") {
			t.Errorf("%s is still mounted", mnt)
		}
	})
	return mnt, fsyncs
}

// requireFUSE fails the test in CI (CI=true) and skips it loudly
// elsewhere without /dev/fuse and root.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this FUSE test needs /dev/fuse and root (CI=true: failing instead of skipping)")
		}
		t.Skip("SKIPPING FUSE test: needs /dev/fuse and root")
	}
}

// TestFUSEResolvesToFsync puts a store on a real FUSE filesystem: auto
// resolves to fsync there, and its Sync reaches the daemon with an fsync
// of every chunk file put, where a forced syncfs sends none (the kernel
// does not pass syncfs on to a FUSE daemon, which is why auto avoids it).
func TestFUSEResolvesToFsync(t *testing.T) {
	mnt, fsyncs := mountLoopback(t)

	l := newLocal(t, Options{Root: filepath.Join(mnt, "auto"), CreateRoot: true})
	if got := l.SyncMode(); got != SyncModeFsync {
		t.Fatalf("auto on a FUSE mount resolved to %q, want fsync", got)
	}
	ids := putN(t, l, 20)
	before := fsyncs.Load()
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := fsyncs.Load() - before; n < int64(len(ids)) {
		t.Errorf("Sync after %d puts sent the daemon %d file fsyncs", len(ids), n)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked after Sync", nf, nd)
	}
	for _, id := range ids {
		if _, err := l.Get(t.Context(), id); err != nil {
			t.Error(err)
		}
	}

	forced := newLocal(t, Options{Root: filepath.Join(mnt, "syncfs"), CreateRoot: true, SyncMode: SyncModeSyncfs})
	putN(t, forced, 5)
	before = fsyncs.Load()
	if err := forced.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := fsyncs.Load() - before; n != 0 {
		t.Errorf("a syncfs on the FUSE mount sent the daemon %d file fsyncs: has the kernel learnt to pass syncfs on?", n)
	}
}

// TestFUSEConformance runs the store suite on a FUSE filesystem, where
// auto resolves to fsync.
func TestFUSEConformance(t *testing.T) {
	mnt, _ := mountLoopback(t)
	n := 0
	storetest.Run(t, func(t *testing.T) stores.Store {
		n++
		l := newLocal(t, Options{Root: filepath.Join(mnt, fmt.Sprint(n)), CreateRoot: true})
		if l.SyncMode() != SyncModeFsync {
			t.Fatalf("auto on a FUSE mount resolved to %q", l.SyncMode())
		}
		return l
	})
}
