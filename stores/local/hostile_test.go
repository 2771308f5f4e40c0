package local

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/dualstore/dualstore/stores"
)

// TestHostileChunkFiles replaces a stored chunk's file the ways a damaged
// or hostile store can: grown to 64 GiB (sparse, as `truncate -s 64G`
// leaves it) and a FIFO in its place. Each is ErrCorrupt at once, naming
// the file, without reading or allocating it and without a call left
// blocked behind.
func TestHostileChunkFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, p string)
	}{
		{"sparse 64GiB", func(t *testing.T, p string) {
			if err := os.Truncate(p, 64<<30); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, p string) {
			replace(t, p, func() error { return syscall.Mkfifo(p, 0o600) })
		}},
		{"directory", func(t *testing.T, p string) {
			replace(t, p, func() error { return os.Mkdir(p, 0o700) })
		}},
		{"symlink to a good copy", func(t *testing.T, p string) {
			good := filepath.Join(t.TempDir(), "good")
			if err := os.Rename(p, good); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(good, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"socket", func(t *testing.T, p string) {
			// Made where its path fits a socket address, moved into place.
			dir, err := os.MkdirTemp("", "sock")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			ln, err := net.Listen("unix", filepath.Join(dir, "s"))
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { ln.Close() })
			replace(t, p, func() error { return os.Rename(filepath.Join(dir, "s"), p) })
		}},
		{"device", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				t.Skip("SKIPPING: making a device node needs root")
			}
			// /dev/null's numbers: harmless even if it were opened.
			replace(t, p, func() error { return syscall.Mknod(p, syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) })
		}},
		{"grown, within the zstd bound", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("xx")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, opts := range []Options{{}, {Compress: true}, {Layout: LayoutCasync}} {
			t.Run(tc.name+"/"+layoutName(opts), func(t *testing.T) {
				l := newLocal(t, opts)
				data := []byte(strings.Repeat("a chunk of some size ", 100))
				id := idOf(data)
				if err := l.Put(t.Context(), id, data); err != nil {
					t.Fatal(err)
				}
				p := l.path(id)
				tc.damage(t, p)
				for _, op := range []string{"get", "stat"} {
					if op == "stat" && strings.HasPrefix(tc.name, "grown") {
						continue // Stat reports the size it finds: the caller compares
					}
					ctx, cancel := context.WithTimeoutCause(t.Context(), 5*time.Second, stores.ErrTimeout)
					ctx = stores.WithExpectedSize(ctx, id, int64(len(data)))
					start := time.Now()
					var err error
					if op == "get" {
						_, err = l.Get(ctx, id)
					} else {
						_, err = l.Stat(ctx, id)
					}
					cancel()
					if !errors.Is(err, stores.ErrCorrupt) || !strings.Contains(err.Error(), p) {
						t.Errorf("%s of a damaged chunk file: %v, want ErrCorrupt naming %s", op, err, p)
					}
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("%s of a damaged chunk file took %s", op, d)
					}
					if n := l.abandoned.Load(); n != 0 {
						t.Errorf("%s of a damaged chunk file left %d calls blocked", op, n)
					}
				}
				// Healing: Delete, then Put, leaves a regular file that
				// reads back.
				if err := l.Delete(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				if err := l.Put(t.Context(), id, data); err != nil {
					t.Fatal(err)
				}
				if got, err := l.Get(t.Context(), id); err != nil || string(got) != string(data) {
					t.Fatalf("Get after the heal: %d bytes, %v", len(got), err)
				}
				if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("after the heal %s is %v (%v), want a regular file", p, fi.Mode(), err)
				}
			})
		}
	}
}

// replace removes the file p and makes something else in its place.
func replace(t *testing.T, p string, make func() error) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := make(); err != nil {
		t.Fatal(err)
	}
}

func layoutName(o Options) string {
	switch {
	case o.Layout == LayoutCasync:
		return "casync"
	case o.Compress:
		return "compressed"
	}
	return "raw"
}

// TestZstdBomb stores chunk files that are small zstd frames decoding to
// more than any chunk (zeros, one MiB past stores.MaxChunkSize), with the
// size in the frame header and without it (a streamed frame). Get is
// ErrCorrupt; without an expected size it allocates no more than the max
// chunk, with one no more than the expected chunk.
func TestZstdBomb(t *testing.T) {
	zeros := make([]byte, stores.MaxChunkSize+1<<20)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	withSize := enc.EncodeAll(zeros, nil)
	var streamed bytes.Buffer
	enc.Reset(&streamed)
	if _, err := enc.Write(zeros); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{{"size in the header", withSize}, {"streamed", streamed.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(t, Options{})
			data := []byte("the real chunk's bytes")
			id := idOf(data)
			if err := os.MkdirAll(l.shardDir(id), dirPerm); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(l.path(id), tc.frame, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				ctx   context.Context
				bound int64
			}{
				{t.Context(), stores.MaxChunkSize},
				{stores.WithExpectedSize(t.Context(), id, int64(len(data))), int64(len(data))},
			} {
				allocated := allocatedBy(func() {
					_, err = l.Get(c.ctx, id)
				})
				if !errors.Is(err, stores.ErrCorrupt) {
					t.Errorf("Get of a %d-byte zstd bomb: %v, want ErrCorrupt", len(tc.frame), err)
				}
				// The frame read, the decoder's own buffers, the bound.
				if most := c.bound + 4<<20; allocated > uint64(most) {
					t.Errorf("Get of a zstd bomb bounded to %d bytes allocated %d bytes", c.bound, allocated)
				}
			}
		})
	}
}

// allocatedBy returns the bytes the heap allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestSyncHostileChunkFile: a chunk file put and waiting for its fsync
// (sync: fsync) replaced by a FIFO fails the Sync at once, naming it,
// instead of blocking its open until the deadline.
func TestSyncHostileChunkFile(t *testing.T) {
	l := newLocal(t, Options{SyncMode: SyncModeFsync})
	ids := putN(t, l, 2)
	p := l.path(ids[0])
	replace(t, p, func() error { return syscall.Mkfifo(p, 0o600) })
	ctx, cancel := context.WithTimeoutCause(t.Context(), 10*time.Second, stores.ErrTimeout)
	defer cancel()
	if err := l.Sync(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), p) {
		t.Errorf("Sync of a FIFO in a chunk's place: %v, want an error naming %s at once", err, p)
	}
	if n := l.abandoned.Load(); n != 0 {
		t.Errorf("Sync left %d calls blocked", n)
	}
}
