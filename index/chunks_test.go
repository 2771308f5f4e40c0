package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

func TestCommitChunksRefcounts(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	g := mkfile(t, db, RootIno, "g")
	refs := func(want map[int]int64) {
		t.Helper()
		for id, n := range want {
			if got := refsOf(t, db, cid(id)); got != n {
				t.Errorf("refs of chunk %d = %d, want %d", id, got, n)
			}
		}
		checkDB(t, db)
	}
	t1 := t0.Add(time.Minute)
	a, err := db.CommitChunks(ctx, f.Ino, chunkList(10, 20, 10, 30), t1)
	if err != nil || a.Size != 70 || !a.Mtime.Equal(t1) || !a.Ctime.Equal(t1) {
		t.Fatalf("CommitChunks = %+v, %v", a, err)
	}
	if g := getattr(t, db, f.Ino); g.Size != 70 || !g.Mtime.Equal(t1) {
		t.Fatalf("GetAttr %+v", g)
	}
	refs(map[int]int64{10: 2, 20: 1, 30: 1})
	// Shared with another file.
	if _, err := db.CommitChunks(ctx, g.Ino, chunkList(20, 40), t1); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{10: 2, 20: 2, 30: 1, 40: 1})
	// Replace: a chunk drops to 0 and stays as garbage.
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(10, 50), t1); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{10: 1, 20: 1, 30: 0, 40: 1, 50: 1})
	// Append keeps the prefix.
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(10, 50, 60), t1); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{10: 1, 50: 1, 60: 1})
	// Truncate to nothing.
	if a, err := db.CommitChunks(ctx, f.Ino, nil, t1); err != nil || a.Size != 0 {
		t.Fatalf("truncate = %+v, %v", a, err)
	}
	refs(map[int]int64{10: 0, 50: 0, 60: 0, 20: 1})
	if cs, err := db.Chunks(ctx, f.Ino); err != nil || len(cs) != 0 {
		t.Fatalf("Chunks = %v, %v", cs, err)
	}
	// A garbage chunk referenced again comes back.
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(30, 30, 30), t1); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{30: 3})
	// Unlink + purge releases everything.
	if _, err := db.Unlink(ctx, RootIno, "f", t1); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{30: 3}) // orphan still holds them
	if err := db.Purge(ctx, f.Ino); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{30: 0, 20: 1, 40: 1})
	// A hard-linked file keeps its chunks until its last name goes.
	if _, err := db.Link(ctx, g.Ino, RootIno, "g2", t1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Unlink(ctx, RootIno, "g", t1); err != nil {
		t.Fatal(err)
	}
	if err := db.Purge(ctx, g.Ino); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{20: 1, 40: 1})
	r, err := db.Rename(ctx, RootIno, "g2", RootIno, "g3", 0, t1)
	if err != nil || r != nil {
		t.Fatalf("Rename = %v, %v", r, err)
	}
	h := mkfile(t, db, RootIno, "h")
	if _, err := db.CommitChunks(ctx, h.Ino, chunkList(20), t1); err != nil {
		t.Fatal(err)
	}
	// Rename over g3: g3's chunks are released on purge.
	r, err = db.Rename(ctx, RootIno, "h", RootIno, "g3", 0, t1)
	if err != nil || r == nil || r.Ino != g.Ino || r.Nlink != 0 {
		t.Fatalf("Rename over = %+v, %v", r, err)
	}
	if err := db.Purge(ctx, r.Ino); err != nil {
		t.Fatal(err)
	}
	refs(map[int]int64{20: 1, 40: 0})
	u, _ := db.Usage(ctx)
	if u.UniqueChunks != 1 || u.UniqueBytes != 20 || u.LogicalBytes != 20 || u.Files != 1 {
		t.Fatalf("Usage %+v", u)
	}
}

