package index

import (
	"context"
	"slices"
	"testing"
)

// TestHoles: a chunk list with holes is committed and read back as it
// was; holes count in the size and in Attr.Holes, reference no chunk, go
// with an undo record and come back with a revert, and go when the file
// is deleted. Check stays clean throughout.
func TestHoles(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "sparse")
	big := Holes(5 << 30) // longer than one entry holds
	if len(big) != 3 || big[0].Size != MaxHole || big[2].Size != 1<<30 {
		t.Fatalf("Holes(5 GiB) = %v", big)
	}
	list := append(append(chunkList(100), big...), chunkList(200, 300)...)
	list = append(list, Chunk{Size: 7})
	a, err := db.CommitChunks(ctx, f.Ino, list, t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != 600+5<<30+7 || a.Holes != 5<<30+7 {
		t.Errorf("attr size %d holes %d", a.Size, a.Holes)
	}
	got, err := db.Chunks(ctx, f.Ino)
	if err != nil || !slices.Equal(got, list) {
		t.Fatalf("Chunks = %v, %v; want %v", got, err, list)
	}
	if g := getattr(t, db, f.Ino); g.Holes != a.Holes {
		t.Errorf("GetAttr holes %d", g.Holes)
	}
	if u, _ := db.Usage(ctx); u.UniqueChunks != 3 || u.LogicalBytes != int64(a.Size) {
		t.Errorf("usage %+v: holes must be no chunk, but logical bytes", u)
	}
	check(t, db)
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	// Fill part of the hole and move things: the undo record keeps the
	// holes, and a revert brings them back.
	list2 := append(chunkList(100, 400), Holes(10)...)
	if _, err := db.CommitChunks(ctx, f.Ino, list2, t0); err != nil {
		t.Fatal(err)
	}
	check(t, db)
	if got, _ := db.Chunks(ctx, f.Ino); !slices.Equal(got, list2) {
		t.Fatalf("after the second commit: %v", got)
	}
	r, err := db.Revert(ctx, f.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Chunks(ctx, f.Ino); !slices.Equal(got, list) || r.Holes != a.Holes {
		t.Fatalf("after the revert: %v (holes %d)", got, r.Holes)
	}
	check(t, db)
	// Only holes: no chunk at all.
	g := mkfile(t, db, RootIno, "empty-but-big")
	if a, err := db.CommitChunks(ctx, g.Ino, Holes(1<<40), t0); err != nil || a.Size != 1<<40 || a.Holes != 1<<40 {
		t.Fatalf("a 1 TiB hole: %+v, %v", a, err)
	}
	check(t, db)
	for _, name := range []string{"sparse", "empty-but-big"} {
		a, err := db.Unlink(ctx, RootIno, name, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Purge(ctx, a.Ino); err != nil {
			t.Fatal(err)
		}
	}
	check(t, db)
	var n int
	if err := db.read(ctx, func(c *conn) error {
		return c.QueryRowContext(ctx, "SELECT count(*) FROM file_holes").Scan(&n)
	}); err != nil || n != 0 {
		t.Errorf("file_holes rows after deleting every file: %d, %v", n, err)
	}
}
