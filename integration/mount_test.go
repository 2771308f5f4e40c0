package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines: generous, since two cores run two mounts at once.
const (
	mountDeadline   = 30 * time.Second
	unmountDeadline = 20 * time.Second
	actionDeadline  = 90 * time.Second
	pollInterval    = 20 * time.Millisecond
)

// waitFor polls cond every pollInterval until it returns nil, and returns
// an error wrapping cond's last one if that did not happen within timeout.
// It is how a test waits for a state the daemon reaches in the background
// (a backfill drained, a chunk healed, an action ended) instead of
// sleeping for a guess; the caller decides whether a timeout is fatal.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(pollInterval) // the poll interval
	}
}

// Mount is one running `dualstore mount` daemon of a test, with its data
// dir. Every mount is unmounted in t.Cleanup, even when the test fails.
type Mount struct {
	t *testing.T
	// Dir is the mount point.
	Dir string
	// Data is the data dir: index.db, staging/, lock, primary/, safety/.
	Data string
	// Config is the --config file, or "".
	Config string
	args   []string

	proc *daemon
	logs []string // stderr of this mount's earlier daemons
}

// daemon is one process of a Mount.
type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // from Wait, valid after done is closed
}

type mountOpt func(*Mount)

// withData uses an existing (or chosen) data dir.
func withData(dir string) mountOpt { return func(m *Mount) { m.Data = dir } }

// withConfig writes yaml to a config file passed with --config.
func withConfig(yaml string) mountOpt {
	return func(m *Mount) {
		p := filepath.Join(m.t.TempDir(), "dualstore.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			m.t.Fatal(err)
		}
		m.Config = p
	}
}

// withArgs adds flags to `dualstore mount`.
func withArgs(args ...string) mountOpt { return func(m *Mount) { m.args = append(m.args, args...) } }

// mount starts a daemon on a fresh mount point and waits, with a
// deadline, for `.dualstore/stats` to appear.
func mount(t *testing.T, opts ...mountOpt) *Mount {
	t.Helper()
	requireFUSE(t)
	m := &Mount{t: t, Dir: filepath.Join(t.TempDir(), "mnt")}
	if err := os.Mkdir(m.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(m)
	}
	if m.Data == "" {
		m.Data = filepath.Join(t.TempDir(), "data")
	}
	t.Cleanup(func() {
		m.Unmount()
		if t.Failed() {
			t.Logf("daemon stderr of %s (%s):\n%s", m.Dir, strings.Join(m.cmdline(), " "), tailLog(m.Logs(), 200, 400))
		}
	})
	m.start()
	return m
}

func (m *Mount) cmdline() []string {
	args := []string{"mount", "--data-dir", m.Data}
	if m.Config != "" {
		args = append(args, "--config", m.Config)
	}
	args = append(args, m.args...)
	return append(args, m.Dir)
}

// startDaemon starts a FUSE daemon (dualstore, or the power-loss layer)
// as a process the suite tracks: its output is kept, the leak check and
// the watchdog know it, and d.done closes when it exits.
func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(bin, args...))
}

// startDaemonCmd is startDaemon for a command prepared by the caller (its
// environment, say); its output and process attributes are set here.
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	bin := cmd.Path
	d := &daemon{stderr: &syncBuffer{}, done: make(chan struct{}), cmd: cmd}
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	// If the test binary dies (a -timeout panic), the daemon dies too and
	// the kernel aborts its FUSE connection instead of leaving a hung
	// mount.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	daemons.mu.Lock()
	daemons.live[d] = t.Name()
	daemons.mu.Unlock()
	go func() {
		d.err = d.cmd.Wait()
		daemons.mu.Lock()
		delete(daemons.live, d)
		daemons.mu.Unlock()
		close(d.done)
	}()
	return d
}