func TestCommitChunksErrors(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	d := mkdir(t, db, RootIno, "d")
	l, _ := db.Create(ctx, RootIno, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "x"})
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		ino    uint64
		chunks []Chunk
		want   error
	}{
		{"dir", d.Ino, chunkList(1), ErrIsDir},
		{"symlink", l.Ino, chunkList(1), ErrInvalid},
		{"missing", 999, chunkList(1), ErrNotExist},
		{"hole too large", f.Ino, []Chunk{{Size: MaxHole + 1}}, ErrInvalid},
		{"zero size", f.Ino, []Chunk{{ID: cid(1)}}, ErrInvalid},
		{"one id two sizes", f.Ino, []Chunk{{ID: cid(1), Size: 1}, {ID: cid(1), Size: 2}}, ErrInvalid},
		{"size differs from index", f.Ino, []Chunk{{ID: cid(100), Size: 99}}, ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.CommitChunks(ctx, tt.ino, tt.chunks, t0)
			wantErr(t, err, tt.want)
			if cs, _ := db.Chunks(ctx, f.Ino); len(cs) != 1 || cs[0].ID != cid(100) {
				t.Fatalf("failed commit changed the list: %v", cs)
			}
		})
	}
	for _, tt := range []struct {
		name string
		ino  uint64
		want error
	}{{"dir", d.Ino, ErrIsDir}, {"symlink", l.Ino, ErrInvalid}, {"missing", 999, ErrNotExist}} {
		t.Run("Chunks "+tt.name, func(t *testing.T) {
			_, err := db.Chunks(ctx, tt.ino)
			wantErr(t, err, tt.want)
		})
	}
}

func TestCommitChunksLarge(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	cs := bigList(0, 4096+300) // full batches and every smaller shape
	cs[7] = cs[3]              // a repeat
	if a, err := db.CommitChunks(ctx, f.Ino, cs, t0); err != nil || a.Size != uint64(len(cs))<<20 {
		t.Fatalf("CommitChunks = %+v, %v", a, err)
	}
	got, err := db.Chunks(ctx, f.Ino)
	if err != nil || len(got) != len(cs) {
		t.Fatalf("Chunks = %d, %v", len(got), err)
	}
	for i := range cs {
		if got[i] != cs[i] {
			t.Fatalf("chunk %d differs", i)
		}
	}
	// Rewrite the middle.
	cs2 := append([]Chunk(nil), cs...)
	for i := 1000; i < 1100; i++ {
		cs2[i] = Chunk{ID: cid(1e6 + i), Size: 7}
	}
	if _, err := db.CommitChunks(ctx, f.Ino, cs2, t0); err != nil {
		t.Fatal(err)
	}
	got, _ = db.Chunks(ctx, f.Ino)
	for i := range cs2 {
		if got[i] != cs2[i] {
			t.Fatalf("chunk %d differs after rewrite", i)
		}
	}
	if refsOf(t, db, cs[1050].ID) != 0 || refsOf(t, db, cs[3].ID) != 2 {
		t.Fatal("refs after rewrite")
	}
}

func TestChunkQueries(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "d")
	f := mkfile(t, db, d.Ino, "f")
	g := mkfile(t, db, RootIno, "g")
	o := mkfile(t, db, RootIno, "o")
	if _, err := db.Link(ctx, f.Ino, RootIno, "f-link", t0); err != nil {
		t.Fatal(err)
	}
	must := func(_ Attr, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.CommitChunks(ctx, f.Ino, chunkList(1, 2, 1), t0))
	must(db.CommitChunks(ctx, g.Ino, chunkList(2, 3), t0))
	must(db.CommitChunks(ctx, o.Ino, chunkList(2, 4), t0))
	must(db.Unlink(ctx, RootIno, "o", t0)) // orphan: no path

	files, err := db.FilesOfChunk(ctx, cid(2), 0)
	sort.Strings(files)
	if err != nil || fmt.Sprint(files) != "[/d/f /g]" && fmt.Sprint(files) != "[/f-link /g]" {
		t.Fatalf("FilesOfChunk(2) = %v, %v", files, err)
	}
	if files, err := db.FilesOfChunk(ctx, cid(2), 1); err != nil || len(files) != 1 {
		t.Fatalf("FilesOfChunk(2, 1) = %v, %v", files, err)
	}
	if files, err := db.FilesOfChunk(ctx, cid(4), 0); err != nil || len(files) != 0 {
		t.Fatalf("FilesOfChunk(orphan's) = %v, %v", files, err)
	}
	if files, err := db.FilesOfChunk(ctx, cid(99), 0); err != nil || len(files) != 0 {
		t.Fatalf("FilesOfChunk(unknown) = %v, %v", files, err)
	}

	// Page through referenced chunks two at a time.
	want := []stores.ID{cid(1), cid(2), cid(3), cid(4)}
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i][:], want[j][:]) < 0 })
	var got []ChunkRef
	after := stores.ID{}
	for {
		page, err := db.RefChunks(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].ID
	}
	if len(got) != 4 {
		t.Fatalf("RefChunks = %v", got)
	}
	for i, c := range got {
		if c.ID != want[i] {
			t.Fatalf("RefChunks order: %d", i)
		}
		if c.ID == cid(2) && (c.Refs != 3 || c.Size != 2) {
			t.Fatalf("chunk 2: %+v", c)
		}
	}
	if un, err := db.UnrefChunks(ctx, 0); err != nil || len(un) != 0 {
		t.Fatalf("UnrefChunks = %v, %v", un, err)
	}
	if err := db.Purge(ctx, o.Ino); err != nil {
		t.Fatal(err)
	}
	must(db.CommitChunks(ctx, g.Ino, chunkList(5), t0))
	un, err := db.UnrefChunks(ctx, 0)
	if err != nil || len(un) != 2 {
		t.Fatalf("UnrefChunks = %v, %v", un, err)
	}
	for _, c := range un {
		if c.Refs != 0 || (c.ID != cid(3) && c.ID != cid(4)) {
			t.Fatalf("unref %+v", c)
		}
	}
	if un, _ := db.UnrefChunks(ctx, 1); len(un) != 1 {
		t.Fatal("UnrefChunks limit")
	}
	for id, want := range map[int]bool{1: true, 3: true, 99: false} {
		if ok, err := db.HasChunk(ctx, cid(id)); err != nil || ok != want {
			t.Fatalf("HasChunk(%d) = %v, %v", id, ok, err)
		}
	}
	// Chunk 3 gets referenced again between listing and deleting: kept.
	h := mkfile(t, db, RootIno, "h")
	must(db.CommitChunks(ctx, h.Ino, chunkList(3), t0))
	del, err := db.DeleteChunks(ctx, []stores.ID{cid(3), cid(4), cid(1), cid(99)})
	if err != nil || len(del) != 1 || del[0] != cid(4) {
		t.Fatalf("DeleteChunks = %v, %v", del, err)
	}
	if ok, _ := db.HasChunk(ctx, cid(4)); ok {
		t.Fatal("deleted chunk still there")
	}
	if ok, _ := db.HasChunk(ctx, cid(3)); !ok {
		t.Fatal("referenced chunk deleted")
	}
	if del, err := db.DeleteChunks(ctx, nil); err != nil || len(del) != 0 {
		t.Fatalf("DeleteChunks(nil) = %v, %v", del, err)
	}
}

