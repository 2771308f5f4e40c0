package index

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCreate(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	sub := mkdir(t, db, RootIno, "sub")
	file := mkfile(t, db, RootIno, "file")
	t1 := t0.Add(time.Hour)
	tests := []struct {
		name     string
		parent   uint64
		entry    string
		n        NewNode
		want     error
		wantMode uint32
		nlink    uint32
		size     uint64
	}{
		{"regular", RootIno, "r", NewNode{Mode: syscall.S_IFREG | 0o640, Time: t1}, nil, syscall.S_IFREG | 0o640, 1, 0},
		{"type 0 is regular", RootIno, "r0", NewNode{Mode: 0o600, Time: t1}, nil, syscall.S_IFREG | 0o600, 1, 0},
		{"dir", sub.Ino, "d", NewNode{Mode: syscall.S_IFDIR | 0o700, Time: t1}, nil, syscall.S_IFDIR | 0o700, 2, 0},
		{"symlink", RootIno, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "../x/y", Time: t1}, nil, syscall.S_IFLNK | 0o777, 1, 6},
		{"fifo", RootIno, "p", NewNode{Mode: syscall.S_IFIFO | 0o644, Time: t1}, nil, syscall.S_IFIFO | 0o644, 1, 0},
		{"chr", RootIno, "c", NewNode{Mode: syscall.S_IFCHR | 0o644, Rdev: 0x0103, Time: t1}, nil, syscall.S_IFCHR | 0o644, 1, 0},
		{"blk", RootIno, "b", NewNode{Mode: syscall.S_IFBLK | 0o644, Rdev: 0x0801, Time: t1}, nil, syscall.S_IFBLK | 0o644, 1, 0},
		{"sock", RootIno, "s", NewNode{Mode: syscall.S_IFSOCK | 0o755, Time: t1}, nil, syscall.S_IFSOCK | 0o755, 1, 0},
		{"setuid setgid sticky", RootIno, "suid", NewNode{Mode: syscall.S_IFREG | 0o7755, Time: t1}, nil, syscall.S_IFREG | 0o7755, 1, 0},
		{"non-utf8 name", RootIno, "\xff\xfe", NewNode{Mode: 0o644, Time: t1}, nil, syscall.S_IFREG | 0o644, 1, 0},
		{"255 bytes", RootIno, strings.Repeat("n", 255), NewNode{Mode: 0o644, Time: t1}, nil, syscall.S_IFREG | 0o644, 1, 0},
		{"exists", RootIno, "file", NewNode{Mode: 0o644}, ErrExist, 0, 0, 0},
		{"dir exists", RootIno, "sub", NewNode{Mode: syscall.S_IFDIR | 0o755}, ErrExist, 0, 0, 0},
		{"parent not dir", file.Ino, "x", NewNode{Mode: 0o644}, ErrNotDir, 0, 0, 0},
		{"parent missing", 9999, "x", NewNode{Mode: 0o644}, ErrNotExist, 0, 0, 0},
		{"empty name", RootIno, "", NewNode{Mode: 0o644}, ErrInvalid, 0, 0, 0},
		{"dot", RootIno, ".", NewNode{Mode: 0o644}, ErrInvalid, 0, 0, 0},
		{"dotdot", RootIno, "..", NewNode{Mode: 0o644}, ErrInvalid, 0, 0, 0},
		{"slash", RootIno, "a/b", NewNode{Mode: 0o644}, ErrInvalid, 0, 0, 0},
		{"nul", RootIno, "a\x00b", NewNode{Mode: 0o644}, ErrInvalid, 0, 0, 0},
		{"256 bytes", RootIno, strings.Repeat("n", 256), NewNode{Mode: 0o644}, ErrNameTooLong, 0, 0, 0},
		{"bad type", RootIno, "x", NewNode{Mode: 0o170644}, ErrInvalid, 0, 0, 0},
		{"bits beyond type", RootIno, "x", NewNode{Mode: 0o1000644}, ErrInvalid, 0, 0, 0},
		{"symlink no target", RootIno, "x", NewNode{Mode: syscall.S_IFLNK | 0o777}, ErrInvalid, 0, 0, 0},
		{"symlink long target", RootIno, "x", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: strings.Repeat("t", 4096)}, ErrNameTooLong, 0, 0, 0},
		{"target on a file", RootIno, "x", NewNode{Mode: 0o644, Target: "t"}, ErrInvalid, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pino := tt.parent
			if pino == 9999 {
				pino = RootIno
			}
			before := getattr(t, db, pino)
			a, err := db.Create(ctx, tt.parent, tt.entry, tt.n)
			wantErr(t, err, tt.want)
			after := getattr(t, db, pino)
			if err != nil {
				if after != before && !(after.Ino == before.Ino && after.Mtime.Equal(before.Mtime) && after.Nlink == before.Nlink) {
					t.Fatalf("failed Create changed the parent: %+v -> %+v", before, after)
				}
				return
			}
			if a.Mode != tt.wantMode || a.Nlink != tt.nlink || a.Size != tt.size || a.Rdev != tt.n.Rdev ||
				!a.Mtime.Equal(t1) || !a.Atime.Equal(t1) || !a.Ctime.Equal(t1) {
				t.Fatalf("attr %+v", a)
			}
			got := getattr(t, db, a.Ino)
			if got.Mode != a.Mode || got.Nlink != a.Nlink || got.Size != a.Size || !got.Mtime.Equal(a.Mtime) || got.Rdev != a.Rdev {
				t.Fatalf("GetAttr %+v, Create returned %+v", got, a)
			}
			if l, err := db.Lookup(ctx, tt.parent, tt.entry); err != nil || l.Ino != a.Ino {
				t.Fatalf("Lookup = %+v, %v", l, err)
			}
			wantNlink := before.Nlink
			if a.IsDir() {
				wantNlink++
			}
			if after.Nlink != wantNlink || !after.Mtime.Equal(t1) || !after.Ctime.Equal(t1) {
				t.Fatalf("parent after %+v (nlink want %d)", after, wantNlink)
			}
		})
	}
	checkDB(t, db)
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "d")
	f := mkfile(t, db, d.Ino, "f")
	tests := []struct {
		name   string
		parent uint64
		entry  string
		ino    uint64
		want   error
	}{
		{"file", d.Ino, "f", f.Ino, nil},
		{"dir", RootIno, "d", d.Ino, nil},
		{"missing", d.Ino, "g", 0, ErrNotExist},
		{"case matters", RootIno, "D", 0, ErrNotExist},
		{"parent is a file", f.Ino, "x", 0, ErrNotDir},
		{"parent missing", 12345, "x", 0, ErrNotExist},
		{"bad name", RootIno, "a/b", 0, ErrInvalid},
		{"long name", RootIno, strings.Repeat("x", 300), 0, ErrNameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := db.Lookup(ctx, tt.parent, tt.entry)
			wantErr(t, err, tt.want)
			if err == nil && a.Ino != tt.ino {
				t.Fatalf("ino %d, want %d", a.Ino, tt.ino)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprint(tt.parent)) {
				t.Fatalf("error %q does not name the parent", err)
			}
		})
	}
	if _, err := db.GetAttr(ctx, 777); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "777") {
		t.Fatalf("GetAttr(777) = %v", err)
	}
}

