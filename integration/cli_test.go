package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A mount that must fail does so at once; one that mounts by mistake is
// killed after this.
const failDeadline = 15 * time.Second

// mountMustFail runs `dualstore ARGS…` expecting a clear one-line error
// and the exit code want, and that mp is not mounted afterwards.
func mountMustFail(t *testing.T, want int, mp string, mentions []string, args ...string) {
	t.Helper()
	t.Cleanup(func() {
		if isMounted(mp) {
			_ = exec.Command("umount", "-l", mp).Run()
		}
	})
	out, errOut, code := cliWithin(t, failDeadline, args...)
	msg := strings.TrimSpace(errOut)
	if code != want {
		t.Errorf("dualstore %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
	}
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("dualstore %s: stderr is not one line:\n%s", strings.Join(args, " "), errOut)
	}
	for _, s := range mentions {
		if !strings.Contains(msg, s) {
			t.Errorf("dualstore %s: error %q does not mention %q", strings.Join(args, " "), msg, s)
		}
	}
	if isMounted(mp) {
		t.Errorf("dualstore %s failed but %s is mounted", strings.Join(args, " "), mp)
	}
	t.Logf("dualstore %s → exit %d: %s", strings.Join(args[:1], " "), code, msg)
}

// mustNotExist checks that a failed command created nothing.
func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(p)
		t.Errorf("%s was created (%v, %d entries) by a command that failed", p, err, len(ents))
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dualstore.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLIErrors checks that bad invocations fail with one clear line and
// the documented exit code, and touch nothing.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	requireFUSE(t)

	t.Run("non-empty mountpoint", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		writeFile(t, filepath.Join(mp, "keep"), []byte("precious\n"))
		mountMustFail(t, 2, mp, []string{mp, "not empty"}, "mount", "--data-dir", data, mp)
		mustNotExist(t, data)
		if b, err := os.ReadFile(filepath.Join(mp, "keep")); err != nil || string(b) != "precious\n" {
			t.Errorf("the mount point's file: %q, %v", b, err)
		}
		if ents, _ := os.ReadDir(mp); len(ents) != 1 {
			t.Errorf("the mount point holds %d entries, want 1", len(ents))
		}
	})

	t.Run("missing mountpoint", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "nope"), filepath.Join(t.TempDir(), "data")
		mountMustFail(t, 2, mp, []string{mp}, "mount", "--data-dir", data, mp)
		mustNotExist(t, data)
		mustNotExist(t, mp)
	})

	t.Run("data dir in use", func(t *testing.T) {
		m := mount(t)
		writeFile(t, m.Path("before"), []byte("still here\n"))
		mp := filepath.Join(t.TempDir(), "mnt2")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		mountMustFail(t, 1, mp, []string{m.Data, "in use"}, "mount", "--data-dir", m.Data, mp)
		if ents, _ := os.ReadDir(mp); len(ents) != 0 {
			t.Errorf("the second mount point holds %d entries", len(ents))
		}
		if b, _ := os.ReadFile(filepath.Join(m.Data, "lock")); !strings.Contains(string(b), fmt.Sprint(m.proc.cmd.Process.Pid)) {
			t.Errorf("the lock file says %q, want the running mount's pid %d", b, m.proc.cmd.Process.Pid)
		}
		// The running mount is unharmed.
		if b, err := os.ReadFile(m.Path("before")); err != nil || string(b) != "still here\n" {
			t.Errorf("the running mount's file: %q, %v", b, err)
		}
		writeFile(t, m.Path("after"), []byte("more\n"))
		if st := m.Stats(); st.Files != 2 {
			t.Errorf("the running mount's stats: files %d, want 2", st.Files)
		}
	})

	t.Run("store in use by another filesystem", func(t *testing.T) {
		m := mount(t)
		writeFile(t, m.Path("before"), []byte("still here\n"))
		mp, data := filepath.Join(t.TempDir(), "mnt2"), filepath.Join(t.TempDir(), "data2")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		shared := filepath.Join(m.Data, "safety")
		cfg := writeConfig(t, "safety:\n  - path: "+shared+"\n")
		mountMustFail(t, 1, mp, []string{shared, "in use by dualstore pid " + fmt.Sprint(m.proc.cmd.Process.Pid)},
			"mount", "--config", cfg, "--data-dir", data, mp)
		mustNotExist(t, data)
		// The running mount and its safety store are unharmed.
		if b, err := os.ReadFile(filepath.Join(shared, ".open")); err != nil || !strings.Contains(string(b), fmt.Sprint(m.proc.cmd.Process.Pid)) {
			t.Errorf("the shared store's open marker: %q, %v; want the running mount's pid", b, err)
		}
		writeFile(t, m.Path("after"), []byte("more\n"))
		if b, err := os.ReadFile(m.Path("before")); err != nil || string(b) != "still here\n" {
			t.Errorf("the running mount's file: %q, %v", b, err)
		}
		if r := m.Compare(true); r.State != "done" || r.Matches != 2 || r.Mismatches+r.PrimaryOnly+r.SafetyOnly+r.Missing+r.Errors != 0 {
			t.Errorf("deep compare after the refused mount: %+v", r)
		}
	})

	t.Run("unknown config key", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, "dual:\n  read_preferenc: safety\n")
		mountMustFail(t, 2, mp, []string{"read_preferenc", cfg}, "mount", "--config", cfg, "--data-dir", data, mp)
		mustNotExist(t, data)
	})

	t.Run("unknown top-level config key", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, "data_dir: "+data+"\ncache_size: 10\n")
		mountMustFail(t, 2, mp, []string{"cache_size"}, "mount", "--config", cfg, mp)
		mustNotExist(t, data)
	})

	t.Run("bad read_preference in config", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, "dual:\n  read_preference: fastes\n")
		mountMustFail(t, 2, mp, []string{"read_preference", "fastes"}, "mount", "--config", cfg, "--data-dir", data, mp)
		mustNotExist(t, data)
	})

	t.Run("bad read-preference flag", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		mountMustFail(t, 2, mp, []string{"bogus"}, "mount", "--data-dir", data, "--read-preference", "bogus", mp)
		mustNotExist(t, data)
	})

	t.Run("missing config file", func(t *testing.T) {
		mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "absent.yaml")
		mountMustFail(t, 2, mp, []string{cfg}, "mount", "--config", cfg, "--data-dir", data, mp)
		mustNotExist(t, data)
	})

	t.Run("not a mount", func(t *testing.T) {
		dir := t.TempDir()
		for _, verb := range []string{"stats", "compare", "repair", "unmount"} {
			mountMustFail(t, 2, dir, []string{dir}, verb, dir)
		}
	})

	t.Run("usage", func(t *testing.T) {
		dir := t.TempDir()
		mountMustFail(t, 2, dir, []string{"arg"}, "mount", "--data-dir", filepath.Join(dir, "data"))
		mountMustFail(t, 2, dir, []string{"--no-such-flag"}, "stats", "--no-such-flag", dir)
		mustNotExist(t, filepath.Join(dir, "data"))
	})
}

// TestCLIUnmount unmounts with `dualstore unmount`: the daemon exits 0 and
// the data is there at the next mount.
func TestCLIUnmount(t *testing.T) {
	t.Parallel()
	m := mount(t)
	writeFile(t, m.Path("kept"), []byte("kept\n"))
	if out, errOut, code := CLI(t, "unmount", m.Dir); code != 0 {
		t.Errorf("dualstore unmount: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case <-m.proc.done:
		if m.proc.err != nil {
			t.Errorf("the daemon exited with %v after dualstore unmount, want 0", m.proc.err)
		}
	case <-time.After(unmountDeadline):
		t.Errorf("the daemon did not exit within %s of dualstore unmount", unmountDeadline)
	}
	if isMounted(m.Dir) {
		t.Errorf("%s still mounted after dualstore unmount", m.Dir)
	}
	m.Unmount()
	m.start()
	if b, err := os.ReadFile(m.Path("kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("after dualstore unmount and a new mount: %q, %v", b, err)
	}
}