func TestPending(t *testing.T) {
	ctx := context.Background()
	db, path := newDB(t)
	ids := []stores.ID{cid(1), cid(2), cid(3)}
	if err := db.AddPending(ctx, "safety", ids); err != nil {
		t.Fatal(err)
	}
	if err := db.AddPending(ctx, "safety", ids[:2]); err != nil { // duplicates ignored
		t.Fatal(err)
	}
	if err := db.AddPending(ctx, "primary", ids[2:]); err != nil {
		t.Fatal(err)
	}
	many := bigList(100, 300)
	var manyIDs []stores.ID
	for _, c := range many {
		manyIDs = append(manyIDs, c.ID)
	}
	if err := db.AddPending(ctx, "bulk", manyIDs); err != nil {
		t.Fatal(err)
	}
	wantErr(t, db.AddPending(ctx, "", ids), ErrInvalid)
	wantErr(t, db.AddPending(ctx, "x", []stores.ID{{}}), ErrInvalid)
	if n, err := db.CountPending(ctx); err != nil || n["safety"] != 3 || n["primary"] != 1 || n["bulk"] != 300 || len(n) != 3 {
		t.Fatalf("CountPending = %v, %v", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path)
	got, err := db.ListPending(ctx, "safety", 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("ListPending = %v, %v", got, err)
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool { return bytes.Compare(got[i][:], got[j][:]) < 0 }) {
		t.Fatal("ListPending not in id order")
	}
	if p, _ := db.ListPending(ctx, "safety", 2); len(p) != 2 {
		t.Fatal("ListPending limit")
	}
	if p, _ := db.ListPendingAfter(ctx, "safety", got[0], 0); len(p) != 2 || p[0] != got[1] {
		t.Fatal("ListPendingAfter")
	}
	if err := db.RemovePending(ctx, "safety", cid(2)); err != nil {
		t.Fatal(err)
	}
	if err := db.RemovePending(ctx, "safety", cid(2)); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.CountPending(ctx); n["safety"] != 2 {
		t.Fatalf("CountPending after remove = %v", n)
	}
	if p, _ := db.ListPending(ctx, "nobody", 0); len(p) != 0 {
		t.Fatal("unknown tier has pending chunks")
	}
}

// TestCorruptRows plants rows this package never writes and checks that
// reads report ErrCorrupt naming the table instead of panicking.
func TestCorruptRows(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		stmts []string
		read  func(db *DB) error
		table string
	}{
		{"short chunk id", []string{"INSERT INTO chunks (id, size, refs) VALUES (x'0102', 5, 1)"},
			func(db *DB) error { _, err := db.RefChunks(ctx, stores.ID{}, 0); return err }, "chunks"},
		{"text chunk id", []string{"INSERT INTO chunks (id, size, refs) VALUES ('abc', 5, 0)"},
			func(db *DB) error { _, err := db.UnrefChunks(ctx, 0); return err }, "chunks"},
		{"negative chunk size", []string{"INSERT INTO chunks (id, size, refs) VALUES (zeroblob(32), -5, 0)"},
			func(db *DB) error { _, err := db.UnrefChunks(ctx, 0); return err }, "chunks"},
		{"long pending id", []string{"INSERT INTO pending (tier, id) VALUES ('s', zeroblob(33))"},
			func(db *DB) error { _, err := db.ListPending(ctx, "s", 0); return err }, "pending"},
		{"file chunk id", []string{
			"INSERT INTO inodes (ino, mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns) VALUES (50, 33188, 1, 0, 0, 0, 5, 0, 0, 0)",
			"INSERT INTO dentries (parent, name, ino) VALUES (1, CAST('f' AS BLOB), 50)",
			"INSERT INTO chunks (id, size, refs) VALUES (x'00', 5, 1)",
			"INSERT INTO file_chunks (ino, seq, chunk_id, size) VALUES (50, 0, x'00', 5)"},
			func(db *DB) error { _, err := db.Chunks(ctx, 50); return err }, "file_chunks"},
		{"orphan with bad chunk list does not stop Open", []string{
			"INSERT INTO inodes (ino, mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns) VALUES (50, 33188, 0, 0, 0, 0, 5, 0, 0, 0)",
			"INSERT INTO chunks (id, size, refs) VALUES (x'00', 5, 1)",
			"INSERT INTO file_chunks (ino, seq, chunk_id, size) VALUES (50, 0, x'00', 5)"},
			func(db *DB) error { _, err := db.Chunks(ctx, 50); return err }, "file_chunks"},
		{"bad mode", []string{"UPDATE inodes SET mode = 12345678 WHERE ino = 1"},
			func(db *DB) error { _, err := db.GetAttr(ctx, RootIno); return err }, "inodes"},
		{"null mode", []string{"CREATE TABLE t AS SELECT 1", "UPDATE inodes SET size = 'big' WHERE ino = 1"},
			func(db *DB) error { _, err := db.GetAttr(ctx, RootIno); return err }, "inodes"},
		{"name with slash", []string{
			"INSERT INTO inodes (ino, mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns) VALUES (50, 33188, 1, 0, 0, 0, 0, 0, 0, 0)",
			"INSERT INTO dentries (parent, name, ino) VALUES (1, CAST('a/b' AS BLOB), 50)"},
			func(db *DB) error { _, err := db.ReadDir(ctx, RootIno, "", 0); return err }, "dentries"},
		{"no counters", []string{"DELETE FROM counters"},
			func(db *DB) error { _, err := db.Usage(ctx); return err }, "counters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/index.db"
			db, err := Open(ctx, testOpts(t, path))
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			rawExec(t, path, append([]string{"PRAGMA foreign_keys = OFF"}, tt.stmts...)...)
			db, err = Open(ctx, testOpts(t, path))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = tt.read(db)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.table)) {
				t.Fatalf("error %q does not name %s", err, tt.table)
			}
			if err := db.Check(ctx, 0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestNextChunk checks the chunker's predictions: a chunk that follows the
// given one in some file, never a file's last chunk (its end is not a cut).
func TestNextChunk(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	g := mkfile(t, db, RootIno, "g")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(1, 2, 3), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, g.Ino, chunkList(5, 3, 6, 7), t0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after, want int
		ok          bool
	}{
		{1, 2, true},  // f: 1 → 2, and 2 is not f's last
		{2, 0, false}, // f: 2 → 3, but 3 is f's last chunk
		{3, 6, true},  // g: 3 → 6
		{5, 3, true},  // g: 5 → 3 (3 ends f, but not g: a cut in g)
		{6, 0, false}, // g: 6 → 7, g's last
		{7, 0, false}, // last of g
		{99, 0, false},
	} {
		next, ok, err := db.NextChunk(ctx, cid(tc.after))
		if err != nil {
			t.Fatalf("NextChunk(%d): %v", tc.after, err)
		}
		if ok != tc.ok || (ok && (next.ID != cid(tc.want) || next.Size == 0)) {
			t.Errorf("NextChunk(%d) = %v %v, want chunk %d %v", tc.after, next, ok, tc.want, tc.ok)
		}
	}
}
