package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Running it for real: `mount --daemon`, the fstab helper, systemd's
// sd_notify, and the log file that SIGHUP reopens. A daemon started in the
// background is not a child of the test: it is found by the pid the data
// dir's lock names, and every test makes sure it is gone (unmounted,
// else killed) before it ends.

// lockHolder is the pid the data dir's lock file names: "the mount at
// MNT (dualstore pid N)".
var lockHolder = regexp.MustCompile(`\(dualstore pid (\d+)\)`)

// daemonPID returns the pid of the daemon holding dataDir.
func daemonPID(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "lock"))
	if err != nil {
		t.Fatalf("the data dir's lock: %v", err)
	}
	m := lockHolder.FindSubmatch(b)
	if m == nil {
		t.Fatalf("the data dir's lock names no daemon: %q", b)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// dataDirFree reports whether no process holds dataDir's lock (the
// daemon closed everything: exited, or as good as, a zombie nobody
// reaps holding nothing).
func dataDirFree(dataDir string) error {
	f, err := os.OpenFile(filepath.Join(dataDir, "lock"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%s is still locked: %w", dataDir, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// cleanupBackground makes sure a background daemon of the test on mnt
// with dataDir is gone when the test ends: unmounted if still mounted
// (then it exits by itself), killed past the deadline.
func cleanupBackground(t *testing.T, mnt, dataDir string) {
	t.Cleanup(func() {
		if isMounted(mnt) {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Logf("umount %s: %v %s: detaching it", mnt, err, out)
				_ = exec.Command("umount", "-l", mnt).Run()
			}
		}
		if _, err := os.Stat(filepath.Join(dataDir, "lock")); err != nil {
			return
		}
		if err := waitFor(unmountDeadline, func() error { return dataDirFree(dataDir) }); err != nil {
			pid := daemonPID(t, dataDir)
			t.Errorf("the background daemon (pid %d) did not exit after its unmount: %v; killing it", pid, err)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// answers checks, with a deadline, that the mount at mnt answers (a
// stat of its stats file that hangs means a mount that does not).
func answers(t *testing.T, mnt string) {
	t.Helper()
	probe := make(chan error, 1)
	go func() { _, err := os.Stat(filepath.Join(mnt, ".dualstore", "stats")); probe <- err }()
	select {
	case err := <-probe:
		if err != nil {
			t.Fatalf("the mount at %s does not answer: %v", mnt, err)
		}
	case <-time.After(mountDeadline):
		t.Fatalf("stat in %s hung for %s", mnt, mountDeadline)
	}
}

// TestDaemonMount: `mount --daemon` returns once the mount answers (no
// polling here: the first stat after it returns must work), says where
// the daemon is, forwards what the daemon wrote until then, and keeps
// logging to a journald stderr afterwards; `umount` ends it and loses
// nothing. Errors reach the caller with the foreground's exit codes: a
// bad config 2, a mount that fails 1, nothing mounted either way.
func TestDaemonMount(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	tmp := t.TempDir()
	mnt, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cleanupBackground(t, mnt, data)

	// stderr is a file, which JOURNAL_STREAM names as journald's stream
	// would be named: the daemon keeps it after readiness.
	errPath := filepath.Join(tmp, "stderr")
	errFile, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(errFile.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mount", "--daemon", "--data-dir", data, "--log-level", "info", mnt)
	cmd.Stdout, cmd.Stderr = errFile, errFile
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	start := time.Now()
	if err := runWithin(cmd, mountDeadline); err != nil {
		b, _ := os.ReadFile(errPath)
		t.Fatalf("mount --daemon: %v\n%s", err, b)
	}
	t.Logf("mount --daemon returned after %s", time.Since(start).Round(time.Millisecond))
	answers(t, mnt)
	if !isMounted(mnt) {
		t.Fatalf("%s is not in /proc/mounts after mount --daemon returned", mnt)
	}
	pid := daemonPID(t, data)
	out, _ := os.ReadFile(errPath)
	if want := fmt.Sprintf("dualstore: mounted %s (data dir %s) in the background, pid %d", mnt, data, pid); !strings.Contains(string(out), want) {
		t.Errorf("mount --daemon's stderr does not say %q:\n%s", want, out)
	}
	if !strings.Contains(string(out), `"message":"index created"`) {
		t.Errorf("the daemon's log before readiness did not reach mount --daemon's stderr:\n%s", out)
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != "/" {
		t.Errorf("the daemon's working directory is %q (%v), want / (it would keep another filesystem busy)", cwd, err)
	}

	data1 := randBytes(1701, 3<<20)
	writeFile(t, filepath.Join(mnt, "photos", "a.jpg"), data1)
	// After readiness the daemon logs to the journal, here the file.
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(actionDeadline, func() error {
		b, _ := os.ReadFile(errPath)
		if !strings.Contains(string(b), "SIGHUP: no log file to reopen") {
			return errors.New("no SIGHUP line in the journal stream")
		}
		return nil
	}); err != nil {
		t.Errorf("the daemon's log after readiness: %v", err)
	}
	if !isMounted(mnt) {
		t.Fatalf("SIGHUP ended the mount")
	}

	// umount(8) ends the daemon, and the file is there after a new
	// mount (in the foreground, the suite's own).
	runTool(t, "umount", mnt)
	if err := waitFor(unmountDeadline, func() error { return dataDirFree(data) }); err != nil {
		t.Fatalf("the daemon did not exit after umount: %v", err)
	}
	m := mount(t, withData(data))
	if b, err := os.ReadFile(m.Path("photos", "a.jpg")); err != nil || string(b) != string(data1) {
		t.Errorf("after umount and a new mount: %d bytes, %v; want the %d written", len(b), err, len(data1))
	}

	// Errors, with a foreground mount holding the data dir.
	t.Run("errors", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(other, 0o755); err != nil {
			t.Fatal(err)
		}
		bad := writeConfig(t, "data_dir: "+data+"\nmount:\n  cache_mb: -3\n")
		mountMustFail(t, 2, other, []string{"mount.cache_mb"}, "mount", "--daemon", "--config", bad, other)
		mountMustFail(t, 1, other, []string{"data dir " + data + " is in use"}, "mount", "--daemon", "--data-dir", data, other)
		writeFile(t, filepath.Join(other, "x"), []byte("x"))
		mountMustFail(t, 2, other, []string{"not empty"}, "mount", "--daemon", "--data-dir", filepath.Join(t.TempDir(), "d"), other)
	})
}

// runWithin runs cmd, killing it past deadline.
func runWithin(cmd *exec.Cmd, deadline time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(deadline):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not return within %s", deadline)
	}
}

// TestDaemonDiesBeforeReady: a daemon that dies before its mount is
// ready (here SIGKILLed while its S3 store does not answer) makes `mount
// --daemon` fail, exit 1, saying so, with nothing mounted.
func TestDaemonDiesBeforeReady(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	// An S3 endpoint that accepts connections and never answers: the
	// daemon waits in its first request, long before the kernel mount.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("data_dir: %s/data\nsafety:\n  - type: s3\n    endpoint: http://%s\n    bucket: never-answers\n    region: us-east-1\n    access_key: a\n    secret_key: b\n    timeout: 10m\n", tmp, ln.Addr()))
	cmd := exec.Command(bin, "mount", "--daemon", "--config", cfg, mnt)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var child int
	if err := waitFor(mountDeadline, func() error {
		child = backgroundProcess(cmd.Process.Pid, cfg)
		if child == 0 {
			return errors.New("no background process yet")
		}
		return nil
	}); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("the background process of mount --daemon: %v", err)
	}
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var werr error
	select {
	case werr = <-done:
	case <-time.After(failDeadline):
		_ = cmd.Process.Kill()
		t.Fatalf("mount --daemon did not return within %s of its background process's death", failDeadline)
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
		t.Errorf("mount --daemon after its background process died: %v, want exit 1", werr)
	}
	want := fmt.Sprintf("background mount process (pid %d) ended before the mount was ready: signal: killed", child)
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("mount --daemon's stderr does not say %q:\n%s", want, stderr.String())
	}
	noMountLeft(t, mnt, "the background process's death")
}

// backgroundProcess finds the process started by parent whose command
// line names cfg (the background process of `mount --daemon`), or 0.
func backgroundProcess(parent int, cfg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == parent {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(b), cfg) {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "DUALSTORE_DAEMON=") {
			return pid
		}
	}
	return 0
}

// TestSystemdNotify: as systemd's Type=notify service, the foreground
// mount says READY=1 once the mount point answers and STOPPING=1 when
// SIGTERM (systemctl stop, shutdown) unmounts it; the daemon exits 0,
// the mount is gone, and everything written is there after a new mount.
// The test is systemd: NOTIFY_SOCKET names a datagram socket it reads.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	sock, msgs := listenNotify(t)
	// next waits for a message holding want, from the mount, failing on
	// anything else.
	var d *daemon
	next := func(want string) {
		t.Helper()
		select {
		case msg, ok := <-msgs:
			if !ok || !strings.Contains("\n"+msg.text+"\n", "\n"+want+"\n") || msg.pid != int32(d.cmd.Process.Pid) {
				t.Fatalf("sd_notify message %q from pid %d, want one with %s from the mount (pid %d)", msg.text, msg.pid, want, d.cmd.Process.Pid)
			}
		case <-time.After(mountDeadline):
			t.Fatalf("no sd_notify %s within %s", want, mountDeadline)
		}
	}

	tmp := t.TempDir()
	mnt, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mount", "--data-dir", data, mnt)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	d = startDaemonCmd(t, cmd)
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-d.done:
			case <-time.After(unmountDeadline):
				_ = exec.Command("umount", "-l", mnt).Run()
				_ = d.cmd.Process.Kill()
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", tailLog(d.stderr.String(), 100, 400))
		}
	})
	next("READY=1")
	answers(t, mnt)

	data1 := randBytes(1702, 2<<20)
	writeFile(t, filepath.Join(mnt, "kept"), data1)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("the daemon exited with %v after SIGTERM, want 0", d.err)
		}
	case <-time.After(unmountDeadline):
		t.Fatalf("the daemon did not exit within %s of SIGTERM", unmountDeadline)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted after SIGTERM", mnt)
	}
	m := mount(t, withData(data))
	if b, err := os.ReadFile(m.Path("kept")); err != nil || string(b) != string(data1) {
		t.Errorf("after SIGTERM and a new mount: %d bytes, %v; want the %d written", len(b), err, len(data1))
	}
}

