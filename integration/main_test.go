package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Set once by TestMain, read-only afterwards.
var (
	// bin is the dualstore binary under test.
	bin string
	// tmpRoot holds every temp dir of the run (TMPDIR points here), so the
	// leak check knows which mounts are ours.
	tmpRoot string
	// noFUSE says why mounting cannot work here ("" when it can).
	noFUSE string
	// inCI is CI=true: missing prerequisites fail instead of skipping.
	inCI = os.Getenv("CI") == "true"
)

// daemons are the mount processes started by the run; TestMain kills any
// still running at the end and fails the run.
var daemons struct {
	mu   sync.Mutex
	live map[*daemon]string // daemon → test name
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	tmpRoot, err = os.MkdirTemp("", "dualstore-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	// t.TempDir() uses os.TempDir(), which reads TMPDIR: every test's temp
	// dirs (mount points, data dirs) land below tmpRoot.
	os.Setenv("TMPDIR", tmpRoot)
	daemons.live = map[*daemon]string{}

	noFUSE = checkFUSE()
	if noFUSE != "" {
		verdict := "SKIPPING every test that mounts"
		if inCI {
			verdict = "FAILING (CI=true)"
		}
		fmt.Fprintf(os.Stderr, "\n*** integration: %s: %s ***\n\n", verdict, noFUSE)
	}

	if bin, err = findBinary(); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.RemoveAll(tmpRoot)
		return 1
	}

	// A watchdog cleans up shortly before go test's -timeout panics (which
	// runs no t.Cleanup): it kills our daemons, which unblocks any test
	// stuck in the mount, and detaches the mounts.
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			margin := min(30*time.Second, d/10)
			w := time.AfterFunc(d-margin, func() {
				fmt.Fprintf(os.Stderr, "integration: -timeout %s is near: stopping every daemon and mount\n%s", d, stopLeftovers())
			})
			defer w.Stop()
		}
	}

	code := m.Run()

	if leaked := stopLeftovers(); leaked != "" {
		fmt.Fprintf(os.Stderr, "integration: FAIL: the run left things behind:\n%s", leaked)
		code = 1
	}
	if code == 0 || os.Getenv("DUALSTORE_KEEP") == "" {
		os.RemoveAll(tmpRoot)
	} else {
		fmt.Fprintf(os.Stderr, "integration: kept %s (DUALSTORE_KEEP set)\n", tmpRoot)
	}
	return code
}

// checkFUSE returns why this machine cannot mount, or "".
func checkFUSE() string {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "/dev/fuse is missing (" + err.Error() + ")"
	}
	if os.Geteuid() != 0 {
		return "not running as root (uid " + strconv.Itoa(os.Geteuid()) + "); the tests mount directly and inspect root-owned stores"
	}
	return ""
}

// requireFUSE skips (loudly) a test that needs to mount when the machine
// cannot, and fails it in CI.
func requireFUSE(t *testing.T) {
	t.Helper()
	if noFUSE == "" {
		return
	}
	if inCI {
		t.Fatalf("CI=true and this machine cannot mount: %s", noFUSE)
	}
	t.Skipf("SKIP (cannot mount here): %s — run as root with /dev/fuse, or set CI=true to make this fatal", noFUSE)
}

// findBinary returns DUALSTORE_BIN, or builds the binary once into
// tmpRoot.
func findBinary() (string, error) {
	if p := os.Getenv("DUALSTORE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			return "", fmt.Errorf("DUALSTORE_BIN=%s is not a binary (run `make build`): %v", p, err)
		}
		return abs, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			gobin = filepath.Join(root, "bin", "go")
		} else {
			return "", fmt.Errorf("DUALSTORE_BIN is unset and no go command to build it: %w", err)
		}
	}
	out := filepath.Join(tmpRoot, "bin", "dualstore")
	start := time.Now()
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/dualstore/dualstore/cmd/dualstore")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building dualstore: %v\n%s", err, b)
	}
	fmt.Fprintf(os.Stderr, "integration: built %s in %s (set DUALSTORE_BIN to skip)\n", out, time.Since(start).Round(time.Millisecond))
	return out, nil
}

// stopLeftovers kills daemons still running and detaches mounts still
// present under tmpRoot, and describes them.
func stopLeftovers() string {
	var b strings.Builder
	daemons.mu.Lock()
	live := map[*daemon]string{}
	for d, name := range daemons.live {
		live[d] = name
	}
	daemons.mu.Unlock()
	for d, name := range live {
		fmt.Fprintf(&b, "  daemon pid %d of %s still running: killed\n", d.cmd.Process.Pid, name)
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
		}
	}
	for _, mp := range mountsUnder(tmpRoot) {
		fmt.Fprintf(&b, "  %s still mounted: detached with umount -l\n", mp)
		_ = exec.Command("umount", "-l", mp).Run()
	}
	return b.String()
}

// mountsUnder lists the mount points in /proc/mounts at or below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := unescapeMount(f[1])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMount undoes /proc/mounts' octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isMounted(dir string) bool {
	for _, mp := range mountsUnder(dir) {
		if mp == dir {
			return true
		}
	}
	return false
}
