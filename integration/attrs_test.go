package integration

import (
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An mtime with nanoseconds, far from now, for every source entry.
var treeTime = time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)

// buildMetaTree makes a source tree on plain disk with the metadata cp -a
// and rsync -aHX must carry: modes, symlinks, hard links, xattrs, mtimes.
func buildMetaTree(t *testing.T, root string) {
	t.Helper()
	file := func(rel string, mode os.FileMode, data []byte) {
		p := filepath.Join(root, rel)
		writeFile(t, p, data)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	dir := func(rel string, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	xattr := func(rel, name string, val []byte) {
		if err := unix.Lsetxattr(filepath.Join(root, rel), name, val, 0); err != nil {
			t.Fatalf("setxattr %s %s on the source (plain disk): %v", rel, name, err)
		}
	}
	symlink := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	dir("dir750", 0o755)
	dir("dir750/sub", 0o755)
	dir("empty700", 0o755)
	file("plain", 0o644, []byte("plain file\n"))
	file("exec741", 0o741, []byte("#!/bin/sh\necho hi\n"))
	file("secret600", 0o600, []byte("secret\n"))
	file("empty", 0o644, nil)
	file("big", 0o644, randBytes(20, 2<<20+3))
	file("dir750/inner640", 0o640, []byte("inner\n"))
	file("dir750/sub/deep", 0o444, randBytes(21, 70000))
	file("hard1", 0o640, randBytes(22, 300000))
	if err := os.Link(filepath.Join(root, "hard1"), filepath.Join(root, "dir750/hard2")); err != nil {
		t.Fatal(err)
	}
	symlink("plain", "link")
	symlink("dir750/sub", "dirlink")
	symlink("../no/such/target", "dangling")
	symlink("/etc/hostname", "abslink")
	symlink(strings.Repeat("long/", 50)+"x", "longlink")
	xattr("plain", "user.color", []byte("blue"))
	xattr("plain", "user.empty", nil)
	xattr("plain", "user.binary", []byte{0, 1, 2, 255, 0})
	xattr("big", "user.big", bytes.Repeat([]byte("x"), 2000))
	xattr("dir750", "user.dir", []byte("d"))
	xattr("hard1", "user.shared", []byte("by both names"))

	// Modes and times last, deepest first, so nothing touches them again.
	if err := os.Chmod(filepath.Join(root, "dir750"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "empty700"), 0o700); err != nil {
		t.Fatal(err)
	}
	var paths []string
	_ = filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	ts := []unix.Timespec{unix.NsecToTimespec(treeTime.UnixNano()), unix.NsecToTimespec(treeTime.UnixNano())}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// userXattrs returns the user.* extended attributes of p (not following
// symlinks).
func userXattrs(t *testing.T, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return out
		}
		t.Fatalf("listxattr %s: %v", p, err)
	}
	buf := make([]byte, sz+1)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		v := make([]byte, n)
		if n > 0 {
			if n, err = unix.Lgetxattr(p, name, v); err != nil {
				t.Fatalf("getxattr %s %s: %v", p, name, err)
			}
		}
		out[name] = string(v[:n])
	}
	return out
}