func TestReadDirPaging(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "big")
	const n = 5000
	var want []string
	for i := range n {
		name := fmt.Sprintf("f%05d", (i*7919)%n) // not in creation order
		mkfile(t, db, d.Ino, name)
		want = append(want, name)
	}
	sort.Strings(want)
	var got []string
	after := ""
	start := time.Now()
	pages := 0
	for {
		es, err := db.ReadDir(ctx, d.Ino, after, 128)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		pages++
		if len(es) > 128 {
			t.Fatalf("page of %d", len(es))
		}
		for _, e := range es {
			if e.Mode&syscall.S_IFMT != syscall.S_IFREG || e.Ino == 0 {
				t.Fatalf("entry %+v", e)
			}
			got = append(got, e.Name)
		}
		after = es[len(es)-1].Name
	}
	t.Logf("%d entries in %d pages: %v", len(got), pages, time.Since(start))
	if len(got) != n {
		t.Fatalf("got %d entries", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entry %d = %q, want %q", i, got[i], want[i])
		}
	}
	all, err := db.ReadDir(ctx, d.Ino, "", 0)
	if err != nil || len(all) != n {
		t.Fatalf("ReadDir(all) = %d, %v", len(all), err)
	}
	mid, err := db.ReadDir(ctx, d.Ino, "f02500", 2)
	if err != nil || len(mid) != 2 || mid[0].Name != "f02501" || mid[1].Name != "f02502" {
		t.Fatalf("ReadDir(after f02500) = %v, %v", mid, err)
	}
	// An `after` that is not an entry.
	mid, err = db.ReadDir(ctx, d.Ino, "f02500x", 1)
	if err != nil || len(mid) != 1 || mid[0].Name != "f02501" {
		t.Fatalf("ReadDir(after f02500x) = %v, %v", mid, err)
	}
}