func (m *Mount) start() {
	t := m.t
	t.Helper()
	if m.proc != nil {
		t.Fatalf("%s is already mounted", m.Dir)
	}
	d := startDaemon(t, bin, m.cmdline()...)
	m.proc = d
	stats := filepath.Join(m.Dir, ".dualstore", "stats")
	deadline := time.Now().Add(mountDeadline)
	for {
		// A daemon that mounted but does not answer would hang a plain
		// stat forever.
		probe := make(chan error, 1)
		go func() { _, err := os.Stat(stats); probe <- err }()
		select {
		case err := <-probe:
			// And the daemon said so: until then go-fuse's check of the
			// new mount may hold a file open in it, and a SIGKILL then
			// leaves the daemon stuck in its exit, flushing that file to
			// itself.
			if err == nil && strings.Contains(d.stderr.String(), "dualstore: mounted") {
				return
			}
		case <-time.After(time.Until(deadline)):
			t.Fatalf("stat %s hung for %s: the daemon mounted but does not answer (stderr so far:\n%s)", stats, mountDeadline, d.stderr.String())
		}
		select {
		case <-d.done:
			m.proc = nil
			m.logs = append(m.logs, d.stderr.String())
			t.Fatalf("dualstore %s exited before mounting: %v\n%s", strings.Join(m.cmdline(), " "), d.err, d.stderr.String())
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s (daemon stderr so far:\n%s)", stats, mountDeadline, d.stderr.String())
		}
	}
}

// Unmount stops the daemon with SIGINT and waits for it to exit; past the
// deadline it detaches the mount (umount -l) and kills the daemon. A
// daemon that does not exit 0 after SIGINT fails the test.
func (m *Mount) Unmount() {
	t := m.t
	t.Helper()
	d := m.proc
	if d == nil {
		return
	}
	m.proc = nil
	defer func() { m.logs = append(m.logs, d.stderr.String()) }()
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("daemon of %s exited with %v after SIGINT, want exit 0", m.Dir, d.err)
		}
	case <-time.After(unmountDeadline):
		t.Errorf("daemon of %s did not exit within %s of SIGINT: detaching and killing it", m.Dir, unmountDeadline)
		_ = exec.Command("umount", "-l", m.Dir).Run()
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(unmountDeadline):
			t.Errorf("daemon pid %d of %s survived SIGKILL", d.cmd.Process.Pid, m.Dir)
		}
	}
	if isMounted(m.Dir) {
		t.Errorf("%s still mounted after the daemon exited: detaching it", m.Dir)
		_ = exec.Command("umount", "-l", m.Dir).Run()
	}
}

// Kill ends the daemon with SIGKILL, as a crash would, and detaches the
// dead mount.
func (m *Mount) Kill() {
	t := m.t
	t.Helper()
	d := m.proc
	if d == nil {
		return
	}
	m.proc = nil
	defer func() { m.logs = append(m.logs, d.stderr.String()) }()
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(unmountDeadline):
		t.Errorf("daemon pid %d of %s survived SIGKILL", d.cmd.Process.Pid, m.Dir)
	}
	if out, err := exec.Command("umount", "-l", m.Dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s after killing its daemon: %v\n%s", m.Dir, err, out)
	}
}

// For returns a view of m that reports to t (a subtest), for reading
// stats and control files; mount, unmount and remount only through m.
func (m *Mount) For(t *testing.T) *Mount {
	c := *m
	c.t = t
	return &c
}

// Remount unmounts and mounts again with the same data dir and flags: a
// fresh daemon, with empty chunk and page caches.
func (m *Mount) Remount() {
	m.t.Helper()
	m.Unmount()
	m.start()
}

// Logs returns the stderr of every daemon of this mount so far.
func (m *Mount) Logs() string {
	all := append([]string{}, m.logs...)
	if m.proc != nil {
		all = append(all, m.proc.stderr.String())
	}
	return strings.Join(all, "\n--- remount ---\n")
}

// tailLog keeps the last n lines of a log, each cut to width bytes.
func tailLog(s string, n, width int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var b strings.Builder
	if len(lines) > n {
		fmt.Fprintf(&b, "[%d earlier lines left out]\n", len(lines)-n)
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		b.WriteString(truncate(l, width))
		b.WriteByte('\n')
	}
	return b.String()
}

