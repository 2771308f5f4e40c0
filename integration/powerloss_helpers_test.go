package integration

// Helpers of the power-loss tests (powerloss_test.go): the power-loss
// layer (integration/powerloss) as a process under the data dir, the cut,
// and a model of the states a power loss may leave each name in.

import (
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// plBin is the power-loss layer binary, built once per run on first use.
var plBin struct {
	once sync.Once
	path string
	err  error
}

// plBinary builds the layer once into the run's temp dir (a second or
// two), as the suite builds dualstore when DUALSTORE_BIN is unset.
func plBinary(t *testing.T) string {
	t.Helper()
	plBin.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			if root := os.Getenv("GOROOT"); root != "" {
				gobin = filepath.Join(root, "bin", "go")
			} else {
				plBin.err = fmt.Errorf("no go command to build the power-loss layer: %w", err)
				return
			}
		}
		out := filepath.Join(tmpRoot, "bin", "powerloss")
		start := time.Now()
		b, err := exec.Command(gobin, "build", "-o", out, "github.com/dualstore/dualstore/integration/powerloss").CombinedOutput()
		if err != nil {
			plBin.err = fmt.Errorf("building the power-loss layer: %v\n%s", err, b)
			return
		}
		fmt.Fprintf(os.Stderr, "integration: built %s in %s\n", out, time.Since(start).Round(time.Millisecond))
		plBin.path = out
	})
	if plBin.err != nil {
		t.Fatal(plBin.err)
	}
	return plBin.path
}

// plLayer is one power-loss layer of a test: Dir shows Backing, and keeps
// file data written through it in the layer process's memory until an
// fsync. Killing the process is the power loss.
type plLayer struct {
	t       *testing.T
	Backing string
	Dir     string
	proc    *daemon
	logs    []string // stderr of earlier processes
}

// startLayer mounts a layer over a fresh backing dir; t.Cleanup stops it
// (after the dualstore mounts on it, which must be made after this call).
func startLayer(t *testing.T) *plLayer {
	t.Helper()
	requireFUSE(t)
	bin := plBinary(t)
	l := &plLayer{t: t, Backing: filepath.Join(t.TempDir(), "backing"), Dir: filepath.Join(t.TempDir(), "layer")}
	for _, d := range []string{l.Backing, l.Dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		l.stop()
		if t.Failed() {
			if logs := strings.TrimSpace(strings.Join(l.allLogs(), "")); logs != "" {
				t.Logf("power-loss layer stderr:\n%s", tailLog(logs, 50, 400))
			}
		}
	})
	l.start(bin)
	return l
}

func (l *plLayer) allLogs() []string {
	all := slices.Clone(l.logs)
	if l.proc != nil {
		all = append(all, l.proc.stderr.String())
	}
	return all
}

// start runs the layer process and waits, with a deadline, until its
// mount is in /proc/self/mountinfo.
func (l *plLayer) start(bin string) {
	t := l.t
	t.Helper()
	if l.proc != nil {
		t.Fatalf("power-loss layer on %s is already running", l.Dir)
	}
	// If the test binary dies, the layer dies too (startDaemon): its mount
	// then fails every call instead of hanging, and the watchdog detaches it.
	d := startDaemon(t, bin, "-backing", l.Backing, "-mount", l.Dir)
	l.proc = d
	deadline := time.Now().Add(mountDeadline)
	for !plMounted(l.Dir) {
		select {
		case <-d.done:
			l.proc = nil
			l.logs = append(l.logs, d.stderr.String())
			t.Fatalf("power-loss layer exited before mounting %s: %v\n%s", l.Dir, d.err, d.stderr.String())
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("power-loss layer did not mount %s within %s (stderr so far:\n%s)", l.Dir, mountDeadline, d.stderr.String())
		}
	}
}

// plMounted reports whether /proc/self/mountinfo lists a power-loss layer
// mounted on dir.
func plMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 5 || sep+1 >= len(f) {
			continue
		}
		if unescapeMount(f[4]) == dir && f[sep+1] == "fuse.powerloss" {
			return true
		}
	}
	return false
}

// kill is the power loss: SIGKILL of the layer, whose memory holds every
// byte not yet fsynced, and a lazy unmount of its dead mount.
func (l *plLayer) kill() {
	t := l.t
	t.Helper()
	d := l.proc
	if d == nil {
		return
	}
	l.proc = nil
	defer func() { l.logs = append(l.logs, d.stderr.String()) }()
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(unmountDeadline):
		t.Errorf("power-loss layer pid %d survived SIGKILL", d.cmd.Process.Pid)
	}
	if out, err := exec.Command("umount", "-l", l.Dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s after killing the power-loss layer: %v\n%s", l.Dir, err, out)
	}
}

