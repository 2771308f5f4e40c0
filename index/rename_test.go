package index

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// tree builds, under the root:
//
//	/a/            dir
//	/a/f           file (also linked as /a/f-link)
//	/a/sub/        dir
//	/a/sub/deep/   dir
//	/a/sub/g       file
//	/b/            dir
//	/b/empty/      dir
//	/b/full/       dir with /b/full/x
//	/b/h           file
type tree struct {
	a, f, sub, deep, g, b, empty, full, x, h Attr
}

func mktree(t *testing.T, db *DB) tree {
	t.Helper()
	var tr tree
	tr.a = mkdir(t, db, RootIno, "a")
	tr.f = mkfile(t, db, tr.a.Ino, "f")
	if _, err := db.Link(context.Background(), tr.f.Ino, tr.a.Ino, "f-link", t0); err != nil {
		t.Fatal(err)
	}
	tr.sub = mkdir(t, db, tr.a.Ino, "sub")
	tr.deep = mkdir(t, db, tr.sub.Ino, "deep")
	tr.g = mkfile(t, db, tr.sub.Ino, "g")
	tr.b = mkdir(t, db, RootIno, "b")
	tr.empty = mkdir(t, db, tr.b.Ino, "empty")
	tr.full = mkdir(t, db, tr.b.Ino, "full")
	tr.x = mkfile(t, db, tr.full.Ino, "x")
	tr.h = mkfile(t, db, tr.b.Ino, "h")
	return tr
}

