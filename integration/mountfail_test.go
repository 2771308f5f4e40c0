package integration

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A mount that fails, at whatever point, leaves no mount behind: the
// command exits non-zero with one line naming what failed, and the mount
// point is an empty directory again, not a dead mount answering ENOTCONN.

// inMountinfo reports whether /proc/self/mountinfo lists a mount on dir.
func inMountinfo(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == dir {
			return true
		}
	}
	return false
}

// noMountLeft checks that mp is neither mounted nor dead after what
// ("the failed mount").
func noMountLeft(t *testing.T, mp, what string) {
	t.Helper()
	if inMountinfo(t, mp) {
		t.Errorf("/proc/self/mountinfo lists %s after %s", mp, what)
		_ = exec.Command("umount", "-l", mp).Run()
	}
	if ents, err := os.ReadDir(mp); err != nil || len(ents) != 0 {
		t.Errorf("the mount point after %s: %d entries, %v; want an empty directory", what, len(ents), err)
	}
}

// TestMountFailsCleanly damages the index where the mount serves its
// first answers from: the pages of a table behind a valid header, the
// root inode's row. Today's main mounted these and then failed the
// kernel's first request, leaving the mount point dead; each is now
// refused before the kernel mount, naming the index, with nothing
// written.
func TestMountFailsCleanly(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	m := mount(t)
	for i := range 40 {
		writeFile(t, m.Path("dir", fmt.Sprintf("f%02d", i)), []byte(fmt.Sprintf("file %d\n", i)))
	}
	m.Unmount()
	golden := m.Data
	badSQL(t, filepath.Join(golden, "index.db"), "PRAGMA wal_checkpoint(TRUNCATE)")
	for _, s := range []string{"-wal", "-shm"} {
		if err := os.Remove(filepath.Join(golden, "index.db"+s)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	// garbagePages overwrites the pages of the tables and indexes named
	// (default page size 4096) with garbage; page 1 and the header table
	// stay valid.
	garbagePages := func(names ...string) func(t *testing.T, index string) {
		return func(t *testing.T, index string) {
			db, err := sql.Open("sqlite", index)
			if err != nil {
				t.Fatal(err)
			}
			var pages []int64
			for _, n := range names {
				var p int64
				if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", n).Scan(&p); err != nil {
					t.Fatal(err)
				}
				pages = append(pages, p)
			}
			db.Close()
			f, err := os.OpenFile(index, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range pages {
				if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5, 0x17, 0x00, 0xff}, 1024), (p-1)*4096); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	refusedMounts(t, golden, []indexDamage{
		{"garbage inodes pages", garbagePages("inodes"), []string{"quick check", "index corrupt"}},
		{"garbage pages", garbagePages("inodes", "dentries", "chunks", "file_chunks", "dentries_ino"), []string{"quick check"}},
		{"root inode missing", func(t *testing.T, index string) {
			badSQL(t, index, "DELETE FROM inodes WHERE ino = 1")
		}, []string{"root directory"}},
		{"root not a directory", func(t *testing.T, index string) {
			badSQL(t, index, "UPDATE inodes SET mode = 33188 WHERE ino = 1") // S_IFREG|0644
		}, []string{"root", "not a directory"}},
	})
}

// TestUnmountDeadMount: a daemon killed with SIGKILL (as a fatal runtime
// error would end it: Go runs no deferred function then) leaves its mount
// dead; `dualstore unmount` takes it down.
func TestUnmountDeadMount(t *testing.T) {
	t.Parallel()
	m := mount(t)
	d := m.proc
	m.proc = nil
	defer func() { m.logs = append(m.logs, d.stderr.String()) }()
	t.Cleanup(func() {
		if inMountinfo(t, m.Dir) {
			_ = exec.Command("umount", "-l", m.Dir).Run()
		}
	})
	// (mount waited for the daemon to say it mounted: see Mount.start.)
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(unmountDeadline):
		_ = syscall.Unmount(m.Dir, syscall.MNT_FORCE) // aborts the connection: the daemon can exit
		t.Fatalf("daemon pid %d survived SIGKILL", d.cmd.Process.Pid)
	}
	if _, err := os.ReadDir(m.Dir); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("the mount of a killed daemon: listing it: %v, want ENOTCONN", err)
	}
	// Found later, once the kernel's cached attributes are gone too:
	// then even the control files answer ENOTCONN.
	if err := waitFor(mountDeadline, func() error {
		if _, err := os.Stat(m.control("stats")); !errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("stat %s: %v, want ENOTCONN", m.control("stats"), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := CLI(t, "unmount", m.Dir); code != 0 {
		t.Errorf("dualstore unmount of a dead mount: exit %d\n%s%s", code, out, errOut)
	}
	noMountLeft(t, m.Dir, "`dualstore unmount`")
}
