package index

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"ok", Options{Path: "x.db", NewHeader: testHeader}, true},
		{"no header is fine for an existing index", Options{Path: "x.db"}, true},
		{"empty path", Options{NewHeader: testHeader}, false},
		{"bad hash", Options{Path: "x", NewHeader: Header{Hash: "md5", MinSize: 1, AvgSize: 2, MaxSize: 3}}, false},
		{"sha512-256", Options{Path: "x", NewHeader: Header{Hash: HashSHA512256, MinSize: 1, AvgSize: 2, MaxSize: 3}}, true},
		{"min 0", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, AvgSize: 2, MaxSize: 3}}, false},
		{"min > avg", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, MinSize: 3, AvgSize: 2, MaxSize: 3}}, false},
		{"avg > max", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, MinSize: 1, AvgSize: 4, MaxSize: 3}}, false},
		{"bad fsid", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, MinSize: 1, AvgSize: 1, MaxSize: 1, FSID: "XYZ"}}, false},
		{"good fsid", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, MinSize: 1, AvgSize: 1, MaxSize: 1, FSID: "0123456789abcdef0123456789abcdef"}}, true},
		{"bad format version", Options{Path: "x", NewHeader: Header{Hash: HashBLAKE3, MinSize: 1, AvgSize: 1, MaxSize: 1, FormatVersion: 9}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestOpenCreatesRoot(t *testing.T) {
	db, path := newDB(t)
	ctx := context.Background()
	h := db.Header()
	if h.FormatVersion != FormatVersion || !validFSID(h.FSID) || h.Hash != testHeader.Hash ||
		h.Polynomial != testHeader.Polynomial || h.MinSize != testHeader.MinSize ||
		h.AvgSize != testHeader.AvgSize || h.MaxSize != testHeader.MaxSize || h.Created.IsZero() {
		t.Fatalf("header %+v", h)
	}
	root := getattr(t, db, RootIno)
	if root.Mode != syscall.S_IFDIR|0o755 || root.Nlink != 2 || root.Uid != 0 || root.Gid != 0 || root.Size != 0 {
		t.Fatalf("root %+v", root)
	}
	u, err := db.Usage(ctx)
	if err != nil || u != (Usage{Dirs: 1, Inodes: 1}) {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
	if p, err := db.Path(ctx, RootIno); p != "/" || err != nil {
		t.Fatalf("Path(root) = %q, %v", p, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing but the database is left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v", names)
	}
	// Reopen: same header, NewHeader ignored.
	o := testOpts(t, path)
	o.NewHeader.Hash = HashSHA512256
	db2, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if got := db2.Header(); got != h && !(got.FSID == h.FSID && got.Created.Equal(h.Created) && got.Hash == h.Hash) {
		t.Fatalf("header after reopen %+v, want %+v", got, h)
	}
	if err := db.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	if _, err := db.GetAttr(ctx, RootIno); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetAttr after Close = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("missing with MustExist", func(t *testing.T) {
		o := testOpts(t, filepath.Join(t.TempDir(), "none.db"))
		o.MustExist = true
		_, err := Open(ctx, o)
		wantErr(t, err, ErrNotExist)
		if _, serr := os.Stat(o.Path); serr == nil {
			t.Fatal("MustExist created the file")
		}
	})
	t.Run("missing without header", func(t *testing.T) {
		o := testOpts(t, filepath.Join(t.TempDir(), "none.db"))
		o.NewHeader = Header{}
		_, err := Open(ctx, o)
		wantErr(t, err, ErrInvalid)
	})
	t.Run("missing directory", func(t *testing.T) {
		_, err := Open(ctx, testOpts(t, filepath.Join(t.TempDir(), "no", "such", "index.db")))
		if err == nil {
			t.Fatal("Open in a missing directory succeeded")
		}
	})
	t.Run("path is a directory", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Open(ctx, testOpts(t, dir))
		wantErr(t, err, ErrCorrupt)
	})
	t.Run("locked", func(t *testing.T) {
		db, path := newDB(t)
		_ = db
		_, err := Open(ctx, testOpts(t, path))
		wantErr(t, err, ErrLocked)
	})
}

// untouched opens path and checks the error and that the file is unchanged
// and alone in its directory.
func untouched(t *testing.T, path string, want error) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), testOpts(t, path))
	if err == nil {
		db.Close()
		t.Fatalf("Open succeeded")
	}
	if !errors.Is(err, want) {
		t.Fatalf("Open = %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("file modified")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if e.Name() != filepath.Base(path) {
			t.Errorf("Open left %s behind", e.Name())
		}
	}
}

func TestOpenGarbage(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("hello, world\n")},
		{"random", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x01}, 1000)},
		{"truncated sqlite magic", []byte("SQLite format 3\x00 and then nothing")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			untouched(t, path, ErrCorrupt)
		})
	}
}