// compareMeta checks that got is an exact copy of want: the same entries,
// types, modes, owners, sizes, contents, symlink targets, xattrs, mtimes
// to the nanosecond and hard-link structure.
func compareMeta(t *testing.T, want, got string) {
	t.Helper()
	list := func(root string) []string {
		var rels []string
		err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			rels = append(rels, rel)
			return nil
		})
		if err != nil {
			t.Fatalf("walking %s: %v", root, err)
		}
		return rels
	}
	wl, gl := list(want), list(got)
	if !slices.Equal(wl, gl) {
		t.Errorf("entries differ:\nwant %q\ngot  %q", wl, gl)
	}
	links := map[uint64][]string{} // source inode → paths
	for _, rel := range wl {
		wp, gp := filepath.Join(want, rel), filepath.Join(got, rel)
		var ws, gs unix.Stat_t
		if err := unix.Lstat(wp, &ws); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(gp, &gs); err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if ws.Mode != gs.Mode {
			t.Errorf("%s: mode %#o, want %#o", rel, gs.Mode, ws.Mode)
		}
		if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		if ws.Mtim != gs.Mtim {
			t.Errorf("%s: mtime %v, want %v", rel, time.Unix(gs.Mtim.Unix()).UTC(), time.Unix(ws.Mtim.Unix()).UTC())
		}
		switch ws.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if ws.Size != gs.Size {
				t.Errorf("%s: size %d, want %d", rel, gs.Size, ws.Size)
			}
			cmpFiles(t, wp, gp)
			if ws.Nlink != gs.Nlink {
				t.Errorf("%s: nlink %d, want %d", rel, gs.Nlink, ws.Nlink)
			}
			if ws.Nlink > 1 {
				links[ws.Ino] = append(links[ws.Ino], rel)
			}
		case unix.S_IFLNK:
			wt, _ := os.Readlink(wp)
			gt, err := os.Readlink(gp)
			if err != nil || wt != gt {
				t.Errorf("%s: symlink to %q (%v), want %q", rel, gt, err, wt)
			}
			if ws.Size != gs.Size {
				t.Errorf("%s: symlink size %d, want %d", rel, gs.Size, ws.Size)
			}
		}
		wx, gx := userXattrs(t, wp), userXattrs(t, gp)
		for _, k := range sortedKeys(wx) {
			if v, ok := gx[k]; !ok || v != wx[k] {
				t.Errorf("%s: xattr %s = %q (present %v), want %q", rel, k, truncate(v, 80), ok, truncate(wx[k], 80))
			}
		}
		for _, k := range sortedKeys(gx) {
			if _, ok := wx[k]; !ok {
				t.Errorf("%s: extra xattr %s", rel, k)
			}
		}
	}
	if len(links) == 0 {
		t.Fatalf("the source tree has no hard links")
	}
	for _, rels := range links {
		var inos []uint64
		for _, rel := range rels {
			var gs unix.Stat_t
			if err := unix.Lstat(filepath.Join(got, rel), &gs); err != nil {
				t.Fatal(err)
			}
			inos = append(inos, gs.Ino)
		}
		if len(rels) < 2 || slices.ContainsFunc(inos, func(i uint64) bool { return i != inos[0] }) {
			t.Errorf("hard links %v have inodes %v, want one inode for all", rels, inos)
		}
	}
}

// TestCopyMetadata copies a tree with cp -a and checks every piece of
// metadata, before and after a remount.
func TestCopyMetadata(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := filepath.Join(t.TempDir(), "tree")
	buildMetaTree(t, src)
	runTool(t, "cp", "-a", src, m.Path("cp"))
	compareMeta(t, src, m.Path("cp"))
	m.Remount()
	compareMeta(t, src, m.Path("cp"))
}

// TestRsyncMetadata copies the same tree with rsync -aHX and checks that a
// second rsync finds nothing to do.
func TestRsyncMetadata(t *testing.T) {
	t.Parallel()
	needTool(t, "rsync", "rsync")
	m := mount(t)
	src := filepath.Join(t.TempDir(), "tree")
	buildMetaTree(t, src)
	runTool(t, "rsync", "-aHX", src+"/", m.Path("rsync")+"/")
	compareMeta(t, src, m.Path("rsync"))
	m.Remount()
	compareMeta(t, src, m.Path("rsync"))
	if out := runTool(t, "rsync", "-aHXni", "--checksum", src+"/", m.Path("rsync")+"/"); strings.TrimSpace(out) != "" {
		t.Errorf("a second rsync -aHX --checksum would still change:\n%s", out)
	}
}