func TestRename(t *testing.T) {
	ctx := context.Background()
	now := t0.Add(time.Hour)
	type entry struct {
		parent func(tree) uint64
		name   string
	}
	root := func(tree) uint64 { return RootIno }
	A := func(tr tree) uint64 { return tr.a.Ino }
	B := func(tr tree) uint64 { return tr.b.Ino }
	SUB := func(tr tree) uint64 { return tr.sub.Ino }
	DEEP := func(tr tree) uint64 { return tr.deep.Ino }
	F := func(tr tree) uint64 { return tr.f.Ino }
	tests := []struct {
		name     string
		from, to entry
		flags    uint32
		want     error
		replaced bool
		check    func(t *testing.T, db *DB, tr tree, replaced *Attr)
	}{
		{name: "file same dir", from: entry{A, "f"}, to: entry{A, "f2"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if a := getattr(t, db, tr.a.Ino); a.Nlink != 3 || !a.Mtime.Equal(now) {
				t.Fatalf("a %+v", a)
			}
			if f := getattr(t, db, tr.f.Ino); !f.Ctime.Equal(now) || f.Nlink != 2 {
				t.Fatalf("f %+v", f)
			}
		}},
		{name: "file across dirs", from: entry{A, "f"}, to: entry{B, "f"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if a, b := getattr(t, db, tr.a.Ino), getattr(t, db, tr.b.Ino); a.Nlink != 3 || b.Nlink != 4 ||
				!a.Mtime.Equal(now) || !b.Mtime.Equal(now) || !a.Ctime.Equal(now) || !b.Ctime.Equal(now) {
				t.Fatalf("a %+v b %+v", a, b)
			}
		}},
		{name: "file over file", from: entry{A, "f"}, to: entry{B, "h"}, replaced: true, check: func(t *testing.T, db *DB, tr tree, r *Attr) {
			if r.Ino != tr.h.Ino || r.Nlink != 0 || !r.Ctime.Equal(now) {
				t.Fatalf("replaced %+v", r)
			}
			if h := getattr(t, db, tr.h.Ino); h.Nlink != 0 {
				t.Fatalf("h %+v", h)
			}
			if err := db.Purge(ctx, tr.h.Ino); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file over its own hard link", from: entry{A, "f"}, to: entry{A, "f-link"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			// POSIX: nothing happens, both names stay.
			if _, err := db.Lookup(ctx, tr.a.Ino, "f"); err != nil {
				t.Fatal(err)
			}
			if f := getattr(t, db, tr.f.Ino); f.Nlink != 2 || f.Ctime.Equal(now) {
				t.Fatalf("f %+v", f)
			}
		}},
		{name: "same name", from: entry{A, "f"}, to: entry{A, "f"}},
		{name: "dir across dirs", from: entry{A, "sub"}, to: entry{B, "sub2"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if a, b := getattr(t, db, tr.a.Ino), getattr(t, db, tr.b.Ino); a.Nlink != 2 || b.Nlink != 5 {
				t.Fatalf("a nlink %d b nlink %d", a.Nlink, b.Nlink)
			}
			if p, _ := db.Path(ctx, tr.g.Ino); p != "/b/sub2/g" {
				t.Fatalf("path %q", p)
			}
		}},
		{name: "dir same dir", from: entry{A, "sub"}, to: entry{A, "sub2"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if a := getattr(t, db, tr.a.Ino); a.Nlink != 3 {
				t.Fatalf("a nlink %d", a.Nlink)
			}
		}},
		{name: "dir to root", from: entry{SUB, "deep"}, to: entry{root, "deep"}, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if r, s := getattr(t, db, RootIno), getattr(t, db, tr.sub.Ino); r.Nlink != 5 || s.Nlink != 2 {
				t.Fatalf("root nlink %d sub nlink %d", r.Nlink, s.Nlink)
			}
		}},
		{name: "dir over empty dir", from: entry{A, "sub"}, to: entry{B, "empty"}, replaced: true, check: func(t *testing.T, db *DB, tr tree, r *Attr) {
			if r.Ino != tr.empty.Ino || r.Nlink != 0 {
				t.Fatalf("replaced %+v", r)
			}
			if _, err := db.GetAttr(ctx, tr.empty.Ino); !errors.Is(err, ErrNotExist) {
				t.Fatalf("replaced dir survived: %v", err)
			}
			if a, b := getattr(t, db, tr.a.Ino), getattr(t, db, tr.b.Ino); a.Nlink != 2 || b.Nlink != 4 {
				t.Fatalf("a nlink %d b nlink %d", a.Nlink, b.Nlink)
			}
		}},
		{name: "dir over empty dir same parent", from: entry{B, "full"}, to: entry{B, "empty"}, replaced: true, check: func(t *testing.T, db *DB, tr tree, r *Attr) {
			if b := getattr(t, db, tr.b.Ino); b.Nlink != 3 {
				t.Fatalf("b nlink %d", b.Nlink)
			}
		}},
		{name: "dir over non-empty dir", from: entry{A, "sub"}, to: entry{B, "full"}, want: ErrNotEmpty},
		{name: "dir over ancestor", from: entry{SUB, "deep"}, to: entry{root, "a"}, want: ErrNotEmpty},
		{name: "dir over file", from: entry{A, "sub"}, to: entry{B, "h"}, want: ErrNotDir},
		{name: "file over dir", from: entry{B, "h"}, to: entry{B, "empty"}, want: ErrIsDir},
		{name: "dir into itself", from: entry{root, "a"}, to: entry{A, "a2"}, want: ErrInvalid},
		{name: "dir into own subtree", from: entry{root, "a"}, to: entry{DEEP, "a"}, want: ErrInvalid},
		{name: "missing source", from: entry{A, "nope"}, to: entry{B, "x"}, want: ErrNotExist},
		{name: "missing old parent", from: entry{func(tree) uint64 { return 9999 }, "f"}, to: entry{B, "x"}, want: ErrNotExist},
		{name: "missing new parent", from: entry{A, "f"}, to: entry{func(tree) uint64 { return 9999 }, "x"}, want: ErrNotExist},
		{name: "new parent is a file", from: entry{A, "f"}, to: entry{F, "x"}, want: ErrNotDir},
		{name: "bad new name", from: entry{A, "f"}, to: entry{B, "x/y"}, want: ErrInvalid},
		{name: "long new name", from: entry{A, "f"}, to: entry{B, string(make([]byte, 256))}, want: ErrNameTooLong},
		{name: "bad flags", from: entry{A, "f"}, to: entry{B, "x"}, flags: 4, want: ErrInvalid},
		{name: "both flags", from: entry{A, "f"}, to: entry{B, "x"}, flags: RenameNoReplace | RenameExchange, want: ErrInvalid},
		{name: "noreplace free", from: entry{A, "f"}, to: entry{B, "new"}, flags: RenameNoReplace},
		{name: "noreplace taken", from: entry{A, "f"}, to: entry{B, "h"}, flags: RenameNoReplace, want: ErrExist},
		{name: "noreplace hard link", from: entry{A, "f"}, to: entry{A, "f-link"}, flags: RenameNoReplace, want: ErrExist},
		{name: "exchange files", from: entry{A, "f"}, to: entry{B, "h"}, flags: RenameExchange, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if l, _ := db.Lookup(ctx, tr.a.Ino, "f"); l.Ino != tr.h.Ino {
				t.Fatalf("a/f is %d", l.Ino)
			}
			if l, _ := db.Lookup(ctx, tr.b.Ino, "h"); l.Ino != tr.f.Ino {
				t.Fatalf("b/h is %d", l.Ino)
			}
			if h := getattr(t, db, tr.h.Ino); h.Nlink != 1 || !h.Ctime.Equal(now) {
				t.Fatalf("h %+v", h)
			}
		}},
		{name: "exchange dir and file", from: entry{A, "sub"}, to: entry{B, "h"}, flags: RenameExchange, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if a, b := getattr(t, db, tr.a.Ino), getattr(t, db, tr.b.Ino); a.Nlink != 2 || b.Nlink != 5 {
				t.Fatalf("a nlink %d b nlink %d", a.Nlink, b.Nlink)
			}
			if p, _ := db.Path(ctx, tr.g.Ino); p != "/b/h/g" {
				t.Fatalf("path %q", p)
			}
		}},
		{name: "exchange dirs", from: entry{A, "sub"}, to: entry{B, "full"}, flags: RenameExchange, check: func(t *testing.T, db *DB, tr tree, _ *Attr) {
			if p, _ := db.Path(ctx, tr.x.Ino); p != "/a/sub/x" {
				t.Fatalf("path %q", p)
			}
			if a, b := getattr(t, db, tr.a.Ino), getattr(t, db, tr.b.Ino); a.Nlink != 3 || b.Nlink != 4 {
				t.Fatalf("a nlink %d b nlink %d", a.Nlink, b.Nlink)
			}
		}},
		{name: "exchange with missing", from: entry{A, "f"}, to: entry{B, "nope"}, flags: RenameExchange, want: ErrNotExist},
		{name: "exchange hard links", from: entry{A, "f"}, to: entry{A, "f-link"}, flags: RenameExchange},
		{name: "exchange into own subtree", from: entry{root, "a"}, to: entry{SUB, "g"}, flags: RenameExchange, want: ErrInvalid},
		{name: "exchange with ancestor", from: entry{SUB, "deep"}, to: entry{root, "a"}, flags: RenameExchange, want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := newDB(t)
			tr := mktree(t, db)
			before, _ := db.ReadDir(ctx, tt.from.parent(tr)%9999, "", 0)
			r, err := db.Rename(ctx, tt.from.parent(tr), tt.from.name, tt.to.parent(tr), tt.to.name, tt.flags, now)
			wantErr(t, err, tt.want)
			if err != nil {
				after, _ := db.ReadDir(ctx, tt.from.parent(tr)%9999, "", 0)
				if len(after) != len(before) {
					t.Fatal("failed rename changed the tree")
				}
				return
			}
			if (r != nil) != tt.replaced {
				t.Fatalf("replaced = %+v, want replaced %v", r, tt.replaced)
			}
			sameInode := tt.from.name == "f" && (tt.to.name == "f-link" || tt.to.name == "f") && tt.to.parent(tr) == tr.a.Ino
			if tt.flags&RenameExchange == 0 && !sameInode {
				if _, err := db.Lookup(ctx, tt.from.parent(tr), tt.from.name); !errors.Is(err, ErrNotExist) {
					t.Fatalf("old name still there: %v", err)
				}
				if _, err := db.Lookup(ctx, tt.to.parent(tr), tt.to.name); err != nil {
					t.Fatalf("new name missing: %v", err)
				}
			}
			if tt.check != nil {
				tt.check(t, db, tr, r)
			}
			checkDB(t, db)
		})
	}
}

func TestRenameSymlinkAndSpecial(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	l, err := db.Create(ctx, RootIno, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "t"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.Create(ctx, RootIno, "p", NewNode{Mode: syscall.S_IFIFO | 0o600})
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.Rename(ctx, RootIno, "l", RootIno, "p", 0, t0)
	if err != nil || r == nil || r.Ino != p.Ino || r.Nlink != 0 {
		t.Fatalf("Rename = %+v, %v", r, err)
	}
	if s, err := db.Lookup(ctx, RootIno, "p"); err != nil || s.Ino != l.Ino {
		t.Fatalf("Lookup = %+v, %v", s, err)
	}
	if err := db.Purge(ctx, p.Ino); err != nil {
		t.Fatal(err)
	}
}