// TestOpenDamagedPages: a valid header (page 1 and the header table)
// over pages of garbage. The open refuses it with ErrCorrupt, naming the
// file, before anything writes to it: a mount over it would otherwise
// come up and fail at its first request for the root.
func TestOpenDamagedPages(t *testing.T) {
	for _, tt := range []struct {
		name  string
		table string // whose root page is overwritten; "" = every page past the header's
	}{
		{"inodes", "inodes"},
		{"dentries", "dentries"},
		{"an index of chunks", "chunks_unref"},
		{"every page past the header", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db, path := newDB(t)
			d := mkdir(t, db, RootIno, "dir")
			for i := range 50 {
				mkfile(t, db, d.Ino, fmt.Sprintf("file-%03d", i))
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			rawExec(t, path, "PRAGMA wal_checkpoint(TRUNCATE)")
			var page, header int64
			sq, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if err := sq.QueryRow("SELECT max(rootpage) FROM sqlite_master WHERE tbl_name = 'header'").Scan(&header); err != nil {
				t.Fatal(err)
			}
			if tt.table != "" {
				if err := sq.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", tt.table).Scan(&page); err != nil {
					t.Fatal(err)
				}
			}
			sq.Close()
			for _, s := range []string{"-wal", "-shm"} {
				os.Remove(path + s)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			garbage := bytes.Repeat([]byte{0xa5, 0x17, 0x00, 0xff}, 1024) // one 4 KiB page
			for p := int64(1); p*4096 < st.Size(); p++ {
				if (tt.table == "" && p+1 > header) || p+1 == page {
					if _, err := f.WriteAt(garbage, p*4096); err != nil {
						t.Fatal(err)
					}
				}
			}
			f.Close()
			untouched(t, path, ErrCorrupt)
		})
	}
}

// makeSQLite creates an SQLite database with another schema.
func makeSQLite(t *testing.T, path string, stmts ...string) {
	t.Helper()
	d, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, s := range stmts {
		if _, err := d.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestOpenForeign(t *testing.T) {
	t.Run("other schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "index.db")
		makeSQLite(t, path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)",
			"INSERT INTO photos (name) VALUES ('a.jpg')")
		untouched(t, path, ErrForeign)
	})
	t.Run("other schema in WAL mode", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "index.db")
		makeSQLite(t, path, "PRAGMA journal_mode=WAL", "CREATE TABLE header (key TEXT, value TEXT)")
		untouched(t, path, ErrForeign)
	})
	t.Run("our application id but no header", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "index.db")
		makeSQLite(t, path, "PRAGMA journal_mode=WAL", fmt.Sprintf("PRAGMA application_id = %d", ApplicationID), "CREATE TABLE x (y)")
		untouched(t, path, ErrCorrupt)
	})
}

// rawExec changes a closed index behind the package's back.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	makeSQLite(t, path, stmts...)
}

func TestOpenBadHeader(t *testing.T) {
	tests := []struct {
		name string
		stmt string
		want error
	}{
		{"newer format", fmt.Sprintf("UPDATE header SET value = '%d' WHERE key = 'format_version'", FormatVersion+1), ErrVersion},
		{"bad fsid", "UPDATE header SET value = 'zz' WHERE key = 'fsid'", ErrCorrupt},
		{"missing hash", "DELETE FROM header WHERE key = 'hash'", ErrCorrupt},
		{"bad sizes", "UPDATE header SET value = '0' WHERE key = 'min_size'", ErrCorrupt},
		{"user_version", "PRAGMA user_version = 7", ErrCorrupt},
		{"no header table", "DROP TABLE header", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, path := newDB(t)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			rawExec(t, path, tt.stmt)
			untouched(t, path, tt.want)
		})
	}
}

