package fs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/dualtest"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// testMount mounts a filesystem over two in-memory tiers in a temp dir.
// Small chunk sizes make every test cross many chunk boundaries.
type testMount struct {
	dir     string
	fs      *FS
	db      *index.DB
	dm      *dual.Manager
	srv     *fuse.Server
	primary *stores.Mem
	safety  *stores.Mem
	env     *dualtest.Env
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests need /dev/fuse and root (CI=true: failing instead of skipping)")
		}
		t.Skip("SKIPPING FUSE test: needs /dev/fuse and root")
	}
}

func newTestMount(t *testing.T) *testMount {
	t.Helper()
	return newTestMountWith(t, nil)
}

// newTestMountWith is newTestMount with the options changed by set.
func newTestMountWith(t *testing.T, set func(*Options)) *testMount {
	t.Helper()
	requireFUSE(t)
	env := dualtest.New(t)
	tmp := t.TempDir()
	log := env.Log
	db := env.DB
	m := &testMount{db: db, dm: env.DM, primary: env.Primary, safety: env.Safety, env: env}
	staging := filepath.Join(tmp, "staging")
	os.Mkdir(staging, 0o700)
	o := DefaultOptions()
	o.Files.StagingDir, o.Files.CacheBytes, o.Log = staging, 1<<20, log
	if set != nil {
		set(&o)
	}
	var err error
	m.fs, err = New(db, m.dm, o)
	if err != nil {
		t.Fatal(err)
	}
	m.dir = filepath.Join(tmp, "mnt")
	os.Mkdir(m.dir, 0o755)
	m.srv, err = m.fs.Mount(m.dir, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.srv.Unmount(); err != nil {
			syscall.Unmount(m.dir, syscall.MNT_DETACH)
		}
		m.fs.Close()
		// dualtest closes the manager and the index after this (cleanups
		// run last first).
	})
	return m
}

// TestModelRandomOps applies seeded random writes, truncates, appends,
// reads and reopens to a file in the mount and to a reference file on
// disk, comparing the whole content after every step. It exercises the
// stream, the staging overlay and the re-chunking that resynchronises with
// old chunk boundaries.
func TestModelRandomOps(t *testing.T) {
	m := newTestMount(t)
	seeds := uint64(4)
	if s := os.Getenv("DUALSTORE_MODEL_SEEDS"); s != "" {
		fmt.Sscan(s, &seeds)
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			name := fmt.Sprintf("f%d", seed)
			ref := filepath.Join(t.TempDir(), name)
			got := filepath.Join(m.dir, name)
			open := func() (*os.File, *os.File) {
				a, err := os.OpenFile(got, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.OpenFile(ref, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				return a, b
			}
			fa, fb := open()
			var log []string
			check := func(step int) {
				want, _ := os.ReadFile(ref)
				have, err := os.ReadFile(got)
				if err != nil {
					t.Fatalf("step %d: read: %v\nops: %s", step, err, strings.Join(log, "; "))
				}
				if !bytes.Equal(want, have) {
					i := 0
					for i < len(want) && i < len(have) && want[i] == have[i] {
						i++
					}
					t.Fatalf("step %d: content differs at byte %d (len want %d, got %d)\nops: %s", step, i, len(want), len(have), strings.Join(log, "; "))
				}
			}
			for step := range 120 {
				st, _ := fb.Stat()
				size := st.Size()
				switch op := rng.IntN(10); {
				case op < 4: // write somewhere (maybe past the end)
					off := rng.Int64N(size + 200<<10 + 1)
					buf := make([]byte, 1+rng.IntN(100<<10))
					for i := range buf {
						buf[i] = byte(rng.Uint32())
					}
					if rng.IntN(3) == 0 {
						off = size // sequential append
					}
					log = append(log, fmt.Sprintf("write(%d,%d)", off, len(buf)))
					if _, err := fa.WriteAt(buf, off); err != nil {
						t.Fatal(err)
					}
					fb.WriteAt(buf, off)
				case op < 6: // truncate
					n := rng.Int64N(size + 100<<10 + 1)
					if rng.IntN(4) == 0 {
						n = 0
					}
					log = append(log, fmt.Sprintf("truncate(%d)", n))
					if err := fa.Truncate(n); err != nil {
						t.Fatal(err)
					}
					fb.Truncate(n)
				case op < 8: // read a range through the open handle
					off := rng.Int64N(size + 1)
					n := rng.IntN(200 << 10)
					a, b := make([]byte, n), make([]byte, n)
					na, _ := fa.ReadAt(a, off)
					nb, _ := fb.ReadAt(b, off)
					log = append(log, fmt.Sprintf("read(%d,%d)", off, n))
					if na != nb || !bytes.Equal(a[:na], b[:nb]) {
						t.Fatalf("step %d: read(%d,%d) got %d bytes, want %d (or content differs)\nops: %s", step, off, n, na, nb, strings.Join(log, "; "))
					}
				default: // close and reopen: commits
					log = append(log, "reopen")
					if err := fa.Close(); err != nil {
						t.Fatalf("close: %v", err)
					}
					fb.Close()
					fa, fb = open()
					check(step)
				}
			}
			if err := fa.Close(); err != nil {
				t.Fatal(err)
			}
			fb.Close()
			check(-1)
			// Committed chunk lists must cover the file exactly, and every
			// chunk must be in both tiers.
			a, err := m.db.Lookup(context.Background(), index.RootIno, name)
			if err != nil {
				t.Fatal(err)
			}
			chunks, err := m.db.Chunks(context.Background(), a.Ino)
			if err != nil {
				t.Fatal(err)
			}
			var sum uint64
			for _, c := range chunks {
				sum += uint64(c.Size)
				if c.Hole() {
					continue // a hole is in no store
				}
				for _, s := range []*stores.Mem{m.primary, m.safety} {
					if _, err := s.Stat(context.Background(), c.ID); err != nil {
						t.Fatalf("chunk %s of %s missing in %s: %v", c.ID, name, s.Name(), err)
					}
				}
			}
			if sum != a.Size {
				t.Fatalf("chunks cover %d bytes, size %d", sum, a.Size)
			}
		})
	}
}

// TestRechunkResyncs checks that overwriting a few bytes in the middle of
// a large file rewrites only the chunks around the change.
func TestRechunkResyncs(t *testing.T) {
	m := newTestMount(t)
	p := filepath.Join(m.dir, "big")
	data := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, _ := m.db.Lookup(ctx, index.RootIno, "big")
	before, _ := m.db.Chunks(ctx, a.Ino)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("hello"), 2<<20)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copy(data[2<<20:], "hello")
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs after overwrite")
	}
	after, _ := m.db.Chunks(ctx, a.Ino)
	old := map[stores.ID]bool{}
	for _, c := range before {
		old[c.ID] = true
	}
	changed := 0
	for _, c := range after {
		if !old[c.ID] {
			changed++
		}
	}
	if changed == 0 || changed > 3 {
		t.Fatalf("%d of %d chunks changed after a 5-byte overwrite; want 1..3", changed, len(after))
	}
}

// TestUnlinkOpenFile keeps an unlinked file readable until it is closed,
// then frees its chunks.
func TestUnlinkOpenFile(t *testing.T) {
	m := newTestMount(t)
	p := filepath.Join(m.dir, "u")
	want := bytes.Repeat([]byte("0123456789"), 50000)
	os.WriteFile(p, want, 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after unlink: %v", err)
	}
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, _ := m.db.Usage(context.Background())
		if u.UniqueChunks == 0 && u.Files == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after last close: usage %+v, want no files and no referenced chunks", u)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
