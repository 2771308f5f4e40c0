package index

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/stores"
)

var testHeader = Header{Hash: HashBLAKE3, Polynomial: 0x3DA3358B4DC173, MinSize: 512 << 10, AvgSize: 1 << 20, MaxSize: 8 << 20}

func testOpts(t testing.TB, path string) Options {
	var log zerolog.Logger
	if tt, ok := t.(*testing.T); ok {
		log = zerolog.New(zerolog.NewTestWriter(tt)).Level(zerolog.InfoLevel)
	} else {
		log = zerolog.Nop()
	}
	return Options{Path: path, NewHeader: testHeader, Log: log}
}

// newDB opens a fresh index in a temporary directory; cleanup checks its
// invariants and closes it.
func newDB(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	db := openDB(t, path)
	return db, path
}

func openDB(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), testOpts(t, path))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if db.closed.Load() {
			return
		}
		checkDB(t, db)
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// checkDB runs Check and compares Usage with the brute-force recount.
func checkDB(t testing.TB, db *DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.Check(ctx, 20); err != nil {
		t.Errorf("Check: %v", err)
	}
	u, err := db.Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	r, err := db.RecountUsage(ctx)
	if err != nil {
		t.Fatalf("RecountUsage: %v", err)
	}
	if u != r {
		t.Errorf("Usage %+v, recount %+v", u, r)
	}
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func fileNode() NewNode {
	return NewNode{Mode: syscall.S_IFREG | 0o644, Uid: 1000, Gid: 1000, Time: t0}
}
func dirNode() NewNode { return NewNode{Mode: syscall.S_IFDIR | 0o755, Uid: 1000, Gid: 1000, Time: t0} }

func mkfile(t testing.TB, db *DB, parent uint64, name string) Attr {
	t.Helper()
	a, err := db.Create(context.Background(), parent, name, fileNode())
	if err != nil {
		t.Fatalf("Create %q: %v", name, err)
	}
	return a
}

func mkdir(t testing.TB, db *DB, parent uint64, name string) Attr {
	t.Helper()
	a, err := db.Create(context.Background(), parent, name, dirNode())
	if err != nil {
		t.Fatalf("mkdir %q: %v", name, err)
	}
	return a
}

func getattr(t testing.TB, db *DB, ino uint64) Attr {
	t.Helper()
	a, err := db.GetAttr(context.Background(), ino)
	if err != nil {
		t.Fatalf("GetAttr %d: %v", ino, err)
	}
	return a
}

// cid makes a deterministic chunk id.
func cid(n int) stores.ID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return stores.ID(sha256.Sum256(b[:]))
}

func chunkList(sizes ...int) []Chunk {
	out := make([]Chunk, len(sizes))
	for i, s := range sizes {
		out[i] = Chunk{ID: cid(s), Size: uint32(s)}
	}
	return out
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func refsOf(t testing.TB, db *DB, id stores.ID) int64 {
	t.Helper()
	var refs int64
	err := db.read(context.Background(), func(q *conn) error {
		return q.QueryRowContext(context.Background(), "SELECT refs FROM chunks WHERE id = ?", id[:]).Scan(&refs)
	})
	if err != nil {
		return -1
	}
	return refs
}
