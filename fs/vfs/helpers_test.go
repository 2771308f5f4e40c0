package vfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/dualtest"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// testFS is a file layer over two in-memory tiers, each behind a
// fault-injecting store, and an index in a temp dir. Small chunk sizes
// make every test cross many chunk boundaries. Nothing here needs root or
// /dev/fuse.
type testFS struct {
	fs      *FS
	db      *index.DB
	dm      *dual.Manager
	primary *stores.Mem
	safety  *stores.Mem
	// pfault and sfault wrap primary and safety: set rules on them to make
	// a tier fail.
	pfault, sfault *stores.Fault
	staging        string
	env            *dualtest.Env
	opts           Options
}

const (
	testMin = dualtest.MinSize
	testAvg = dualtest.AvgSize
	testMax = dualtest.MaxSize
)

func newTestFS(t testing.TB, tweak ...func(*Options)) *testFS {
	t.Helper()
	env := dualtest.New(t)
	m := &testFS{db: env.DB, dm: env.DM, primary: env.Primary, safety: env.Safety,
		pfault: env.PrimaryFault, sfault: env.SafetyFault}
	m.staging = filepath.Join(t.TempDir(), "staging")
	if err := os.Mkdir(m.staging, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.StagingDir = m.staging
	opts.CacheBytes = 1 << 20
	opts.Log = env.Log
	for _, f := range tweak {
		f(&opts)
	}
	m.env, m.opts = env, opts
	var err error
	m.fs, err = New(m.db, m.dm, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Before dualtest closes the manager and the index (cleanups run last
	// first): the last durability point.
	t.Cleanup(func() {
		if err := m.fs.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// crash simulates a crash or power loss of the daemon: the manager and
// the index close without the file layer's last durability point (its
// open files and background loop are abandoned: set SyncInterval < 0),
// then everything is opened again, recovery included, over the same
// stores and index. Whatever the test removed from the stores meanwhile
// stands for what the power took.
func (m *testFS) crash(t testing.TB, lose func()) {
	t.Helper()
	m.fs.dur.closed.Store(true) // its Close at cleanup is a no-op now
	m.env.Close(t)
	if lose != nil {
		lose()
	}
	m.env.Open(t)
	m.db, m.dm = m.env.DB, m.env.DM
	m.pfault, m.sfault = m.env.PrimaryFault, m.env.SafetyFault
	var err error
	if m.fs, err = New(m.db, m.dm, m.opts); err != nil {
		t.Fatal(err)
	}
}

// create makes an empty regular file at the root and returns its attrs.
func (m *testFS) create(t testing.TB, name string) index.Attr {
	t.Helper()
	a, err := m.db.Create(context.Background(), index.RootIno, name,
		index.NewNode{Mode: syscall.S_IFREG | 0o644, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// createOpen creates a file and opens it as the FUSE adapter's Create
// does.
func (m *testFS) createOpen(t testing.TB, name string) *Handle {
	t.Helper()
	a := m.create(t, name)
	h, err := m.fs.OpenCreated(context.Background(), a.Ino, &a)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (m *testFS) open(t testing.TB, ino uint64) *Handle {
	t.Helper()
	h, err := m.fs.Open(context.Background(), ino)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// truncate changes a file's size the way the FUSE adapter's setattr does:
// on a state of its own (shared with any open handle), committed at once.
func (m *testFS) truncate(ino, size uint64) error {
	ctx := context.Background()
	h, err := m.fs.Open(ctx, ino)
	if err != nil {
		return err
	}
	defer h.Release(ctx)
	if err := h.Truncate(ctx, size); err != nil {
		return err
	}
	return h.Flush(ctx)
}

// state returns the open-file state of ino (nil if it is not open).
func (m *testFS) state(ino uint64) *fileState {
	m.fs.filesMu.Lock()
	defer m.fs.filesMu.Unlock()
	return m.fs.files[ino]
}

// committed returns the content the index holds for ino, read chunk by
// chunk from each tier directly, and fails unless both tiers hold every
// chunk and the chunks cover exactly the file's size.
func (m *testFS) committed(t testing.TB, ino uint64) []byte {
	t.Helper()
	ctx := context.Background()
	a, err := m.db.GetAttr(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := m.db.Chunks(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, c := range chunks {
		if c.Hole() {
			out = append(out, make([]byte, c.Size)...)
			continue
		}
		var first []byte
		for _, s := range []*stores.Mem{m.primary, m.safety} {
			data, err := s.Get(ctx, c.ID)
			if err != nil {
				t.Fatalf("chunk %s of inode %d missing in %s: %v", c.ID, ino, s.Name(), err)
			}
			if len(data) != int(c.Size) {
				t.Fatalf("chunk %s in %s: %d bytes, index says %d", c.ID, s.Name(), len(data), c.Size)
			}
			first = data
		}
		out = append(out, first...)
	}
	if uint64(len(out)) != a.Size {
		t.Fatalf("inode %d: chunks cover %d bytes, size %d", ino, len(out), a.Size)
	}
	return out
}

// readAt reads n bytes at off through h, joining the slices Read returns.
func readAt(t testing.TB, h *Handle, off int64, n int) []byte {
	t.Helper()
	// A buffer with garbage in it, as a front end's reused buffers have:
	// the read must write every byte it returns.
	dest := bytes.Repeat([]byte{0xa5}, n)
	slices, got, err := h.Read(context.Background(), dest, off)
	if err != nil {
		t.Fatalf("read(%d,%d): %v", off, n, err)
	}
	var out []byte
	for _, s := range slices {
		out = append(out, s...)
	}
	if len(out) != got {
		t.Fatalf("read(%d,%d): slices hold %d bytes, n is %d", off, n, len(out), got)
	}
	return out
}

// readAll reads the whole file through h in pieces of 128 KiB (the
// kernel's default readahead), past the end to check EOF.
func readAll(t testing.TB, h *Handle) []byte {
	t.Helper()
	var out []byte
	for off := int64(0); ; {
		b := readAt(t, h, off, 128<<10)
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
		off += int64(len(b))
	}
}

func write(t testing.TB, h *Handle, data []byte, off int64) {
	t.Helper()
	n, err := h.Write(context.Background(), data, off)
	if err != nil || n != len(data) {
		t.Fatalf("write(%d,%d): %d, %v", off, len(data), n, err)
	}
}

// writeSeq writes data from off in pieces of at most piece bytes.
func writeSeq(t testing.TB, h *Handle, data []byte, off int64, piece int) {
	t.Helper()
	for len(data) > 0 {
		n := min(piece, len(data))
		write(t, h, data[:n], off)
		data, off = data[n:], off+int64(n)
	}
}

func flush(t testing.TB, h *Handle) {
	t.Helper()
	if err := h.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func release(t testing.TB, h *Handle) {
	t.Helper()
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("release: %v", err)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// diff describes where two byte slices first differ, or returns "".
func diff(want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	return fmt.Sprintf("content differs at byte %d (len want %d, got %d)", i, len(want), len(got))
}

// stagingFiles counts the names in the staging dir: staging files are
// unlinked at once, so it must always be 0.
func (m *testFS) stagingFiles(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir(m.staging)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

var errTest = errors.New("test: tier down")
