package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dualstore/dualstore/dual/dualtest"
	"github.com/dualstore/dualstore/index"
)

// badRoot is the index with its root inode failing: reads of the root's
// attributes past the first ok fail (the index failing between Mount's
// own check and the kernel's first request), or the root is not a
// directory. A fault injected at the Meta interface: a real index cannot
// be made to fail between two reads.
type badRoot struct {
	*index.DB
	ok      atomic.Int32
	notADir bool
}

func (b *badRoot) GetAttr(ctx context.Context, ino uint64) (index.Attr, error) {
	a, err := b.DB.GetAttr(ctx, ino)
	if ino != index.RootIno || err != nil {
		return a, err
	}
	if b.notADir {
		a.Mode = syscall.S_IFREG | 0o644
		return a, nil
	}
	if b.ok.Add(-1) < 0 {
		return index.Attr{}, fmt.Errorf("index: getattr %d: injected: %w", ino, index.ErrCorrupt)
	}
	return a, nil
}

// mountedAt reports whether /proc/self/mountinfo lists a mount on dir.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			return true
		}
	}
	return false
}

// TestMountFailureLeavesNoMount: every way a mount of a filesystem whose
// root the index cannot serve fails returns an error naming the root and
// leaves the mount point as it was: not mounted, not a dead mount
// answering ENOTCONN. "first requests fail" passes Mount's own check and
// fails the kernel's first GETATTR, after the kernel mount.
func TestMountFailureLeavesNoMount(t *testing.T) {
	requireFUSE(t)
	for _, tc := range []struct {
		name    string
		ok      int32
		notADir bool
		want    string
	}{
		{name: "root unreadable", want: "cannot serve the root directory"},
		{name: "root not a directory", notADir: true, want: "not a directory"},
		{name: "first requests fail", ok: 1, want: "unmounted again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := dualtest.New(t)
			tmp := t.TempDir()
			staging := filepath.Join(tmp, "staging")
			if err := os.Mkdir(staging, 0o700); err != nil {
				t.Fatal(err)
			}
			meta := &badRoot{DB: env.DB, notADir: tc.notADir}
			meta.ok.Store(tc.ok)
			o := DefaultOptions()
			o.Files.StagingDir, o.Log = staging, env.Log
			f, err := New(meta, env.DM, o)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dir := filepath.Join(tmp, "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			srv, err := f.Mount(dir, MountOptions{})
			if err == nil {
				if uerr := srv.Unmount(); uerr != nil {
					_ = syscall.Unmount(dir, syscall.MNT_DETACH)
				}
				t.Fatal("Mount succeeded over an index whose root fails")
			}
			t.Cleanup(func() {
				if mountedAt(t, dir) {
					_ = syscall.Unmount(dir, syscall.MNT_DETACH)
				}
			})
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Mount: %v, want it to say %q", err, tc.want)
			}
			if mountedAt(t, dir) {
				t.Errorf("after the failed mount, /proc/self/mountinfo still lists %s", dir)
			}
			if _, err := os.ReadDir(dir); err != nil {
				t.Errorf("the mount point after the failed mount: %v", err)
			}
		})
	}
}
