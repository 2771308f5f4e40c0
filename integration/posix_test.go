package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"
)

// posixSkip lists the go-fuse posixtest cases that do not apply to
// dualstore, each with the reason and (where there is one) a check of
// what dualstore does instead, so a change of behaviour shows up here. Every other case in
// posixtest.All must pass; a case added by a go-fuse upgrade runs (and
// must pass) unless it is listed here.
//
// Two more cases skip themselves and need no entry: RenameOpenDir (fstat
// of a directory renamed over; go-fuse issue 55) and Tmpfile (O_TMPFILE is
// not supported: EOPNOTSUPP).
var posixSkip = map[string]struct {
	why   string
	check func(t *testing.T, dir string)
}{
	"FcntlFlockLocksFile": {
		why: "it expects a second fcntl lock taken by the same process to conflict, but POSIX record " +
			"locks belong to the process, so it fails on every local filesystem (go-fuse's own TestAll " +
			"skips it); the check runs the same steps on plain disk and on the mount and wants the same " +
			"answer, and TestPosixPractical/locks checks locks between processes",
		check: posixSameProcessLocks,
	},
}

// posixSameProcessLocks takes a write lock on one descriptor and asks for
// a read lock on a second descriptor of the same file, in this process,
// on plain disk and on the mount: the answers must agree.
func posixSameProcessLocks(t *testing.T, dir string) {
	try := func(d string) error {
		p := filepath.Join(d, "lockfile")
		f1, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f1.Close()
		if err := syscall.FcntlFlock(f1.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK}); err != nil {
			t.Fatalf("F_SETLK F_WRLCK in %s: %v", d, err)
		}
		f2, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f2.Close()
		return syscall.FcntlFlock(f2.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_RDLCK})
	}
	disk, mnt := try(t.TempDir()), try(dir)
	if !errors.Is(mnt, disk) && mnt != disk {
		t.Errorf("second lock in the same process: %v on the mount, %v on plain disk", mnt, disk)
	}
}

// TestPosixSuite runs go-fuse's own POSIX conformance suite
// (posixtest.All) against one mount, each case in a fresh directory. The
// test process only uses the mount; the daemon serving it is the built
// binary, so nothing here can deadlock on its own FUSE requests.
//
// Not parallel: posixtest's FdLeak counts the open descriptors of the
// whole test process, so files other tests hold open at that moment
// make it fail.
func TestPosixSuite(t *testing.T) {
	m := mount(t)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := m.Path("posix", name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if skip, ok := posixSkip[name]; ok {
				if skip.check != nil {
					skip.check(t, dir)
				}
				if !t.Failed() {
					t.Skipf("SKIP posixtest %s (checked what dualstore does instead): %s", name, skip.why)
				}
				return
			}
			posixtest.All[name](t, dir)
		})
	}
	for name := range posixSkip {
		if posixtest.All[name] == nil {
			t.Errorf("posixSkip names %s, which posixtest.All no longer has: drop it", name)
		}
	}
	// Whatever the cases did, the mount still answers and its tree can be
	// removed.
	if err := os.RemoveAll(m.Path("posix")); err != nil {
		t.Errorf("removing the posixtest tree: %v", err)
	}
	m.Stats()
}