func TestPersistence(t *testing.T) {
	ctx := context.Background()
	db, path := newDB(t)
	d := mkdir(t, db, RootIno, "dir")
	f := mkfile(t, db, d.Ino, "file")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100, 200), t0); err != nil {
		t.Fatal(err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Create(ctx, RootIno, "ln", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "dir/file", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddPending(ctx, "safety", []stores.ID{cid(1), cid(2)}); err != nil {
		t.Fatal(err)
	}
	u1, _ := db.Usage(ctx)
	h1 := db.Header()
	checkDB(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	if db.Header().FSID != h1.FSID {
		t.Fatal("FSID changed")
	}
	a, err := db.Lookup(ctx, d.Ino, "file")
	if err != nil || a.Ino != f.Ino || a.Size != 300 {
		t.Fatalf("Lookup = %+v, %v", a, err)
	}
	cs, err := db.Chunks(ctx, f.Ino)
	if err != nil || len(cs) != 2 || cs[0] != chunkList(100)[0] {
		t.Fatalf("Chunks = %v, %v", cs, err)
	}
	if v, err := db.GetXattr(ctx, f.Ino, "user.k"); err != nil || string(v) != "v" {
		t.Fatalf("GetXattr = %q, %v", v, err)
	}
	if p, err := db.Path(ctx, f.Ino); err != nil || p != "/dir/file" {
		t.Fatalf("Path = %q, %v", p, err)
	}
	ln, _ := db.Lookup(ctx, RootIno, "ln")
	if s, err := db.Readlink(ctx, ln.Ino); s != "dir/file" || err != nil {
		t.Fatalf("Readlink = %q, %v", s, err)
	}
	if ids, err := db.ListPending(ctx, "safety", 0); err != nil || len(ids) != 2 {
		t.Fatalf("ListPending = %v, %v", ids, err)
	}
	if u2, _ := db.Usage(ctx); u2 != u1 {
		t.Fatalf("Usage %+v after reopen, was %+v", u2, u1)
	}
	// Inode numbers are not reused after a delete and a reopen.
	if _, err := db.Unlink(ctx, RootIno, "ln", t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Purge(ctx, ln.Ino); err != nil {
		t.Fatal(err)
	}
	if n := mkfile(t, db, RootIno, "new"); n.Ino <= ln.Ino {
		t.Fatalf("new inode %d reuses a number (<= %d)", n.Ino, ln.Ino)
	}
}

func TestOrphanPurgeOnReopen(t *testing.T) {
	ctx := context.Background()
	db, path := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	g := mkfile(t, db, RootIno, "g")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(1, 2, 3), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, g.Ino, chunkList(3, 4), t0); err != nil {
		t.Fatal(err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.x", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	a, err := db.Unlink(ctx, RootIno, "f", t0) // "still open": not purged
	if err != nil || a.Nlink != 0 {
		t.Fatalf("Unlink = %+v, %v", a, err)
	}
	// The orphan is still readable, like an open unlinked file.
	if cs, err := db.Chunks(ctx, f.Ino); err != nil || len(cs) != 3 {
		t.Fatalf("Chunks(orphan) = %v, %v", cs, err)
	}
	if _, err := db.Path(ctx, f.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Path(orphan) = %v", err)
	}
	if refsOf(t, db, cid(1)) != 1 {
		t.Fatal("orphan lost its references before purge")
	}
	checkDB(t, db)
	if err := db.Close(); err != nil { // "crash"
		t.Fatal(err)
	}
	db = openDB(t, path)
	if _, err := db.GetAttr(ctx, f.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("orphan survived reopen: %v", err)
	}
	for id, want := range map[int]int64{1: 0, 2: 0, 3: 1, 4: 1} {
		if got := refsOf(t, db, cid(id)); got != want {
			t.Errorf("refs of chunk %d = %d, want %d", id, got, want)
		}
	}
	var n int
	db.read(ctx, func(q *conn) error { return q.QueryRowContext(ctx, "SELECT count(*) FROM xattrs").Scan(&n) })
	if n != 0 {
		t.Fatalf("%d xattrs left", n)
	}
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	db, path := newDB(t)
	mkfile(t, db, RootIno, "f")
	if err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("no WAL while open: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Sync(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync(canceled) = %v", err)
	}
}

func TestCreateRace(t *testing.T) {
	// Two opens of a missing path at once: one creates, the other finds it
	// (and is locked out), never two different indexes.
	path := filepath.Join(t.TempDir(), "index.db")
	errs := make(chan error, 2)
	dbs := make(chan *DB, 2)
	for range 2 {
		go func() {
			db, err := Open(context.Background(), testOpts(t, path))
			errs <- err
			dbs <- db
		}()
	}
	var ok int
	for range 2 {
		err := <-errs
		db := <-dbs
		switch {
		case err == nil:
			ok++
			defer db.Close()
		case errors.Is(err, ErrLocked):
		default:
			t.Errorf("Open: %v", err)
		}
	}
	if ok < 1 {
		t.Fatal("no Open succeeded")
	}
	_ = time.Second
}

func TestOpenOddPath(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a dir?#%20&x=y")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "in dex?.db")
	db := openDB(t, path)
	mkfile(t, db, RootIno, "f")
	if err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if db.File() != path {
		t.Fatalf("File() = %q", db.File())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "in dex?.db" {
		t.Fatalf("directory holds %v", ents)
	}
	db = openDB(t, path)
	if _, err := db.Lookup(ctx, RootIno, "f"); err != nil {
		t.Fatal(err)
	}
}

// TestPageCacheBounded: SQLite's page caches are the daemon's memory on top
// of Go's, one per connection (the writer and every reader), and fill up
// with the pages a walk of a big tree touches; the OS page cache holds the
// file anyway. Together they stay under 32 MiB whatever the number of
// readers (they were 128 MiB with 4 readers, 320 MiB with 16).
func TestPageCacheBounded(t *testing.T) {
	db, _ := newDB(t)
	ctx := context.Background()
	cacheKiB := func(q *conn) int64 {
		var n int64
		if err := q.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 0 { // pages
			var ps int64
			if err := q.QueryRowContext(ctx, "PRAGMA page_size").Scan(&ps); err != nil {
				t.Fatal(err)
			}
			return n * ps / 1024
		}
		return -n
	}
	total := cacheKiB(db.wconn)
	var conns []*conn
	for range db.nread { // every reader, each held until all are seen
		c, err := db.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		total += cacheKiB(c)
	}
	for _, c := range conns {
		db.readers <- c
	}
	if total > 32<<10 {
		t.Fatalf("SQLite page caches of the writer and %d readers: %d KiB, want at most 32 MiB", db.nread, total)
	}
}
