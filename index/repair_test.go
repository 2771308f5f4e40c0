package index

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// TestRepairCounts damages every count fsck --repair may recompute, and
// checks the index is clean afterwards with its data untouched.
func TestRepairCounts(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/index.db"
	db := openDB(t, path)
	d := mkdir(t, db, RootIno, "d")
	f := mkfile(t, db, d.Ino, "f")
	g := mkfile(t, db, RootIno, "g")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100, 200), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, g.Ino, chunkList(100), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Link(ctx, f.Ino, RootIno, "f2", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx, 0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rawExec(t, path,
		"UPDATE chunks SET refs = 7",
		"DELETE FROM chunks WHERE size = 200",
		"UPDATE inodes SET nlink = 5",
		"UPDATE inodes SET size = 1 WHERE mode & 61440 = 32768",
		"UPDATE counters SET files = 99, unique_bytes = 1")
	db = openDB(t, path)
	if err := db.Check(ctx, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check of a damaged index = %v, want ErrCorrupt", err)
	}
	n, err := db.RepairCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("RepairCounts changed nothing")
	}
	if err := db.Check(ctx, 0); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	if a := getattr(t, db, f.Ino); a.Nlink != 2 || a.Size != 300 {
		t.Fatalf("f: nlink %d size %d, want 2, 300", a.Nlink, a.Size)
	}
	if a := getattr(t, db, d.Ino); a.Nlink != 2 {
		t.Fatalf("dir nlink %d, want 2", a.Nlink)
	}
	if refs := refsOf(t, db, cid(100)); refs != 2 {
		t.Fatalf("shared chunk refs %d, want 2", refs)
	}
	if again, err := db.RepairCounts(ctx); err != nil || again != 0 {
		t.Fatalf("second repair changed %d rows (%v)", again, err)
	}
}

// TestChunkRefsAndUnrefPaging covers gc's queries.
func TestChunkRefsAndUnrefPaging(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(10, 20, 30, 40), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(10), time.Now()); err != nil {
		t.Fatal(err)
	}
	known, refs, err := db.ChunkRefs(ctx, cid(10))
	if err != nil || !known || refs != 1 {
		t.Fatalf("ChunkRefs(10) = %v %d %v", known, refs, err)
	}
	known, refs, err = db.ChunkRefs(ctx, cid(20))
	if err != nil || !known || refs != 0 {
		t.Fatalf("ChunkRefs(20) = %v %d %v", known, refs, err)
	}
	if known, _, err := db.ChunkRefs(ctx, cid(99)); err != nil || known {
		t.Fatalf("ChunkRefs(unknown) = %v %v", known, err)
	}
	var got []stores.ID
	var after stores.ID
	for {
		page, err := db.UnrefChunksAfter(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			got = append(got, c.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(got) != 3 {
		t.Fatalf("paged %d unreferenced chunks, want 3", len(got))
	}
	if n, b, err := db.UnrefCount(ctx); err != nil || n != 3 || b != 90 {
		t.Fatalf("UnrefCount = %d, %d, %v; want 3, 90", n, b, err)
	}
}
