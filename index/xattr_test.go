package index

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// xattrListMax is the kernel's XATTR_LIST_MAX: a listxattr answer longer
// than this fails with E2BIG.
const xattrListMax = 65536

// listSize is the length of the list listxattr returns for names.
func listSize(names []string) int {
	n := 0
	for _, s := range names {
		n += len(s) + 1
	}
	return n
}

func mustSet(t *testing.T, db *DB, ino uint64, name string, value []byte, flags uint32) {
	t.Helper()
	if err := db.SetXattr(context.Background(), ino, name, value, flags); err != nil {
		t.Fatalf("SetXattr %q (%d bytes): %v", name, len(value), err)
	}
}

// TestXattrCountBound fills an inode with MaxXattrCount attributes of the
// longest names: their list fits listxattr's 64 KiB, one more is
// ErrNoSpace, replacing one still works, and removing one makes room.
func TestXattrCountBound(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	name := func(i int) string {
		p := fmt.Sprintf("user.%03d.", i)
		return p + strings.Repeat("n", MaxXattrNameLen-len(p))
	}
	for i := range MaxXattrCount {
		mustSet(t, db, f.Ino, name(i), []byte("v"), 0)
	}
	names, err := db.ListXattr(ctx, f.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != MaxXattrCount || listSize(names) > xattrListMax {
		t.Fatalf("%d names, a list of %d bytes; want %d names within %d bytes", len(names), listSize(names), MaxXattrCount, xattrListMax)
	}
	wantErr(t, db.SetXattr(ctx, f.Ino, "user.one-more", nil, 0), ErrNoSpace)
	wantErr(t, db.SetXattr(ctx, f.Ino, "u", nil, XattrCreate), ErrNoSpace)
	// At the bound, an existing name can still be replaced, bigger too.
	mustSet(t, db, f.Ino, name(7), []byte("a longer value"), 0)
	mustSet(t, db, f.Ino, name(8), nil, XattrReplace)
	wantErr(t, db.SetXattr(ctx, f.Ino, name(9), nil, XattrCreate), ErrExist)
	if err := db.RemoveXattr(ctx, f.Ino, name(0)); err != nil {
		t.Fatal(err)
	}
	mustSet(t, db, f.Ino, "user.one-more", nil, 0)
	wantErr(t, db.SetXattr(ctx, f.Ino, "user.two-more", nil, 0), ErrNoSpace)
	if names, err := db.ListXattr(ctx, f.Ino); err != nil || len(names) != MaxXattrCount {
		t.Fatalf("ListXattr: %d names, %v; want %d", len(names), err, MaxXattrCount)
	}
	// The bound is per inode.
	g := mkfile(t, db, RootIno, "g")
	mustSet(t, db, g.Ino, "user.other-file", nil, 0)
}

// TestXattrTotalBound fills an inode to exactly MaxXattrTotal bytes of
// names and values: one byte more is ErrNoSpace, whatever the flags; a
// replacement of the same or a smaller size still works, a bigger one
// does not; removing one makes room again.
func TestXattrTotalBound(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	used := 0
	for i := 0; used+len("user.00")+MaxXattrSize <= MaxXattrTotal; i++ {
		n := fmt.Sprintf("user.%02d", i)
		mustSet(t, db, f.Ino, n, make([]byte, MaxXattrSize), 0)
		used += len(n) + MaxXattrSize
	}
	last := "user.last"
	fill := MaxXattrTotal - used - len(last)
	wantErr(t, db.SetXattr(ctx, f.Ino, last, make([]byte, fill+1), 0), ErrNoSpace)
	mustSet(t, db, f.Ino, last, make([]byte, fill), 0) // exactly at the bound
	wantErr(t, db.SetXattr(ctx, f.Ino, "u", nil, 0), ErrNoSpace)
	wantErr(t, db.SetXattr(ctx, f.Ino, last, make([]byte, fill+1), XattrReplace), ErrNoSpace)
	wantErr(t, db.SetXattr(ctx, f.Ino, "user.00", make([]byte, MaxXattrSize), XattrCreate), ErrExist)
	mustSet(t, db, f.Ino, "user.00", make([]byte, MaxXattrSize), XattrReplace) // the same size
	mustSet(t, db, f.Ino, last, []byte("small"), 0)                            // smaller
	mustSet(t, db, f.Ino, last, make([]byte, fill), 0)                         // and back to the bound
	if v, err := db.GetXattr(ctx, f.Ino, last); err != nil || len(v) != fill {
		t.Fatalf("GetXattr %s: %d bytes, %v; want %d", last, len(v), err, fill)
	}
	if err := db.RemoveXattr(ctx, f.Ino, "user.00"); err != nil {
		t.Fatal(err)
	}
	mustSet(t, db, f.Ino, "user.new", make([]byte, MaxXattrSize-len("user.new")+len("user.00")), 0)
	wantErr(t, db.SetXattr(ctx, f.Ino, "u", nil, 0), ErrNoSpace)
}

// TestXattrPastBound: an inode already past the bounds (attributes set
// before they existed) keeps working for every change that does not grow
// it, and refuses the ones that do.
func TestXattrPastBound(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	err := db.update(ctx, func(w *wtx) error {
		for i := range MaxXattrCount + 20 {
			if _, err := w.ExecContext(ctx, "INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
				int64(f.Ino), []byte(fmt.Sprintf("user.%04d", i)), make([]byte, MaxXattrSize)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, db.SetXattr(ctx, f.Ino, "user.new", nil, 0), ErrNoSpace)
	mustSet(t, db, f.Ino, "user.0001", make([]byte, MaxXattrSize), 0)
	mustSet(t, db, f.Ino, "user.0002", []byte("shrunk"), 0)
	wantErr(t, db.SetXattr(ctx, f.Ino, "user.0002", []byte("grown again"), 0), ErrNoSpace)
	if err := db.RemoveXattr(ctx, f.Ino, "user.0003"); err != nil {
		t.Fatal(err)
	}
}

// TestXattrBoundConcurrent races setters of distinct names at an inode one
// short of the count bound: exactly one wins, the others get ErrNoSpace,
// and the inode ends at the bound, not past it.
func TestXattrBoundConcurrent(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	for i := range MaxXattrCount - 1 {
		mustSet(t, db, f.Ino, fmt.Sprintf("user.%03d", i), nil, 0)
	}
	const racers = 8
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.SetXattr(ctx, f.Ino, fmt.Sprintf("user.racer%d", i), []byte("x"), 0)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNoSpace):
			t.Errorf("racer %d: %v, want success or ErrNoSpace", i, err)
		}
	}
	names, err := db.ListXattr(ctx, f.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(names) != MaxXattrCount {
		t.Fatalf("%d racers won, the inode holds %d attributes; want 1 and %d", won, len(names), MaxXattrCount)
	}
}