func TestReadDir(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	e := mkdir(t, db, RootIno, "empty")
	f := mkfile(t, db, RootIno, "file")
	names := []string{"a", "B", "\xff", "é", "z", "aa", "a\x01"}
	d := mkdir(t, db, RootIno, "d")
	for _, n := range names {
		mkfile(t, db, d.Ino, n)
	}
	mkdir(t, db, d.Ino, "sub")
	names = append(names, "sub")
	sort.Strings(names) // byte order
	es, err := db.ReadDir(ctx, d.Ino, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
		if e.Name == "sub" && e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			t.Fatalf("sub: mode %o", e.Mode)
		}
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", names) {
		t.Fatalf("order %q, want %q", got, names)
	}
	if es, err := db.ReadDir(ctx, e.Ino, "", 10); err != nil || len(es) != 0 {
		t.Fatalf("empty dir: %v, %v", es, err)
	}
	if es, err := db.ReadDir(ctx, d.Ino, "\xff", 10); err != nil || len(es) != 0 {
		t.Fatalf("after last: %v, %v", es, err)
	}
	if _, err := db.ReadDir(ctx, f.Ino, "", 10); !errors.Is(err, ErrNotDir) {
		t.Fatalf("ReadDir(file) = %v", err)
	}
	if _, err := db.ReadDir(ctx, 4242, "", 10); !errors.Is(err, ErrNotExist) {
		t.Fatalf("ReadDir(missing) = %v", err)
	}
}

func TestReadlink(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	target := strings.Repeat("x/", 2000) + "end"
	l, err := db.Create(ctx, RootIno, "l", NewNode{Mode: syscall.S_IFLNK | 0o777, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := db.Readlink(ctx, l.Ino); err != nil || s != target {
		t.Fatalf("Readlink = %d bytes, %v", len(s), err)
	}
	f := mkfile(t, db, RootIno, "f")
	if _, err := db.Readlink(ctx, f.Ino); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Readlink(file) = %v", err)
	}
	if _, err := db.Readlink(ctx, 999); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Readlink(missing) = %v", err)
	}
}

func TestSetAttr(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	u32 := func(v uint32) *uint32 { return &v }
	tm := func(v time.Time) *time.Time { return &v }
	t1, t2, t3 := t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(3*time.Nanosecond)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		in    SetAttrIn
		check func(a Attr) bool
	}{
		{"chmod keeps type", SetAttrIn{Mode: u32(0o4711), Ctime: t1}, func(a Attr) bool {
			return a.Mode == syscall.S_IFREG|0o4711 && a.Ctime.Equal(t1)
		}},
		{"chmod with type bits ignores them", SetAttrIn{Mode: u32(syscall.S_IFDIR | 0o600), Ctime: t1}, func(a Attr) bool {
			return a.Mode == syscall.S_IFREG|0o600
		}},
		{"chown", SetAttrIn{Uid: u32(5), Gid: u32(6), Ctime: t2}, func(a Attr) bool {
			return a.Uid == 5 && a.Gid == 6 && a.Mode == syscall.S_IFREG|0o600 && a.Ctime.Equal(t2)
		}},
		{"utimens ns", SetAttrIn{Atime: tm(t3), Mtime: tm(t1), Ctime: t2}, func(a Attr) bool {
			return a.Atime.Equal(t3) && a.Mtime.Equal(t1) && a.Uid == 5
		}},
		{"year 3000 clamps", SetAttrIn{Mtime: tm(far), Ctime: t2}, func(a Attr) bool {
			return a.Mtime.Year() == 2262
		}},
		{"only ctime", SetAttrIn{Ctime: t3}, func(a Attr) bool {
			return a.Ctime.Equal(t3) && a.Atime.Equal(t3)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := db.SetAttr(ctx, f.Ino, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(a) {
				t.Fatalf("returned %+v", a)
			}
			if g := getattr(t, db, f.Ino); !tt.check(g) || g.Mode != a.Mode || !g.Mtime.Equal(a.Mtime) {
				t.Fatalf("stored %+v, returned %+v", g, a)
			}
		})
	}
	if _, err := db.SetAttr(ctx, 999, SetAttrIn{}); !errors.Is(err, ErrNotExist) {
		t.Fatalf("SetAttr(missing) = %v", err)
	}
}

