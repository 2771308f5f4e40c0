package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// check fails the test if the index's invariants do not hold.
func check(t *testing.T, db *DB) {
	t.Helper()
	if err := db.Check(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}

// TestUndoRevert: the first commit of a file in an epoch records what it
// was; Revert gives that back, whatever came after in the same epoch.
func TestUndoRevert(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100, 200), t0); err != nil {
		t.Fatal(err)
	}
	// A durability point: the first content is durable.
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	if u, err := db.Unsettled(ctx); err != nil || len(u) != 0 {
		t.Fatalf("unsettled after settle: %v %v", u, err)
	}
	durable, _ := db.GetAttr(ctx, f.Ino)
	// Two commits in the next epoch: the undo record keeps the first state.
	t1 := t0.Add(time.Hour)
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100, 300, 400), t1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(500), t1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	check(t, db)
	// The old chunks stay held (gc must keep them) until settled, but
	// they are no file's content: usage does not count them.
	for _, id := range []int{200} {
		if _, refs, _ := db.ChunkRefs(ctx, cid(id)); refs != 1 {
			t.Errorf("chunk %d: refs %d, want 1 (held by the undo record)", id, refs)
		}
	}
	if u, _ := db.Usage(ctx); u.UniqueChunks != 1 {
		t.Errorf("unique chunks %d, want 1 (500): held chunks are not content", u.UniqueChunks)
	}
	if n, _, _ := db.UnrefCount(ctx); n != 2 {
		t.Errorf("chunks gc may remove: %d, want 2 (300 and 400; 100 and 200 are held)", n)
	}
	u, err := db.Unsettled(ctx)
	if err != nil || !slices.Equal(u, []uint64{f.Ino}) {
		t.Fatalf("unsettled = %v, %v; want [%d]", u, err, f.Ino)
	}
	a, err := db.Revert(ctx, f.Ino)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := db.Chunks(ctx, f.Ino)
	if !slices.Equal(got, chunkList(100, 200)) || a.Size != 300 || !a.Mtime.Equal(durable.Mtime) {
		t.Fatalf("after revert: chunks %v, attr %+v; want the durable 100+200 at %v", got, a, durable.Mtime)
	}
	check(t, db)
	if u, _ := db.Unsettled(ctx); len(u) != 0 {
		t.Errorf("records left after revert: %v", u)
	}
	// The newer chunks are unreferenced now: gc may take them.
	for _, id := range []int{300, 400, 500} {
		if _, refs, _ := db.ChunkRefs(ctx, cid(id)); refs != 0 {
			t.Errorf("chunk %d: refs %d after revert, want 0", id, refs)
		}
	}
}

// TestUndoNewFile: a file created and written since the last point reverts
// to empty.
func TestUndoNewFile(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "new")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	a, err := db.Revert(ctx, f.Ino)
	if err != nil || a.Size != 0 {
		t.Fatalf("revert of a new file: %+v, %v; want size 0", a, err)
	}
	check(t, db)
	if _, err := db.Revert(ctx, f.Ino); !errors.Is(err, ErrNotExist) {
		t.Errorf("second revert: %v, want ErrNotExist", err)
	}
}

// TestUndoSettleKeepsNewerEpochs: Settle(e) drops the records of e and
// before, not those of commits after Seal.
func TestUndoSettleKeepsNewerEpochs(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	a := mkfile(t, db, RootIno, "a")
	b := mkfile(t, db, RootIno, "b")
	if _, err := db.CommitChunks(ctx, a.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	e := db.Seal()
	if _, err := db.CommitChunks(ctx, b.Ino, chunkList(200), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, a.Ino, chunkList(300), t0); err != nil {
		t.Fatal(err)
	}
	n, err := db.Settle(ctx, e)
	if err != nil || n != 1 {
		t.Fatalf("settle: %d records, %v; want 1", n, err)
	}
	u, _ := db.Unsettled(ctx)
	if !slices.Equal(u, []uint64{a.Ino, b.Ino}) {
		t.Fatalf("unsettled = %v, want both (committed after the seal)", u)
	}
	// a's record of the new epoch is its content as of the seal: 100.
	if _, err := db.Revert(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Chunks(ctx, a.Ino); !slices.Equal(got, chunkList(100)) {
		t.Errorf("a after revert: %v, want its content at the seal", got)
	}
	check(t, db)
}

// TestUndoPurged: a file purged with records left only loses them.
func TestUndoPurged(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(200), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Unlink(ctx, RootIno, "f", t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Purge(ctx, f.Ino); err != nil {
		t.Fatal(err)
	}
	check(t, db)
	if _, refs, _ := db.ChunkRefs(ctx, cid(100)); refs != 1 {
		t.Errorf("the durable chunk of a purged file with a record: refs %d, want 1", refs)
	}
	if a, err := db.Revert(ctx, f.Ino); err != nil || a.Ino != 0 {
		t.Fatalf("revert of a purged file: %+v, %v", a, err)
	}
	check(t, db)
	if _, refs, _ := db.ChunkRefs(ctx, cid(100)); refs != 0 {
		t.Errorf("after the revert of a purged file: refs %d, want 0", refs)
	}
}

// TestUndoSurvivesReopen: records outlive a crash (a reopen without a
// settle), and the epoch goes on after the newest of them.
func TestUndoSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	db, path := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	db.Seal()
	db.Seal()
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	e := db.Epoch()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, Options{Path: path, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Epoch(); got <= e {
		t.Errorf("epoch after reopen %d, want after %d (the newest record's)", got, e)
	}
	if u, _ := db.Unsettled(ctx); !slices.Equal(u, []uint64{f.Ino}) {
		t.Errorf("unsettled after reopen: %v", u)
	}
}

// TestUpgradeFormat1: an index of format 1 (no undo tables, no holes) or
// 2 (no holes) is upgraded on open, and works.
func TestUpgradeFormat1(t *testing.T) {
	for _, from := range []int{1, 2} {
		t.Run(fmt.Sprintf("from%d", from), func(t *testing.T) { testUpgrade(t, from) })
	}
}

func testUpgrade(t *testing.T, from int) {
	ctx := context.Background()
	db, path := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	if _, err := db.CommitChunks(ctx, f.Ino, chunkList(100), t0); err != nil {
		t.Fatal(err)
	}
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	stmts := []string{"DROP TABLE file_holes", "DROP TABLE undo_holes", "ALTER TABLE inodes DROP COLUMN holes"}
	if from < 2 {
		stmts = append(stmts, "DROP TABLE undo_chunks", "DROP TABLE undo", "ALTER TABLE chunks DROP COLUMN held")
	}
	stmts = append(stmts, fmt.Sprintf("UPDATE header SET value = '%d' WHERE key = 'format_version'", from),
		fmt.Sprintf("PRAGMA user_version = %d", from))
	rawExec(t, path, stmts...)
	db, err := Open(ctx, Options{Path: path, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Header().FormatVersion != FormatVersion {
		t.Errorf("format after open: %d", db.Header().FormatVersion)
	}
	if _, err := db.CommitChunks(ctx, f.Ino, append(chunkList(200), Holes(5000)...), t0); err != nil {
		t.Fatal(err)
	}
	check(t, db)
	if u, _ := db.Unsettled(ctx); len(u) != 1 {
		t.Errorf("no undo record after the upgrade: %v", u)
	}
	if a, _ := db.GetAttr(ctx, f.Ino); a.Size != 5200 || a.Holes != 5000 {
		t.Errorf("after the upgrade: size %d holes %d, want 5200 and 5000", a.Size, a.Holes)
	}
}