// stop ends the layer with SIGTERM (it unmounts and exits 0); past the
// deadline it detaches the mount and kills the process.
func (l *plLayer) stop() {
	t := l.t
	t.Helper()
	d := l.proc
	if d == nil {
		if plMounted(l.Dir) {
			t.Errorf("%s is still mounted without its layer: detaching it", l.Dir)
			_ = exec.Command("umount", "-l", l.Dir).Run()
		}
		return
	}
	l.proc = nil
	defer func() { l.logs = append(l.logs, d.stderr.String()) }()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("power-loss layer of %s exited with %v after SIGTERM, want exit 0\n%s", l.Dir, d.err, d.stderr.String())
		}
	case <-time.After(unmountDeadline):
		t.Errorf("power-loss layer of %s did not exit within %s of SIGTERM: detaching and killing it", l.Dir, unmountDeadline)
		_ = exec.Command("umount", "-l", l.Dir).Run()
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if plMounted(l.Dir) {
		t.Errorf("%s still mounted after its layer exited: detaching it", l.Dir)
		_ = exec.Command("umount", "-l", l.Dir).Run()
	}
}

// plConfig is a dualstore configuration the power-loss tests run with.
type plConfig struct {
	name string
	// yaml returns the config file for the data dir ("" for none).
	yaml func(data string) string
}

// plConfigs: the embedded defaults (the stores sync with syncfs(2) at a
// file's fsync), and every chunk fsynced as it is written.
var plConfigs = []plConfig{
	{"default", func(string) string { return "" }},
	{"fsync", func(data string) string {
		return fmt.Sprintf("primary:\n  - name: primary-0\n    path: %s\n    fsync: true\n"+
			"safety:\n  - name: safety-0\n    path: %s\n    fsync: true\n",
			filepath.Join(data, primary), filepath.Join(data, safety))
	}},
}

// plRunConfigs runs fn once per configuration, in subtests named
// config=NAME.
func plRunConfigs(t *testing.T, fn func(t *testing.T, cfg plConfig)) {
	for _, cfg := range plConfigs {
		t.Run("config="+cfg.name, func(t *testing.T) { fn(t, cfg) })
	}
}

// plMount starts a layer and mounts dualstore with its data dir (the
// index and both local stores) on the layer.
func plMount(t *testing.T, cfg plConfig) (*Mount, *plLayer) {
	t.Helper()
	l := startLayer(t)
	data := filepath.Join(l.Dir, "data")
	opts := []mountOpt{withData(data)}
	if y := cfg.yaml(data); y != "" {
		opts = append(opts, withConfig(y))
	}
	return mount(t, opts...), l
}

// plCut cuts the power: SIGKILL of the dualstore daemon (so that it never
// sees its disk vanish), then of the layer, whose unsynced data is lost;
// both dead mounts are detached. Nothing on the mount answers afterwards.
func plCut(m *Mount, l *plLayer) {
	m.t.Helper()
	m.Kill()
	l.kill()
}

// plRestore powers the machine up again: a fresh layer on the same
// backing dir (and an empty page cache), and dualstore mounted on its data
// dir again.
func plRestore(m *Mount, l *plLayer) {
	m.t.Helper()
	l.start(plBinary(l.t))
	m.start()
}

// powerCut is plCut then plRestore.
func powerCut(m *Mount, l *plLayer) {
	m.t.Helper()
	plCut(m, l)
	plRestore(m, l)
}

// plCheckStores runs the checks of a data dir after a power loss and the
// remount: a deep comparison of the tiers (online), then, unmounted,
// `dualstore fsck --deep` (which must be clean: a power loss leaves chunk
// files that exist but are empty or short, which only reading them
// finds); it mounts again unless last.
func plCheckStores(t *testing.T, m *Mount, what string, last bool) {
	t.Helper()
	if r := m.Compare(true); r.Differences() != 0 {
		var b strings.Builder
		for i, d := range r.Details {
			if i == 5 {
				fmt.Fprintf(&b, "\n  … %d more", len(r.Details)-i)
				break
			}
			fmt.Fprintf(&b, "\n  %s %s files %v %s%s", d.Class, d.Chunk, d.Files, d.Error, d.Note)
		}
		t.Errorf("%s: deep comparison of the tiers: %s%s", what, r.counts(), b.String())
	}
	m.Unmount()
	out, errOut, code := CLI(t, "fsck", "--deep", "--data-dir", m.Data)
	if code != 0 {
		t.Errorf("%s: dualstore fsck --deep --data-dir %s: exit %d, want 0 (clean)\nstdout: %s\nstderr: %s",
			what, m.Data, code, truncate(out, 3000), truncate(errOut, 3000))
	}
	if !last {
		m.start()
	}
}