func TestUnlink(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "d")
	f := mkfile(t, db, d.Ino, "f")
	if _, err := db.Link(ctx, f.Ino, RootIno, "f2", t0); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Minute)
	a, err := db.Unlink(ctx, d.Ino, "f", t1)
	if err != nil || a.Nlink != 1 || a.Ino != f.Ino || !a.Ctime.Equal(t1) {
		t.Fatalf("Unlink = %+v, %v", a, err)
	}
	if p := getattr(t, db, d.Ino); !p.Mtime.Equal(t1) || !p.Ctime.Equal(t1) || p.Nlink != 2 {
		t.Fatalf("parent %+v", p)
	}
	if _, err := db.Lookup(ctx, d.Ino, "f"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Lookup after unlink = %v", err)
	}
	a, err = db.Unlink(ctx, RootIno, "f2", t1)
	if err != nil || a.Nlink != 0 {
		t.Fatalf("Unlink last = %+v, %v", a, err)
	}
	if g := getattr(t, db, f.Ino); g.Nlink != 0 {
		t.Fatalf("orphan %+v", g)
	}
	checkDB(t, db)
	if err := db.Purge(ctx, f.Ino); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetAttr(ctx, f.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("after Purge: %v", err)
	}
	if err := db.Purge(ctx, f.Ino); err != nil {
		t.Fatalf("second Purge = %v", err)
	}
	g := mkfile(t, db, RootIno, "g")
	if err := db.Purge(ctx, g.Ino); err != nil || getattr(t, db, g.Ino).Nlink != 1 {
		t.Fatalf("Purge of a linked inode = %v", err)
	}
	for _, tt := range []struct {
		name   string
		parent uint64
		entry  string
		want   error
	}{
		{"dir", RootIno, "d", ErrIsDir},
		{"missing", RootIno, "nope", ErrNotExist},
		{"parent file", g.Ino, "x", ErrNotDir},
		{"parent missing", 999, "x", ErrNotExist},
		{"bad name", RootIno, "..", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.Unlink(ctx, tt.parent, tt.entry, t1)
			wantErr(t, err, tt.want)
		})
	}
}

func TestRmdir(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "d")
	e := mkdir(t, db, d.Ino, "e")
	mkfile(t, db, e.Ino, "f")
	if err := db.SetXattr(ctx, e.Ino, "user.a", []byte("b"), 0); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		parent uint64
		entry  string
		want   error
	}{
		{"not empty", d.Ino, "e", ErrNotEmpty},
		{"file", e.Ino, "f", ErrNotDir},
		{"missing", d.Ino, "x", ErrNotExist},
		{"parent missing", 999, "x", ErrNotExist},
		{"dot", d.Ino, ".", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, db.Rmdir(ctx, tt.parent, tt.entry, t0), tt.want)
		})
	}
	if _, err := db.Unlink(ctx, e.Ino, "f", t0); err != nil {
		t.Fatal(err)
	}
	f, _ := db.GetAttr(ctx, 0)
	_ = f
	if getattr(t, db, d.Ino).Nlink != 3 {
		t.Fatal("d nlink before rmdir")
	}
	t1 := t0.Add(time.Hour)
	if err := db.Rmdir(ctx, d.Ino, "e", t1); err != nil {
		t.Fatal(err)
	}
	if p := getattr(t, db, d.Ino); p.Nlink != 2 || !p.Mtime.Equal(t1) || !p.Ctime.Equal(t1) {
		t.Fatalf("parent after rmdir %+v", p)
	}
	if _, err := db.GetAttr(ctx, e.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("dir inode survived rmdir: %v", err)
	}
	if err := db.Rmdir(ctx, RootIno, "d", t1); err != nil {
		t.Fatal(err)
	}
	if r := getattr(t, db, RootIno); r.Nlink != 2 {
		t.Fatalf("root nlink %d", r.Nlink)
	}
}

func TestLink(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	d := mkdir(t, db, RootIno, "d")
	f := mkfile(t, db, RootIno, "f")
	t1 := t0.Add(time.Second)
	a, err := db.Link(ctx, f.Ino, d.Ino, "f-link", t1)
	if err != nil || a.Nlink != 2 || a.Ino != f.Ino || !a.Ctime.Equal(t1) {
		t.Fatalf("Link = %+v, %v", a, err)
	}
	if l, err := db.Lookup(ctx, d.Ino, "f-link"); err != nil || l.Ino != f.Ino || l.Nlink != 2 {
		t.Fatalf("Lookup = %+v, %v", l, err)
	}
	if p := getattr(t, db, d.Ino); p.Nlink != 2 || !p.Mtime.Equal(t1) {
		t.Fatalf("parent %+v", p)
	}
	orphan := mkfile(t, db, RootIno, "o")
	if _, err := db.Unlink(ctx, RootIno, "o", t1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		ino    uint64
		parent uint64
		entry  string
		want   error
	}{
		{"dir", d.Ino, RootIno, "d2", ErrPerm},
		{"exists", f.Ino, RootIno, "d", ErrExist},
		{"same name", f.Ino, RootIno, "f", ErrExist},
		{"missing inode", 999, RootIno, "x", ErrNotExist},
		{"orphan", orphan.Ino, RootIno, "x", ErrNotExist},
		{"parent file", f.Ino, f.Ino, "x", ErrNotDir},
		{"parent missing", f.Ino, 998, "x", ErrNotExist},
		{"bad name", f.Ino, RootIno, "", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.Link(ctx, tt.ino, tt.parent, tt.entry, t1)
			wantErr(t, err, tt.want)
		})
	}
	if err := db.Purge(ctx, orphan.Ino); err != nil {
		t.Fatal(err)
	}
}