// posixStat is lstat that fails the test.
func posixStat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func tsTime(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// posixTick sleeps long enough for the next timestamp to differ: the
// clock moving on is what the timestamp checks need, not synchronisation.
func posixTick() { time.Sleep(15 * time.Millisecond) }

// TestPosixPractical covers what people hit in practice beyond
// posixtest: renaming over and unlinking open files, hard links sharing
// content, timestamps, long names and deep paths, O_APPEND from two
// writers, renameat2 flags, locks between processes.
func TestPosixPractical(t *testing.T) {
	t.Parallel()
	m := mount(t)

	t.Run("rename over an open file", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("renameover")
		oldData, newData := randBytes(300, 3<<20+5), randBytes(301, 1<<20+7)
		writeFile(t, filepath.Join(dir, "dst"), oldData)
		writeFile(t, filepath.Join(dir, "src"), newData)
		f, err := os.Open(filepath.Join(dir, "dst"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := os.OpenFile(filepath.Join(dir, "dst"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "src"), filepath.Join(dir, "dst")); err != nil {
			t.Fatal(err)
		}
		// The open descriptors still reach the replaced file: reads see
		// its bytes, writes go to it and never to the new name.
		if _, err := w.WriteAt([]byte("REPLACED"), 0); err != nil {
			t.Errorf("writing to the replaced open file: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("closing the replaced open file after a write: %v", err)
		}
		got := make([]byte, len(oldData))
		if n, err := f.ReadAt(got, 0); n != len(oldData) {
			t.Fatalf("reading the replaced open file: %d bytes, %v", n, err)
		}
		if !bytes.Equal(got[8:], oldData[8:]) || string(got[:8]) != "REPLACED" {
			t.Errorf("the replaced open file does not hold its old bytes plus the write")
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 {
			t.Errorf("fstat of the replaced open file: nlink %d, %v; want 0", st.Nlink, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "dst")); err != nil || !bytes.Equal(b, newData) {
			t.Errorf("the new name does not hold the renamed file (%d bytes, %v)", len(b), err)
		}
		f.Close()
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("%s holds %d entries after the rename, want 1", dir, len(ents))
		}
	})

	t.Run("unlink an open file", func(t *testing.T) {
		m := m.For(t)
		p := m.Path("unlinkopen")
		data := randBytes(302, 2<<20+11)
		writeFile(t, p, data)
		before := m.Stats()
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("lstat after unlink: %v, want ENOENT", err)
		}
		// Still readable and writable until closed.
		got := make([]byte, len(data))
		if n, err := f.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
			t.Errorf("reading the unlinked open file: %d bytes, %v, equal %v", n, err, bytes.Equal(got, data))
		}
		if _, err := f.WriteAt([]byte("more"), int64(len(data))); err != nil {
			t.Errorf("writing the unlinked open file: %v", err)
		}
		if err := f.Sync(); err != nil {
			t.Errorf("fsync of the unlinked open file: %v", err)
		}
		if n, err := f.ReadAt(got[:4], 0); n != 4 || !bytes.Equal(got[:4], data[:4]) {
			t.Errorf("re-reading the unlinked open file: %v", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != int64(len(data)+4) {
			t.Errorf("fstat of the unlinked open file: nlink %d size %d, %v; want 0 and %d", st.Nlink, st.Size, err, len(data)+4)
		}
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		// Closed: the file and its chunks are gone from the index.
		if err := waitFor(10*time.Second, func() error {
			if after := m.Stats(); after.Files != before.Files-1 || after.UniqueChunks >= before.UniqueChunks {
				return fmt.Errorf("files %d→%d, unique_chunks %d→%d", before.Files, after.Files, before.UniqueChunks, after.UniqueChunks)
			}
			return nil
		}); err != nil {
			t.Errorf("after closing the unlinked file: %v; want one file and its chunks gone", err)
		}
	})

	t.Run("hard links share content", func(t *testing.T) {
		m := m.For(t)
		a, b := m.Path("hl-a"), m.Path("hl-b")
		data := randBytes(303, 3<<20)
		writeFile(t, a, data)
		chunks := m.Stats().UniqueChunks
		if err := os.Link(a, b); err != nil {
			t.Fatal(err)
		}
		if sa, sb := posixStat(t, a), posixStat(t, b); sa.Ino != sb.Ino || sa.Nlink != 2 || sb.Nlink != 2 {
			t.Errorf("after ln: inodes %d/%d, nlink %d/%d; want one inode with 2 links", sa.Ino, sb.Ino, sa.Nlink, sb.Nlink)
		}
		if c := m.Stats().UniqueChunks; c != chunks {
			t.Errorf("ln changed unique_chunks %d→%d: a hard link shares its chunks", chunks, c)
		}
		// Both open at once: a write through one name is read through the
		// other at once.
		fa, err := os.Open(a)
		if err != nil {
			t.Fatal(err)
		}
		defer fa.Close()
		fb, err := os.OpenFile(b, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fb.WriteAt([]byte("via b"), 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := fb.Close(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := fa.ReadAt(got, 1<<20); err != nil || string(got) != "via b" {
			t.Errorf("reading through a what was written through b: %q, %v", got, err)
		}
		if err := os.Remove(a); err != nil {
			t.Fatal(err)
		}
		copy(data[1<<20:], "via b")
		if bb, err := os.ReadFile(b); err != nil || !bytes.Equal(bb, data) {
			t.Errorf("b after removing a: %d bytes, %v, equal %v", len(bb), err, bytes.Equal(bb, data))
		}
		if st := posixStat(t, b); st.Nlink != 1 {
			t.Errorf("b after removing a: nlink %d, want 1", st.Nlink)
		}
	})

	t.Run("timestamps", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("times")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "f")
		writeFile(t, p, []byte("first"))
		g := filepath.Join(dir, "g")
		type step struct {
			name             string
			do               func() error
			mtime, ctime     bool // of the file: must change (else must stay)
			dirMtime, dirCtm bool // of dir
			from, to         string
		}
		steps := []step{
			{"write", func() error {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				if _, err := f.WriteAt([]byte("X"), 2); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			}, true, true, false, false, "", ""},
			{"append", func() error {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return err
				}
				if _, err := f.Write([]byte("tail")); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			}, true, true, false, false, "", ""},
			{"truncate", func() error { return os.Truncate(p, 3) }, true, true, false, false, "", ""},
			{"O_TRUNC", func() error {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					return err
				}
				return f.Close()
			}, true, true, false, false, "", ""},
			{"chmod", func() error { return os.Chmod(p, 0o600) }, false, true, false, false, "", ""},
			{"chown", func() error { return os.Chown(p, 0, 0) }, false, true, false, false, "", ""},
			{"setxattr", func() error { return unix.Setxattr(p, "user.k", []byte("v"), 0) }, false, true, false, false, "", ""},
			{"link", func() error { return os.Link(p, filepath.Join(dir, "f2")) }, false, true, true, true, "", ""},
			{"unlink other name", func() error { return os.Remove(filepath.Join(dir, "f2")) }, false, true, true, true, "", ""},
			{"rename", func() error { return os.Rename(p, g) }, false, true, true, true, p, g},
			{"rename back", func() error { return os.Rename(g, p) }, false, true, true, true, g, p},
			{"read", func() error { _, err := os.ReadFile(p); return err }, false, false, false, false, "", ""},
			{"create sibling", func() error { return os.WriteFile(filepath.Join(dir, "s"), nil, 0o644) }, false, false, true, true, "", ""},
		}
		for _, s := range steps {
			if s.from == "" {
				s.from, s.to = p, p
			}
			f0, d0 := posixStat(t, s.from), posixStat(t, dir)
			posixTick()
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			f1, d1 := posixStat(t, s.to), posixStat(t, dir)
			check := func(what string, before, after unix.Timespec, want bool) {
				changed := tsTime(after).After(tsTime(before))
				if tsTime(after).Before(tsTime(before)) {
					t.Errorf("%s: %s went back in time: %v → %v", s.name, what, tsTime(before), tsTime(after))
				} else if changed != want {
					t.Errorf("%s: %s changed %v (%v → %v), want changed %v", s.name, what, changed, tsTime(before), tsTime(after), want)
				}
			}
			check("file mtime", f0.Mtim, f1.Mtim, s.mtime)
			check("file ctime", f0.Ctim, f1.Ctim, s.ctime)
			check("dir mtime", d0.Mtim, d1.Mtim, s.dirMtime)
			check("dir ctime", d0.Ctim, d1.Ctim, s.dirCtm)
			if s.ctime && tsTime(f1.Ctim).Before(tsTime(f1.Mtim)) {
				t.Errorf("%s: ctime %v before mtime %v", s.name, tsTime(f1.Ctim), tsTime(f1.Mtim))
			}
		}
		// Explicit times are kept to the nanosecond, also across a
		// remount-free re-read after the attribute cache expires.
		want := time.Date(2003, 4, 5, 6, 7, 8, 123456789, time.UTC)
		if err := os.Chtimes(p, want, want); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // attr_timeout expiring, so the stat asks the daemon and not the kernel's copy: not synchronisation
		if st := posixStat(t, p); !tsTime(st.Mtim).Equal(want) || !tsTime(st.Atim).Equal(want) {
			t.Errorf("after utimes(%v): mtime %v atime %v", want, tsTime(st.Mtim), tsTime(st.Atim))
		}
	})

	t.Run("long names", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("names")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// 255 bytes, ASCII and multi-byte UTF-8 (3 bytes a rune).
		for _, name := range []string{strings.Repeat("n", 255), strings.Repeat("€", 85), "x" + strings.Repeat("é", 127)} {
			if len(name) != 255 {
				t.Fatalf("name of %d bytes", len(name))
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(name[:5]), 0o644); err != nil {
				t.Errorf("creating a %d-byte name: %v", len(name), err)
				continue
			}
			if err := os.Rename(p, p[:len(p)-1]+"Z"); err != nil {
				t.Errorf("renaming to a %d-byte name: %v", len(name), err)
			}
		}
		long := strings.Repeat("n", 256)
		for what, err := range map[string]error{
			"create": os.WriteFile(filepath.Join(dir, long), nil, 0o644),
			"mkdir":  os.Mkdir(filepath.Join(dir, long), 0o755),
			"rename": os.Rename(filepath.Join(dir, strings.Repeat("n", 254)+"Z"), filepath.Join(dir, long)),
			"link":   os.Link(filepath.Join(dir, strings.Repeat("n", 254)+"Z"), filepath.Join(dir, long)),
			"lookup": func() error { _, err := os.Lstat(filepath.Join(dir, long)); return err }(),
		} {
			if !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Errorf("%s of a 256-byte name: %v, want ENAMETOOLONG", what, err)
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 3 {
			t.Errorf("readdir of names: %d entries, %v; want 3", len(ents), err)
		}
		for _, e := range ents {
			if len(e.Name()) != 255 {
				t.Errorf("readdir returned a %d-byte name", len(e.Name()))
			}
		}
	})

	t.Run("deep paths", func(t *testing.T) {
		m := m.For(t)
		// Components of 200 bytes, 25 deep: about 5000 bytes below the
		// mount, past PATH_MAX (4096), so it is built and read with
		// openat/mkdirat relative to a directory descriptor, as tools like
		// rm -r and find do.
		comp := strings.Repeat("d", 199)
		root := m.Path("deep")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var fds []int
		defer func() {
			for _, f := range fds {
				unix.Close(f)
			}
		}()
		fds = append(fds, fd)
		rel := ""
		for i := range 25 {
			name := fmt.Sprintf("%s%d", comp, i%10)
			if err := unix.Mkdirat(fd, name, 0o755); err != nil {
				t.Fatalf("mkdirat at depth %d (%d bytes): %v", i, len(rel), err)
			}
			if fd, err = unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0); err != nil {
				t.Fatalf("openat at depth %d: %v", i, err)
			}
			fds = append(fds, fd)
			rel = filepath.Join(rel, name)
		}
		if len(root)+len(rel) < 4096 {
			t.Fatalf("the deep path is only %d bytes", len(root)+len(rel))
		}
		data := randBytes(304, 100000)
		wf, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := unix.Write(wf, data); n != len(data) || err != nil {
			t.Fatalf("write leaf: %d, %v", n, err)
		}
		if err := unix.Close(wf); err != nil {
			t.Fatal(err)
		}
		// The full path is too long for one syscall argument…
		if _, err := os.Stat(filepath.Join(root, rel, "leaf")); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("stat of a %d-byte path: %v, want ENAMETOOLONG", len(root)+len(rel)+5, err)
		}
		// …but a path just under PATH_MAX works as one argument.
		cut := rel[:strings.LastIndex(rel[:4000-len(root)], "/")]
		if _, err := os.Stat(filepath.Join(root, cut)); err != nil {
			t.Errorf("stat of a %d-byte path: %v", len(root)+len(cut)+1, err)
		}
		rf, err := unix.Openat(fd, "leaf", unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data)+1)
		n, _ := unix.Read(rf, got)
		unix.Close(rf)
		if !bytes.Equal(got[:n], data) {
			t.Errorf("reading the deep leaf back: %d bytes, want %d equal", n, len(data))
		}
		// Real tools walk it and remove it.
		if out := sh(t, root, "find . -name leaf | wc -l"); strings.TrimSpace(out) != "1" {
			t.Errorf("find in the deep tree: %q", out)
		}
		for _, f := range fds {
			unix.Close(f)
		}
		fds = nil
		sh(t, m.Dir, "rm -r deep")
		if _, err := os.Lstat(root); !os.IsNotExist(err) {
			t.Errorf("rm -r of the deep tree left it: %v", err)
		}
	})

	t.Run("O_APPEND from two writers", func(t *testing.T) {
		m := m.For(t)
		p := m.Path("appended")
		const recs, size = 300, 1000
		record := func(w, i int) []byte {
			r := bytes.Repeat([]byte{byte('a' + w)}, size)
			copy(r, fmt.Sprintf("%d:%05d|", w, i))
			r[size-1] = '\n'
			return r
		}
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				for i := range recs {
					if _, err := f.Write(record(w, i)); err != nil {
						t.Errorf("writer %d record %d: %v", w, i, err)
						return
					}
				}
				if err := f.Close(); err != nil {
					t.Errorf("writer %d close: %v", w, err)
				}
			}()
		}
		// Two shells appending with >> at the same time, as logs do.
		sh(t, m.Dir, `for i in $(seq 1 200); do echo "sh1 $i" >> shlog; done & for i in $(seq 1 200); do echo "sh2 $i" >> shlog; done; wait`)
		wg.Wait()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 2*recs*size {
			t.Fatalf("appended file has %d bytes, want %d: appends overwrote each other", len(b), 2*recs*size)
		}
		next := [2]int{}
		for off := 0; off < len(b); off += size {
			r := b[off : off+size]
			var w, i int
			if _, err := fmt.Sscanf(string(r), "%d:%05d|", &w, &i); err != nil || w < 0 || w > 1 || !bytes.Equal(r, record(w, i)) {
				t.Fatalf("record at %d is torn: %q…", off, r[:20])
			}
			if i != next[w] {
				t.Fatalf("writer %d: record %d at offset %d, want %d (order within a writer)", w, i, off, next[w])
			}
			next[w]++
		}
		lines := strings.Split(strings.TrimSpace(string(posixRead(t, m.Path("shlog")))), "\n")
		seen := map[string]bool{}
		for _, l := range lines {
			seen[l] = true
		}
		if len(lines) != 400 || len(seen) != 400 {
			t.Errorf("shlog has %d lines (%d distinct), want 400", len(lines), len(seen))
		}
	})

	t.Run("renameat2 flags", func(t *testing.T) {
		m := m.For(t)
		a, b := m.Path("rx-a"), m.Path("rx-b")
		writeFile(t, a, []byte("A"))
		writeFile(t, b, []byte("B"))
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
			t.Errorf("RENAME_NOREPLACE onto an existing name: %v, want EEXIST", err)
		}
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
			t.Fatalf("RENAME_EXCHANGE: %v", err)
		}
		if string(posixRead(t, a)) != "B" || string(posixRead(t, b)) != "A" {
			t.Errorf("after RENAME_EXCHANGE: a=%q b=%q", posixRead(t, a), posixRead(t, b))
		}
		if err := os.Mkdir(m.Path("rx-dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, m.Path("rx-dir", "x"), nil)
		if err := os.Mkdir(m.Path("rx-empty"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Rename(m.Path("rx-empty"), m.Path("rx-dir")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			t.Errorf("rename of a directory onto a non-empty one: %v, want ENOTEMPTY", err)
		}
		if err := syscall.Rename(m.Path("rx-dir"), m.Path("rx-dir", "sub")); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("rename of a directory into itself: %v, want EINVAL", err)
		}
		if err := syscall.Rename(a, m.Path("rx-dir")); !errors.Is(err, syscall.EISDIR) {
			t.Errorf("rename of a file onto a directory: %v, want EISDIR", err)
		}
	})

	t.Run("signals do not interrupt metadata calls", func(t *testing.T) {
		m := m.For(t)
		// Every signal a thread gets while it waits in a FUSE request makes
		// the kernel send FUSE_INTERRUPT; Go programs get SIGURG all the
		// time. stat, rename, unlink and friends never fail with EINTR on a
		// local filesystem, and C programs do not retry them. Raw syscalls
		// here (the os package would retry EINTR and hide it) on threads
		// that are signalled all along.
		dir := m.Path("signals")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		eintr := map[string]int{}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, b := filepath.Join(dir, fmt.Sprintf("a%d", w)), filepath.Join(dir, fmt.Sprintf("b%d", w))
				note := func(op string, err error) {
					if errors.Is(err, syscall.EINTR) {
						mu.Lock()
						eintr[op]++
						mu.Unlock()
					} else if err != nil {
						t.Errorf("%s: %v", op, err)
					}
				}
				posixSignalled(func() {
					for range 150 {
						fd, err := syscall.Open(a, syscall.O_CREAT|syscall.O_WRONLY, 0o644)
						note("open(O_CREAT)", err)
						if err == nil {
							syscall.Close(fd)
						}
						var st syscall.Stat_t
						note("stat", syscall.Stat(a, &st))
						note("rename", syscall.Rename(a, b))
						note("chmod", syscall.Chmod(b, 0o600))
						note("unlink", syscall.Unlink(b))
					}
				})
			}()
		}
		wg.Wait()
		if len(eintr) > 0 {
			t.Errorf("metadata calls failed with EINTR while their thread got signals: %v", eintr)
		}
	})

	t.Run("locks", func(t *testing.T) {
		m := m.For(t)
		needTool(t, "flock", "util-linux")
		p := m.Path("locked")
		writeFile(t, p, []byte("x"))
		// A second process holds an exclusive flock and a POSIX lock.
		holder := exec.Command("flock", "-x", p, "sh", "-c", "echo locked; read _")
		stdin, err := holder.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout := &syncBuffer{}
		holder.Stdout = stdout
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close()
			_ = holder.Wait()
		}()
		if err := waitFor(10*time.Second, func() error {
			if !strings.Contains(stdout.String(), "locked") {
				return errors.New("flock holder did not start")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("flock", "-n", "-x", p, "true").CombinedOutput(); err == nil {
			t.Errorf("flock -n on a file another process holds succeeded: %s", out)
		}
		stdin.Close()
		_ = holder.Wait()
		if out, err := exec.Command("flock", "-n", "-x", p, "true").CombinedOutput(); err != nil {
			t.Errorf("flock -n after the holder exited: %v %s", err, out)
		}
	})
}

// posixSignalled runs fn on an OS thread of its own that gets SIGURG
// (harmless to the Go runtime, which uses it for preemption) every 50µs
// until fn returns, as the threads of a busy Go program do. Only that
// thread is signalled: the other tests of this process are left alone.
func posixSignalled(fn func()) {
	tid := make(chan int)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		t := <-tid
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = unix.Tgkill(os.Getpid(), t, syscall.SIGURG)
			time.Sleep(50 * time.Microsecond) // the signal rate under test: not synchronisation
		}
	}()
	runtime.LockOSThread()
	tid <- unix.Gettid()
	defer func() {
		close(stop)
		<-stopped // no signal may reach this thread once another goroutine can run on it
		runtime.UnlockOSThread()
	}()
	fn()
}

func posixRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPosixInterruptedIO writes and closes files on a thread that gets a
// signal every 50µs, as the threads of a busy Go program do (SIGURG
// preemption): every signal during a FUSE request makes the kernel send
// FUSE_INTERRUPT. A write(2) acknowledged is never lost: neither an
// interrupted close (whose commit once ran on the cancelled context and
// reverted the file) nor an interrupted append may throw writes away.
func TestPosixInterruptedIO(t *testing.T) {
	t.Parallel()
	m := mount(t)
	const files = 80
	want := map[string][]byte{}
	for i := range files {
		for _, kind := range []string{"patch", "append"} {
			name := fmt.Sprintf("%s%02d", kind, i)
			data := randBytes(uint64(560+i), 300000+i*4099)
			writeFile(t, m.Path(name), data)
			want[name] = data
		}
	}
	m.Remount() // cold chunk cache: the commits and appends must read chunks
	var closeErrs, writeErrs []string
	posixSignalled(func() {
		for i := range files {
			patch := []byte(fmt.Sprintf("<patched %02d>", i))
			p := fmt.Sprintf("patch%02d", i)
			if fd, err := syscall.Open(m.Path(p), syscall.O_WRONLY, 0); err == nil {
				if _, err := syscall.Pwrite(fd, patch, 200000); err != nil {
					writeErrs = append(writeErrs, p+": "+err.Error())
				}
				if err := syscall.Close(fd); err != nil {
					closeErrs = append(closeErrs, p+": "+err.Error())
				}
				copy(want[p][200000:], patch)
			}
			a := fmt.Sprintf("append%02d", i)
			if fd, err := syscall.Open(m.Path(a), syscall.O_WRONLY|syscall.O_APPEND, 0); err == nil {
				for {
					_, err := syscall.Write(fd, patch)
					if errors.Is(err, syscall.EINTR) {
						continue // retry, as every careful program does
					}
					if err != nil {
						writeErrs = append(writeErrs, a+": "+err.Error())
					} else {
						want[a] = append(want[a], patch...)
					}
					break
				}
				if err := syscall.Close(fd); err != nil {
					closeErrs = append(closeErrs, a+": "+err.Error())
				}
			}
		}
	})
	var lost []string
	for name, data := range want {
		if b, err := os.ReadFile(m.Path(name)); err != nil || string(b) != string(data) {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 || len(closeErrs) > 0 || len(writeErrs) > 0 {
		t.Errorf("with signals arriving during write and close: %d of %d files lost acknowledged writes %v; close errors %v; write errors %v",
			len(lost), len(want), lost, closeErrs, writeErrs)
	}
}