// TestLogFileReopen: with log_file set, the mount logs there; after
// logrotate's move and `kill -HUP`, the next lines go to a new file at
// the path and the moved one gets no more.
func TestLogFileReopen(t *testing.T) {
	t.Parallel()
	logs := t.TempDir()
	path := filepath.Join(logs, "dualstore.log")
	m := mount(t, withConfig("log_level: info\nlog_file: "+path+"\n"))
	has := func(p, what string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), what) {
			return fmt.Errorf("%s does not have %q yet:\n%s", p, what, b)
		}
		return nil
	}
	if err := waitFor(actionDeadline, func() error { return has(path, `"message":"mounted"`) }); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Logs(), `"level"`) {
		t.Errorf("with a log file, stderr has log lines:\n%s", m.Logs())
	}
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := m.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(actionDeadline, func() error { return has(path, "SIGHUP: reopened the log file") }); err != nil {
		t.Fatalf("after the move and SIGHUP: %v", err)
	}
	writeFile(t, m.Path("still-mounted"), []byte("yes\n"))
	m.Unmount()
	if err := has(path, `"message":"unmounting"`); err != nil {
		t.Errorf("the unmount's log line is not in the new file: %v", err)
	}
	b, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"message":"mounted"`) || strings.Contains(string(b), "reopened") || strings.Contains(string(b), "unmounting") {
		t.Errorf("the moved log file should end before the SIGHUP:\n%s", b)
	}
}

// helperPath is where mount(8) looks for the helper of type
// fuse.dualstore (libmount's search path starts with /sbin).
const helperPath = "/sbin/mount.fuse.dualstore"

// installHelper makes /sbin/mount.fuse.dualstore the binary under test,
// as the README's install step does, for the test's duration. It is
// created ONLY if no such file exists (and removed at the end only if it
// is still the test's link): a helper installed on this machine is never
// replaced. Another one there skips the test (fails it in CI, whose
// machine should have none).
func installHelper(t *testing.T) {
	t.Helper()
	if target, err := os.Readlink(helperPath); err == nil && target == bin {
		t.Fatalf("%s already points at the binary under test: left behind by an interrupted run? Remove it and run again", helperPath)
	} else if _, err := os.Lstat(helperPath); err == nil {
		if inCI {
			t.Fatalf("CI=true and %s exists already (not the binary under test): the fstab test would not test this build", helperPath)
		}
		t.Skipf("SKIP: %s exists already and is not the binary under test; this test does not replace it", helperPath)
	}
	if err := os.Symlink(bin, helperPath); err != nil {
		t.Fatalf("installing the mount helper: %v", err)
	}
	t.Cleanup(func() {
		if target, err := os.Readlink(helperPath); err == nil && target == bin {
			if err := os.Remove(helperPath); err != nil {
				t.Errorf("removing %s: %v", helperPath, err)
			}
		}
	})
}

// TestFstabMountAll: an fstab line of type fuse.dualstore mounts with
// `mount -a` (a test fstab, mount -T), which returns once the mount
// answers; a second `mount -a` sees it mounted; `umount` ends the daemon
// and loses nothing, without an fsync: the unmount commits. A line with
// an option dualstore cannot honour fails, naming it, mounting nothing.
func TestFstabMountAll(t *testing.T) {
	requireFUSE(t)
	needTool(t, "mount", "mount")
	installHelper(t)
	tmp := t.TempDir()
	mnt, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "data_dir: "+data+"\n")
	fstab := filepath.Join(tmp, "fstab")
	line := fmt.Sprintf("%s %s fuse.dualstore allow_other,_netdev,nofail,x-systemd.requires=network-online.target,cache_mb=32,comment=test 0 0\n", cfg, mnt)
	writeFile(t, fstab, []byte("# a test fstab\n"+line))
	cleanupBackground(t, mnt, data)

	runTool(t, "mount", "-T", fstab, "-a")
	answers(t, mnt)
	b, _ := os.ReadFile("/proc/mounts")
	var entry string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 3 && unescapeMount(f[1]) == mnt {
			entry = l
		}
	}
	if f := strings.Fields(entry); len(f) < 4 || unescapeMount(f[0]) != cfg || f[2] != "fuse.dualstore" || !strings.Contains(f[3], "allow_other") {
		t.Errorf("/proc/mounts: %q, want source %s, type fuse.dualstore, allow_other", entry, cfg)
	}
	pid := daemonPID(t, data)
	data1 := randBytes(1703, 3<<20)
	writeFile(t, filepath.Join(mnt, "docs", "report.pdf"), data1)

	if out := runTool(t, "mount", "-T", fstab, "-a", "-v"); !strings.Contains(out, "already mounted") {
		t.Errorf("a second mount -a: %q, want it to see the line mounted", out)
	}
	if again := daemonPID(t, data); again != pid {
		t.Errorf("the daemon is pid %d after a second mount -a, was %d", again, pid)
	}

	runTool(t, "umount", mnt)
	if err := waitFor(unmountDeadline, func() error { return dataDirFree(data) }); err != nil {
		t.Fatalf("the daemon did not exit after umount: %v", err)
	}
	m := mount(t, withData(data))
	if b, err := os.ReadFile(m.Path("docs", "report.pdf")); err != nil || string(b) != string(data1) {
		t.Errorf("after umount and a new mount: %d bytes, %v; want the %d written", len(b), err, len(data1))
	}
	m.Unmount()

	// A ro line mounts read-only. mount(8) run with NOTIFY_SOCKET set (by
	// some unit's ExecStartPre) does not speak for that unit: neither the
	// helper nor its daemon sends sd_notify messages.
	t.Run("ro", func(t *testing.T) {
		sock, msgs := listenNotify(t)
		fstab := filepath.Join(t.TempDir(), "fstab")
		writeFile(t, fstab, []byte(fmt.Sprintf("%s %s fuse.dualstore ro,nofail 0 0\n", cfg, mnt)))
		cmd := exec.Command("mount", "-T", fstab, "-a")
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mount -a: %v\n%s", err, out)
		}
		defer func() {
			runTool(t, "umount", mnt)
			if err := waitFor(unmountDeadline, func() error { return dataDirFree(data) }); err != nil {
				t.Fatalf("the daemon did not exit after umount: %v", err)
			}
			select {
			case m := <-msgs:
				t.Errorf("mount -a sent sd_notify %q (pid %d)", m.text, m.pid)
			case <-time.After(100 * time.Millisecond):
			}
		}()
		if b, err := os.ReadFile(filepath.Join(mnt, "docs", "report.pdf")); err != nil || string(b) != string(data1) {
			t.Errorf("through the ro mount: %d bytes, %v; want the %d written", len(b), err, len(data1))
		}
		if out := toolFails(t, "touch", filepath.Join(mnt, "new")); !strings.Contains(out, "Read-only file system") {
			t.Errorf("touch on the ro mount: %q, want EROFS", out)
		}
	})

	t.Run("refused options", func(t *testing.T) {
		for _, tc := range []struct{ opts, want string }{
			{"allow_other,bogus_opt=1", "unknown option bogus_opt=1"},
		} {
			fstab := filepath.Join(t.TempDir(), "fstab")
			writeFile(t, fstab, []byte(fmt.Sprintf("%s %s fuse.dualstore %s 0 0\n", cfg, mnt, tc.opts)))
			out := toolFails(t, "mount", "-T", fstab, "-a")
			if !strings.Contains(out, "mount.fuse.dualstore: "+tc.want) {
				t.Errorf("mount -a of a line with %s: %q, want it to say %q", tc.opts, out, tc.want)
			}
			noMountLeft(t, mnt, "mount -a with "+tc.opts)
		}
	})
}

// notifyMsg is one sd_notify datagram and the pid that sent it.
type notifyMsg struct {
	pid  int32
	text string
}

// listenNotify is systemd's side of sd_notify: a datagram socket for
// NOTIFY_SOCKET that passes each sender's credentials, as systemd's does
// (NotifyAccess=main drops what does not come from the main pid).
func listenNotify(t *testing.T) (sock string, msgs <-chan notifyMsg) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	ch := make(chan notifyMsg, 16)
	go func() {
		defer close(ch)
		buf, oob := make([]byte, 4096), make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{pid: -1, text: string(buf[:n])}
			if cms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) > 0 {
				if cred, err := syscall.ParseUnixCredentials(&cms[0]); err == nil {
					m.pid = cred.Pid
				}
			}
			ch <- m
		}
	}()
	return sock, ch
}

// TestSystemdNotifyDaemon: `mount --daemon` under a Type=notify unit.
// The command systemd started (the main pid) says READY=1 once the mount
// answers, with MAINPID naming the background daemon, and exits; the
// daemon sends nothing before that (systemd would drop it), and says
// STOPPING=1 itself when SIGTERM unmounts it.
func TestSystemdNotifyDaemon(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	sock, msgs := listenNotify(t)
	tmp := t.TempDir()
	mnt, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cleanupBackground(t, mnt, data)
	cmd := exec.Command(bin, "mount", "--daemon", "--data-dir", data, mnt)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runWithin(cmd, mountDeadline); err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, stderr.String())
	}
	answers(t, mnt)
	pid := daemonPID(t, data)
	next := func(what string) notifyMsg {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the notify socket closed before %s", what)
			}
			return m
		case <-time.After(mountDeadline):
			t.Fatalf("no sd_notify message (%s) within %s", what, mountDeadline)
		}
		return notifyMsg{}
	}
	ready := next("READY=1")
	lines := "\n" + ready.text + "\n"
	if ready.pid != int32(cmd.Process.Pid) || !strings.Contains(lines, "\nREADY=1\n") ||
		!strings.Contains(lines, fmt.Sprintf("\nMAINPID=%d\n", pid)) || !strings.Contains(lines, "\nSTATUS=mounted "+mnt+"\n") {
		t.Fatalf("first message %q from pid %d; want READY=1, MAINPID=%d and the mount point, from the command (pid %d)",
			ready.text, ready.pid, pid, cmd.Process.Pid)
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stop := next("STOPPING=1")
	if stop.pid != int32(pid) || !strings.Contains("\n"+stop.text+"\n", "\nSTOPPING=1\n") {
		t.Fatalf("after SIGTERM: %q from pid %d, want STOPPING=1 from the daemon (pid %d)", stop.text, stop.pid, pid)
	}
	if err := waitFor(unmountDeadline, func() error { return dataDirFree(data) }); err != nil {
		t.Fatalf("the daemon did not exit after SIGTERM: %v", err)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted after SIGTERM", mnt)
	}
	select {
	case m, ok := <-msgs:
		if ok {
			t.Errorf("an unexpected sd_notify message %q from pid %d", m.text, m.pid)
		}
	default:
	}
}