func TestXattr(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	f := mkfile(t, db, RootIno, "f")
	if v, err := db.GetXattr(ctx, f.Ino, "user.a"); !errors.Is(err, ErrNoData) {
		t.Fatalf("GetXattr(missing) = %q, %v", v, err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.a", []byte("1"), XattrReplace); !errors.Is(err, ErrNoData) {
		t.Fatalf("replace missing = %v", err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.a", []byte("1"), XattrCreate); err != nil {
		t.Fatal(err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.a", []byte("2"), XattrCreate); !errors.Is(err, ErrExist) {
		t.Fatalf("create existing = %v", err)
	}
	if err := db.SetXattr(ctx, f.Ino, "user.a", []byte("3"), XattrReplace); err != nil {
		t.Fatal(err)
	}
	if err := db.SetXattr(ctx, f.Ino, "security.b", nil, 0); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 1, 2, 255}
	if err := db.SetXattr(ctx, f.Ino, "trusted.c", bin, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := db.GetXattr(ctx, f.Ino, "user.a"); err != nil || string(v) != "3" {
		t.Fatalf("GetXattr = %q, %v", v, err)
	}
	if v, err := db.GetXattr(ctx, f.Ino, "security.b"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("GetXattr(empty) = %v, %v", v, err)
	}
	if v, err := db.GetXattr(ctx, f.Ino, "trusted.c"); err != nil || string(v) != string(bin) {
		t.Fatalf("GetXattr(bin) = %v, %v", v, err)
	}
	if names, err := db.ListXattr(ctx, f.Ino); err != nil || fmt.Sprint(names) != "[security.b trusted.c user.a]" {
		t.Fatalf("ListXattr = %v, %v", names, err)
	}
	if err := db.RemoveXattr(ctx, f.Ino, "user.a"); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveXattr(ctx, f.Ino, "user.a"); !errors.Is(err, ErrNoData) {
		t.Fatalf("remove missing = %v", err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"get missing inode", func() error { _, err := db.GetXattr(ctx, 999, "user.a"); return err }(), ErrNotExist},
		{"set missing inode", db.SetXattr(ctx, 999, "user.a", nil, 0), ErrNotExist},
		{"list missing inode", func() error { _, err := db.ListXattr(ctx, 999); return err }(), ErrNotExist},
		{"remove missing inode", db.RemoveXattr(ctx, 999, "user.a"), ErrNotExist},
		{"empty name", db.SetXattr(ctx, f.Ino, "", nil, 0), ErrInvalid},
		{"long name", db.SetXattr(ctx, f.Ino, strings.Repeat("u", 256), nil, 0), ErrNameTooLong},
		{"big value", db.SetXattr(ctx, f.Ino, "user.big", make([]byte, MaxXattrSize+1), 0), ErrInvalid},
		{"bad flags", db.SetXattr(ctx, f.Ino, "user.x", nil, 4), ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.err, tt.want) })
	}
	if err := db.SetXattr(ctx, f.Ino, "user.max", make([]byte, MaxXattrSize), 0); err != nil {
		t.Fatal(err)
	}
	if names, err := db.ListXattr(ctx, RootIno); err != nil || len(names) != 0 {
		t.Fatalf("ListXattr(root) = %v, %v", names, err)
	}
}

func TestPath(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	a := mkdir(t, db, RootIno, "a")
	b := mkdir(t, db, a.Ino, "b")
	f := mkfile(t, db, b.Ino, "f")
	for ino, want := range map[uint64]string{RootIno: "/", a.Ino: "/a", b.Ino: "/a/b", f.Ino: "/a/b/f"} {
		if p, err := db.Path(ctx, ino); err != nil || p != want {
			t.Errorf("Path(%d) = %q, %v, want %q", ino, p, err, want)
		}
	}
	if _, err := db.Path(ctx, 999); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Path(missing) = %v", err)
	}
}
