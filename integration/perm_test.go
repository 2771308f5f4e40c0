package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Unprivileged users for the permission tests. They need no passwd entry:
// the kernel checks numbers.
const (
	permNobody = 65534 // nobody:nogroup
	permOther  = 54321 // a second user in its own group
)

// permAs runs a shell script as uid:gid (no supplementary groups) in dir
// and returns its combined output and error.
func permAs(t *testing.T, uid, gid uint32, dir, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// permMust runs a script as uid:gid that must succeed, and returns its
// output.
func permMust(t *testing.T, uid, gid uint32, dir, script string) string {
	t.Helper()
	out, err := permAs(t, uid, gid, dir, script)
	if err != nil {
		t.Fatalf("as uid %d in %s: sh -c %q: %v\n%s", uid, dir, script, err, out)
	}
	return out
}

// permDenied runs a script as uid:gid that must fail with the message of
// errno want ("Permission denied" for EACCES, "Operation not permitted"
// for EPERM).
func permDenied(t *testing.T, uid, gid uint32, dir, script string, want syscall.Errno) {
	t.Helper()
	out, err := permAs(t, uid, gid, dir, script)
	if err == nil {
		t.Errorf("as uid %d: %q succeeded, want %v\n%s", uid, script, want, out)
		return
	}
	if !strings.Contains(out, want.Error()) && !strings.Contains(strings.ToLower(out), strings.ToLower(want.Error())) {
		t.Errorf("as uid %d: %q failed with %q, want %q", uid, script, out, want.Error())
	}
}

// permTraversable lets every user walk (not list) from / down to the
// mount point: t.TempDir() makes 0700 directories.
func permTraversable(t *testing.T, mnt string) {
	t.Helper()
	for d := filepath.Dir(mnt); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// permMountOptions returns the options /proc/mounts shows for mnt.
func permMountOptions(t *testing.T, mnt string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && unescapeMount(f[1]) == mnt {
			return f[3]
		}
	}
	t.Fatalf("%s is not in /proc/mounts", mnt)
	return ""
}

// TestPermNoAllowOther checks the default: only the user who mounted
// (root here) gets in; everyone else gets EACCES, even for the control
// files.
func TestPermNoAllowOther(t *testing.T) {
	t.Parallel()
	m := mount(t)
	permTraversable(t, m.Dir)
	writeFile(t, m.Path("open"), []byte("world-readable\n"))
	if err := os.Chmod(m.Path("open"), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts := permMountOptions(t, m.Dir); strings.Contains(opts, "allow_other") || !strings.Contains(opts, "default_permissions") {
		t.Errorf("mount options %q: want default_permissions and no allow_other", opts)
	}
	for _, script := range []string{"stat M", "ls M", "cat M/open", "cat M/.dualstore/stats", "echo compare > M/.dualstore/ctl", "touch M/new"} {
		permDenied(t, permNobody, permNobody, "/", strings.ReplaceAll(script, "M", m.Dir), syscall.EACCES)
	}
	if _, err := os.Lstat(m.Path("new")); !os.IsNotExist(err) {
		t.Errorf("a denied user created a file: %v", err)
	}
	if r := m.Report(); r.State != "idle" {
		t.Errorf("a denied user's ctl write started %s", r.State)
	}
}

// TestPermAllowOther mounts with --allow-other and checks that the
// kernel enforces the stored modes and owners (default_permissions) for
// other users: reading, writing, listing, umask applied exactly once,
// mode 0000, sticky directories, set-group-ID directories, chmod/chown by
// non-owners, set-user-ID cleared by another user's write, and the
// control files.
func TestPermAllowOther(t *testing.T) {
	t.Parallel()
	m := mount(t, withArgs("--allow-other"))
	permTraversable(t, m.Dir)
	if opts := permMountOptions(t, m.Dir); !strings.Contains(opts, "allow_other") || !strings.Contains(opts, "default_permissions") {
		t.Fatalf("mounted with --allow-other: options %q, want allow_other and default_permissions", opts)
	}
	const nob, oth = permNobody, permOther

	t.Run("others' files", func(t *testing.T) {
		m := m.For(t)
		writeFile(t, m.Path("pub"), []byte("public\n"))
		writeFile(t, m.Path("secret"), []byte("root only\n"))
		if err := os.Chmod(m.Path("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(m.Path("private"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, m.Path("private", "inner"), []byte("inner\n"))
		if err := os.Chmod(m.Path("private", "inner"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := permMust(t, nob, nob, m.Dir, "cat pub"); out != "public" {
			t.Errorf("nobody reading a 0644 file: %q", out)
		}
		permDenied(t, nob, nob, m.Dir, "cat secret", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "ls private", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "cat private/inner", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "echo x >> pub", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "touch newfile", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "rm -f pub", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "mv pub pub2", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "mkdir d", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "ln -s pub sl", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "chmod 666 pub", syscall.EPERM)
		permDenied(t, nob, nob, m.Dir, "chown 65534 pub", syscall.EPERM)
		permDenied(t, nob, nob, m.Dir, "truncate -s 0 pub", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "setfattr -n user.x -v y pub", syscall.EACCES)
		for p, want := range map[string]string{"pub": "public\n", "secret": "root only\n"} {
			if b, err := os.ReadFile(m.Path(p)); err != nil || string(b) != want {
				t.Errorf("%s after the denied attempts: %q, %v", p, b, err)
			}
		}
		for _, p := range []string{"newfile", "pub2", "d", "sl"} {
			if _, err := os.Lstat(m.Path(p)); !os.IsNotExist(err) {
				t.Errorf("%s exists after a denied attempt: %v", p, err)
			}
		}
	})

	t.Run("umask once", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("umask")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		// The kernel applies the caller's umask; the daemon (whose own
		// umask is the test's, 022) must not apply anything more.
		for umask, want := range map[string]string{"000": "666 777", "022": "644 755", "077": "600 700", "027": "640 750"} {
			script := "umask " + umask + " && touch f" + umask + " && mkdir d" + umask + " && stat -c %a f" + umask + " d" + umask + " | tr '\\n' ' '"
			if got := strings.TrimSpace(permMust(t, nob, nob, dir, script)); got != want {
				t.Errorf("as nobody with umask %s: file and dir modes %q, want %q", umask, got, want)
			}
		}
		if out := permMust(t, nob, nob, dir, "stat -c '%u:%g' f000 d000 | tr '\\n' ' '"); strings.TrimSpace(out) != "65534:65534 65534:65534" {
			t.Errorf("owner of what nobody created: %q, want 65534:65534", out)
		}
	})

	t.Run("mode 0000", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("zero")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		permMust(t, nob, nob, dir, "umask 0 && echo mine > z && chmod 000 z")
		fd, err := syscall.Open(filepath.Join(dir, "created0"), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_EXCL, 0)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		if err := os.Mkdir(filepath.Join(dir, "dir0"), 0); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"z", "created0", "dir0"} {
			st, err := os.Lstat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if perm := st.Mode().Perm(); perm != 0 {
				t.Errorf("%s: mode %o, want 0000 (it must stay null)", p, perm)
			}
		}
		// Nobody owns z but cannot read it; root can (as on any
		// filesystem); nobody may chmod it back.
		permDenied(t, nob, nob, dir, "cat z", syscall.EACCES)
		permDenied(t, oth, oth, dir, "cat z", syscall.EACCES)
		if b, err := os.ReadFile(filepath.Join(dir, "z")); err != nil || string(b) != "mine\n" {
			t.Errorf("root reading a 0000 file: %q, %v", b, err)
		}
		if out := permMust(t, nob, nob, dir, "chmod 600 z && cat z"); out != "mine" {
			t.Errorf("nobody after chmod 600 of its own file: %q", out)
		}
	})

	t.Run("sticky directory", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("tmp")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(dir, 0o1777); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(dir); err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
			t.Fatalf("chmod 1777: mode %v, %v", st.Mode(), err)
		}
		permMust(t, nob, nob, dir, "echo nobody > nf && chmod 666 nf")
		permMust(t, oth, oth, dir, "echo other > of")
		// The other user may write nobody's 0666 file, but not remove or
		// rename it, nor rename over it.
		permMust(t, oth, oth, dir, "echo appended >> nf")
		permDenied(t, oth, oth, dir, "rm -f nf", syscall.EPERM)
		permDenied(t, oth, oth, dir, "mv nf stolen", syscall.EPERM)
		permDenied(t, oth, oth, dir, "mv -f of nf", syscall.EPERM)
		permDenied(t, nob, nob, dir, "rm -f of", syscall.EPERM)
		if out := permMust(t, nob, nob, dir, "cat nf"); out != "nobody\nappended" {
			t.Errorf("nf after the denied attempts: %q", out)
		}
		// Owners remove their own; root removes anything.
		permMust(t, nob, nob, dir, "mv nf nf2 && rm nf2")
		if err := os.Remove(filepath.Join(dir, "of")); err != nil {
			t.Errorf("root removing another user's file from a sticky directory: %v", err)
		}
	})

	t.Run("setgid directory", func(t *testing.T) {
		m := m.For(t)
		dir := m.Path("shared")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 0, 4242); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(dir, 0o2777); err != nil {
			t.Fatal(err)
		}
		out := permMust(t, nob, nob, dir, "umask 022 && touch f && mkdir d && stat -c '%g %a' f d | tr '\\n' ' '")
		if strings.TrimSpace(out) != "4242 644 4242 2755" {
			t.Errorf("in a set-group-ID directory of group 4242, nobody created f and d as %q, want \"4242 644 4242 2755\"", out)
		}
	})

	t.Run("set-user-ID cleared", func(t *testing.T) {
		m := m.For(t)
		p := m.Path("suid")
		writeFile(t, p, []byte("#!/bin/sh\n"))
		if err := syscall.Chmod(p, 0o4777); err != nil {
			t.Fatal(err)
		}
		permMust(t, nob, nob, m.Dir, "echo '# changed' >> suid")
		if st, err := os.Stat(p); err != nil || st.Mode()&os.ModeSetuid != 0 {
			t.Errorf("a root set-user-ID file written by nobody: mode %v, %v; want set-user-ID cleared", st.Mode(), err)
		}
		if err := syscall.Chmod(p, 0o4777); err != nil {
			t.Fatal(err)
		}
		permMust(t, nob, nob, m.Dir, "truncate -s 3 suid")
		if st, err := os.Stat(p); err != nil || st.Mode()&os.ModeSetuid != 0 {
			t.Errorf("a root set-user-ID file truncated by nobody: mode %v, %v; want set-user-ID cleared", st.Mode(), err)
		}
	})

	t.Run("control files", func(t *testing.T) {
		m := m.For(t)
		permDenied(t, nob, nob, m.Dir, "echo compare > .dualstore/ctl", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "echo stop > .dualstore/ctl", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "cat .dualstore/ctl", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "echo x > .dualstore/stats", syscall.EACCES)
		permDenied(t, nob, nob, m.Dir, "chmod 666 .dualstore/ctl", syscall.EPERM)
		permDenied(t, nob, nob, m.Dir, "touch .dualstore/new", syscall.EACCES)
		if r := m.Report(); r.State != "idle" {
			t.Errorf("after nobody's ctl writes: compare state %s, want idle", r.State)
		}
		// The read-only documents are world-readable (0444).
		if out := permMust(t, nob, nob, m.Dir, "cat .dualstore/stats"); !strings.Contains(out, "uptime_seconds") {
			t.Errorf("nobody reading stats: %q", truncate(out, 200))
		}
		// Root, who owns the mount, still can.
		if err := m.Ctl("read-preference safety"); err != nil {
			t.Errorf("root writing ctl: %v", err)
		}
		if err := m.Ctl("read-preference primary"); err != nil {
			t.Errorf("root writing ctl: %v", err)
		}
	})
}