// Path joins elements below the mount point.
func (m *Mount) Path(elem ...string) string {
	return filepath.Join(append([]string{m.Dir}, elem...)...)
}

func (m *Mount) control(name string) string { return filepath.Join(m.Dir, ".dualstore", name) }

// StatsRaw reads `.dualstore/stats` as a generic JSON object.
func (m *Mount) StatsRaw() map[string]any {
	m.t.Helper()
	b, err := os.ReadFile(m.control("stats"))
	if err != nil {
		m.t.Fatalf("reading stats: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		m.t.Fatalf("stats is not JSON: %v\n%s", err, b)
	}
	return v
}

// Stats reads and parses `.dualstore/stats`.
func (m *Mount) Stats() Stats {
	m.t.Helper()
	var s Stats
	m.statsInto(&s)
	return s
}

// statsInto reads `.dualstore/stats` into v (a struct of the fields a
// test needs), failing the test on anything but the documented JSON.
func (m *Mount) statsInto(v any) {
	m.t.Helper()
	b, err := os.ReadFile(m.control("stats"))
	if err != nil {
		m.t.Fatalf("reading stats: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		m.t.Fatalf("stats is not the documented JSON: %v\n%s", err, b)
	}
}

// Ctl writes one command to `.dualstore/ctl` in a single write and
// returns the write's error (EINVAL, EBUSY… are wrapped in it).
func (m *Mount) Ctl(cmd string) error {
	f, err := os.OpenFile(m.control("ctl"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(cmd + "\n"))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// CtlStatus reads `.dualstore/ctl`.
func (m *Mount) CtlStatus() string {
	m.t.Helper()
	b, err := os.ReadFile(m.control("ctl"))
	if err != nil {
		m.t.Fatalf("reading ctl: %v", err)
	}
	return string(b)
}

// Report reads `.dualstore/compare`.
func (m *Mount) Report() Report {
	m.t.Helper()
	b, err := os.ReadFile(m.control("compare"))
	if err != nil {
		m.t.Fatalf("reading compare: %v", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		m.t.Fatalf("compare is not the documented JSON: %v\n%s", err, b)
	}
	return r
}

// Action sends a compare or repair command and polls `.dualstore/compare`,
// with a deadline, until it is no longer running.
func (m *Mount) Action(cmd string) Report {
	m.t.Helper()
	if err := m.Ctl(cmd); err != nil {
		m.t.Fatalf("echo %s > .dualstore/ctl: %v (ctl: %q)", cmd, err, m.CtlStatus())
	}
	return m.WaitAction()
}

// WaitAction polls `.dualstore/compare` until the action has ended.
func (m *Mount) WaitAction() Report {
	m.t.Helper()
	var r Report
	if err := waitFor(actionDeadline, func() error {
		if r = m.Report(); r.State == "running" {
			return fmt.Errorf("%s still running: %+v", r.Action, r)
		}
		return nil
	}); err != nil {
		m.t.Fatal(err)
	}
	return r
}

// Compare runs a comparison (deep or shallow) to its end.
func (m *Mount) Compare(deep bool) Report {
	m.t.Helper()
	cmd := "compare"
	if deep {
		cmd = "compare deep"
	}
	r := m.Action(cmd)
	if r.State != "done" || r.Action != "compare" || r.Deep != deep {
		m.t.Fatalf("%s ended as %+v, want state done, action compare, deep %v", cmd, r, deep)
	}
	return r
}

// CLI runs `dualstore ARGS…` (not mount) with a deadline and returns
// stdout, stderr and the exit code.
func CLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliWithin(t, actionDeadline, args...)
}

// cliWithin is CLI with a given deadline, after which the process is
// killed and the test fails.
func cliWithin(t *testing.T, deadline time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dualstore: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(deadline):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("dualstore %s did not finish within %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), deadline, out.String(), errb.String())
	}
	code = 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("dualstore %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Stats is the `.dualstore/stats` contract (DESIGN.md section 6): the
// fields scripts rely on. Unknown fields are ignored, as the contract
// allows additions.
type Stats struct {
	UptimeSeconds   float64              `json:"uptime_seconds"`
	ReadPreference  string               `json:"read_preference"`
	Files           int64                `json:"files"`
	LogicalBytes    int64                `json:"logical_bytes"`
	UniqueChunks    int64                `json:"unique_chunks"`
	UniqueBytes     int64                `json:"unique_bytes"`
	DedupRatio      float64              `json:"dedup_ratio"`
	Tiers           map[string]TierStats `json:"tiers"`
	Fallbacks       int64                `json:"fallbacks"`
	SelfHeals       int64                `json:"self_heals"`
	PendingBackfill int64                `json:"pending_backfill"`
	SuccessRate     float64              `json:"success_rate"`
	ErrorRate       float64              `json:"error_rate"`
	ConsistencyRate *float64             `json:"consistency_rate"`
	LastCompare     *Report              `json:"last_compare"`
}

// TierStats is one tier in Stats.
type TierStats struct {
	Writes    OpStats            `json:"writes"`
	Reads     OpStats            `json:"reads"`
	LatencyMS map[string]float64 `json:"latency_ms"`
	Stores    []StoreStats       `json:"stores"`
}

// StoreStats is one store of a tier in Stats.
type StoreStats struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"`
	Writes OpStats `json:"writes"`
	Reads  OpStats `json:"reads"`
}

// OpStats counts operations.
type OpStats struct {
	OK             int64 `json:"ok"`
	Errors         int64 `json:"errors"`
	ChecksumErrors int64 `json:"checksum_errors"`
	Bytes          int64 `json:"bytes"`
}

// Report is the `.dualstore/compare` contract.
type Report struct {
	State         string   `json:"state"`
	Action        string   `json:"action"`
	Deep          bool     `json:"deep"`
	StartedAt     string   `json:"started_at"`
	FinishedAt    string   `json:"finished_at"`
	Total         int64    `json:"total"`
	Done          int64    `json:"done"`
	Matches       int64    `json:"matches"`
	Mismatches    int64    `json:"mismatches"`
	PrimaryOnly   int64    `json:"primary_only"`
	SafetyOnly    int64    `json:"safety_only"`
	Missing       int64    `json:"missing"`
	Errors        int64    `json:"errors"`
	Repaired      int64    `json:"repaired"`
	Unrecoverable int64    `json:"unrecoverable"`
	RepairFailed  int64    `json:"repair_failed"`
	Backfilled    int64    `json:"backfilled"`
	Direction     string   `json:"direction"`
	Copied        int64    `json:"copied"`
	DryRun        bool     `json:"dry_run"`
	Removed       int64    `json:"removed"`
	RemovedBytes  int64    `json:"removed_bytes"`
	InFlight      int64    `json:"in_flight"`
	Details       []Detail `json:"details"`
}

// Detail is one difference in a Report.
type Detail struct {
	Chunk    string   `json:"chunk"`
	Class    string   `json:"class"`
	Files    []string `json:"files"`
	Good     string   `json:"good"`
	Note     string   `json:"note"`
	Error    string   `json:"error"`
	Repaired bool     `json:"repaired"`
}

// Differences counts the chunks that did not match.
func (r Report) Differences() int64 {
	return r.Mismatches + r.PrimaryOnly + r.SafetyOnly + r.Missing + r.Errors
}

// counts renders a report's classes for messages.
func (r Report) counts() string {
	return fmt.Sprintf("total %d done %d: match %d, mismatch %d, primary_only %d, safety_only %d, missing %d, errors %d, repaired %d, unrecoverable %d",
		r.Total, r.Done, r.Matches, r.Mismatches, r.PrimaryOnly, r.SafetyOnly, r.Missing, r.Errors, r.Repaired, r.Unrecoverable)
}