// TestXattrsOfNewFiles checks the extended attributes of files created
// through the mount (the daemon answers "none" for them without the index
// until one is set): none at first, then what was set, through every
// name of a hard link, after writes, and after a remount.
func TestXattrsOfNewFiles(t *testing.T) {
	t.Parallel()
	m := mount(t)
	p := m.Path("new")
	writeFile(t, p, []byte("fresh"))
	if _, err := unix.Lgetxattr(p, "user.color", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("getxattr of a new file = %v, want ENODATA", err)
	}
	if got := userXattrs(t, p); len(got) != 0 {
		t.Fatalf("a new file lists xattrs %v", got)
	}
	if err := unix.Lsetxattr(p, "user.color", []byte("green"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(p, m.Path("other-name")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(" and written again")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user.color": "green"}
	check := func(when string) {
		for _, name := range []string{"new", "other-name"} {
			if got := userXattrs(t, m.Path(name)); !maps.Equal(got, want) {
				t.Fatalf("%s: %s has xattrs %v, want %v", when, name, got, want)
			}
		}
	}
	check("after setxattr")
	m.Remount()
	check("after a remount")
	if err := os.Mkdir(m.Path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := userXattrs(t, m.Path("d")); len(got) != 0 {
		t.Fatalf("a new directory lists xattrs %v", got)
	}
}

// TestXattrBound fills a file to both documented bounds at once (256
// attributes, names and values of 1 MiB in all: fs/README.md): each
// attribute has a 255-byte name, so listxattr's answer is exactly
// XATTR_LIST_MAX (64 KiB) and still works. One more attribute, or a
// bigger value, gets ENOSPC (setfattr too); replacing a value with one of
// the same or a smaller size works; `cp -a` copies the file with all its
// attributes into a new file on the mount; removing one makes room for
// another.
func TestXattrBound(t *testing.T) {
	t.Parallel()
	needTool(t, "setfattr", "attr")
	const count, total, listMax = 256, 1 << 20, 64 << 10
	m := mount(t)
	p := m.Path("full")
	writeFile(t, p, []byte("a file with all the xattrs it may have\n"))
	name := func(i int) string {
		pre := fmt.Sprintf("user.%03d.", i)
		return pre + strings.Repeat("x", 255-len(pre))
	}
	valueLen := total/count - 255 // 3841: every name and value take 4 KiB
	want := map[string]string{}
	for i := range count {
		v := string(randBytes(uint64(700+i), valueLen))
		if err := unix.Setxattr(p, name(i), []byte(v), 0); err != nil {
			t.Fatalf("setxattr number %d of %d (%d bytes so far): %v", i+1, count, i*(255+valueLen), err)
		}
		want[name(i)] = v
	}
	list := make([]byte, listMax)
	if n, err := unix.Listxattr(p, list); err != nil || n != listMax {
		t.Fatalf("listxattr of a file at the bound: %d bytes, %v; want exactly %d", n, err, listMax)
	}

	if err := unix.Setxattr(p, "user.one-more", nil, 0); err != unix.ENOSPC {
		t.Errorf("attribute number %d: %v, want ENOSPC", count+1, err)
	}
	if out := toolFails(t, "setfattr", "-n", "user.one-more", "-v", "x", p); !strings.Contains(out, "No space left on device") {
		t.Errorf("setfattr past the bound: %q, want No space left on device", out)
	}
	if err := unix.Setxattr(p, name(3), make([]byte, valueLen+1), unix.XATTR_REPLACE); err != unix.ENOSPC {
		t.Errorf("a value one byte bigger at the bound: %v, want ENOSPC", err)
	}
	same := string(randBytes(799, valueLen))
	if err := unix.Setxattr(p, name(3), []byte(same), unix.XATTR_REPLACE); err != nil {
		t.Errorf("replacing a value with one of the same size at the bound: %v", err)
	}
	want[name(3)] = same

	// Still exactly at the bound: the copy must hold all of it.
	runTool(t, "cp", "-a", p, m.Path("copy"))
	for _, f := range []string{"full", "copy"} {
		if got := userXattrs(t, m.Path(f)); !maps.Equal(got, want) {
			t.Errorf("%s: %d xattrs, want the %d set (equal: %v)", f, len(got), len(want), maps.Equal(got, want))
		}
	}

	if err := unix.Setxattr(p, name(4), []byte("small"), 0); err != nil {
		t.Errorf("replacing a value with a smaller one at the bound: %v", err)
	}
	if err := unix.Setxattr(p, name(4), []byte(want[name(4)]), 0); err != nil {
		t.Errorf("and back to its size at the bound: %v", err)
	}

	if err := unix.Removexattr(p, name(0)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.one-more", []byte("fits now"), 0); err != nil {
		t.Errorf("a new attribute after removing one at the bound: %v", err)
	}
	if err := unix.Setxattr(p, "user.two-more", nil, 0); err != unix.ENOSPC {
		t.Errorf("and one more: %v, want ENOSPC", err)
	}
}