// plModel knows, for each name below a root (in a fixed set of
// directories), the states a power loss may leave it in: the state it
// last had durably (fsynced, or found after the previous power loss) and
// every state it went through since. A name it does not know must be
// absent.
type plModel struct {
	root string
	dirs []string // relative, "" for root itself
	// hist: the states since the last durable one, which comes first.
	hist map[string][]crashState
	// why the first state of hist is durable; "" when it is not known to be.
	why map[string]string
}

func newPLModel(root string, dirs ...string) *plModel {
	if len(dirs) == 0 {
		dirs = []string{""}
	}
	return &plModel{root: root, dirs: dirs, hist: map[string][]crashState{}, why: map[string]string{}}
}

// states returns the states a power loss may leave name in.
func (pm *plModel) states(name string) []crashState {
	if h, ok := pm.hist[name]; ok {
		return h
	}
	return []crashState{{}}
}

// may records a state that name may be in from now on: call it before
// the call that makes it so (a close, a rename, an O_TRUNC open…), since a
// power loss during the call may leave either.
func (pm *plModel) may(name string, st crashState) {
	h := pm.states(name)
	if !slices.Contains(h, st) {
		h = append(slices.Clone(h), st)
	}
	pm.hist[name] = h
}

// durable records that name is in st for good (until it changes again):
// call it after fsync returned.
func (pm *plModel) durable(name string, st crashState, why string) {
	pm.hist[name] = []crashState{st}
	pm.why[name] = why
}

// describe renders the states allowed for name.
func (pm *plModel) describe(name string) string {
	var parts []string
	for i, st := range pm.states(name) {
		s := st.String()
		if i == 0 && pm.why[name] != "" {
			s += " (" + pm.why[name] + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " or ")
}

// plFound is a name as read after a power loss.
type plFound struct {
	state crashState
	zeros bool // non-empty and every byte zero
}

func (f plFound) String() string {
	if f.zeros {
		return f.state.String() + ", all zeros"
	}
	return f.state.String()
}

// check reads every name of the model and every name on the mount after
// a power loss and the remount, fails the test for each name that cannot
// be read (EIO…) or is in a state the model does not allow, and takes
// what it found as the new durable state. It returns a summary.
func (pm *plModel) check(t *testing.T, what string) string {
	t.Helper()
	names := map[string]bool{}
	for n := range pm.hist {
		names[n] = true
	}
	for _, dir := range pm.dirs {
		ents, err := os.ReadDir(filepath.Join(pm.root, dir))
		if err != nil && !(errors.Is(err, iofs.ErrNotExist) && dir != "") {
			t.Errorf("%s: listing %s after the power loss: %v", what, filepath.Join(pm.root, dir), err)
			continue
		}
		for _, e := range ents {
			name := filepath.Join(dir, e.Name())
			if e.IsDir() && slices.Contains(pm.dirs, name) {
				continue
			}
			names[name] = true
		}
	}
	var durable, absent, empty, other, bad int
	for _, name := range sortedKeys(names) {
		allowed := pm.states(name)
		found, err := plRead(filepath.Join(pm.root, name))
		switch {
		case err != nil:
			bad++
			t.Errorf("%s: %s: %v; allowed: %s", what, name, err, pm.describe(name))
		case !slices.Contains(allowed, found.state):
			bad++
			kind := "in a state it never had"
			if len(allowed) == 1 && pm.why[name] != "" {
				kind = "not in its " + pm.why[name] + " state"
			}
			t.Errorf("%s: %s is %s: %s; allowed: %s", what, name, kind, found, pm.describe(name))
		case !found.state.exists:
			absent++
		case found.state == allowed[0]:
			durable++
		case found.state.size == 0:
			empty++
		default:
			other++
		}
		if err == nil {
			if found.state.exists {
				pm.durable(name, found.state, "found after the previous power loss")
			} else {
				delete(pm.hist, name)
				delete(pm.why, name)
			}
		}
	}
	return fmt.Sprintf("%d names: %d as last made durable, %d absent, %d empty, %d in another allowed state, %d bad",
		len(names), durable, absent, empty, other, bad)
}

// plRead reads a file after a power loss: its state, or why it cannot be
// read (the error of stat or read, or a size that stat and read disagree
// on).
func plRead(p string) (plFound, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, iofs.ErrNotExist) {
		return plFound{}, nil
	}
	if err != nil {
		return plFound{}, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return plFound{}, fmt.Errorf("is a %v, want a regular file", fi.Mode().Type())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return plFound{}, fmt.Errorf("read (stat says %d bytes): %w", fi.Size(), err)
	}
	if int64(len(data)) != fi.Size() {
		return plFound{}, fmt.Errorf("stat says %d bytes, read gives %d", fi.Size(), len(data))
	}
	return plFound{state: crashStateOf(true, data), zeros: len(data) > 0 && bytes.Count(data, []byte{0}) == len(data)}, nil
}
