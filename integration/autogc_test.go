package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of the background gc (#15): past the threshold gc starts by
// itself, throttled, at most once per interval, visible in ctl, stats and
// compare, stoppable, and never beside another action.

// autoGCStats is the `auto_gc` object of `.dualstore/stats`.
type autoGCStats struct {
	Enabled          bool   `json:"enabled"`
	Runs             int64  `json:"runs"`
	LastStart        string `json:"last_start"`
	LastState        string `json:"last_state"`
	LastRemovedBytes int64  `json:"last_removed_bytes"`
	Checks           int64  `json:"checks"`
	UnusedBytes      int64  `json:"unused_bytes"`
	ThresholdBytes   int64  `json:"threshold_bytes"`
	Blocked          string `json:"blocked"`
}

// autoGCDoc is the part of the stats these tests read.
type autoGCDoc struct {
	Stats
	AutoGC autoGCStats `json:"auto_gc"`
	Action string      `json:"action"`
}

// autoGC reads the stats with the background gc's part.
func (m *Mount) autoGC() autoGCDoc {
	m.t.Helper()
	var d autoGCDoc
	m.statsInto(&d)
	return d
}

// waitAutoGC polls the stats until ok says yes, failing after within.
func (m *Mount) waitAutoGC(within time.Duration, what string, ok func(autoGCDoc) bool) autoGCDoc {
	m.t.Helper()
	var d autoGCDoc
	if err := waitFor(within, func() error {
		if d = m.autoGC(); !ok(d) {
			return fmt.Errorf("auto_gc %+v, action %q", d.AutoGC, d.Action)
		}
		return nil
	}); err != nil {
		m.t.Fatalf("%s: %v", what, err)
	}
	return d
}

// waitChecks waits until the background gc has measured n more times.
func (m *Mount) waitChecks(n int64) autoGCDoc {
	m.t.Helper()
	from := m.autoGC().AutoGC.Checks
	return m.waitAutoGC(actionDeadline, fmt.Sprintf("%d more checks", n), func(d autoGCDoc) bool { return d.AutoGC.Checks >= from+n })
}

// makeGarbage writes n files of size bytes into dir of the mount, deletes
// them, and waits until their chunks are unreferenced (the unlinked inodes
// are purged once the kernel forgets them).
func (m *Mount) makeGarbage(dir string, seed uint64, n, size int) {
	m.t.Helper()
	before := m.Stats().LogicalBytes
	for i := range n {
		writeFile(m.t, m.Path(dir, fmt.Sprintf("g%03d", i)), randBytes(seed+uint64(i), size))
	}
	if err := os.RemoveAll(m.Path(dir)); err != nil {
		m.t.Fatal(err)
	}
	m.waitStats(10*time.Second, "the deleted files' purge", func(st Stats) bool { return st.LogicalBytes == before })
}

// TestAutoGCFreesSpace: writers write and delete files; the unreferenced
// bytes pass the threshold and gc starts by itself, no more than once per
// interval, removes the garbage from both stores and loses nothing (diff
// against a reference copy, cold after a remount, and a deep compare).
//
// Not parallel: a fork in another test flushes this process's open files
// in mid-write, leaving tail chunks as garbage below the threshold, which
// would make the final count of chunk files inexact.
func TestAutoGCFreesSpace(t *testing.T) {
	const interval = 2 * time.Second
	m := mount(t, withConfig("log_level: info\ngc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 2s\n  check_interval: 100ms\n"))
	if d := m.autoGC(); !d.AutoGC.Enabled || d.AutoGC.Runs != 0 {
		t.Fatalf("fresh mount: auto_gc %+v, want enabled with no runs", d.AutoGC)
	}
	ref := t.TempDir()
	if err := os.Mkdir(m.Path("w"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A file kept from the start: its chunks are referenced throughout.
	keep := randBytes(1500, 3<<20)
	writeFile(t, m.Path("w", "keep"), keep)
	writeFile(t, filepath.Join(ref, "keep"), keep)

	// Two writers, each writing files of 300 KiB to 1.3 MiB and deleting
	// every other one, until two automatic runs have ended: the second
	// waits for the interval.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(prefix string, seed uint64) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("%s%04d", prefix, i)
			b := randBytes(seed+uint64(i), 300<<10+(i*211<<10)%(1<<20))
			if err := os.WriteFile(m.Path("w", name), b, 0o644); err != nil {
				t.Errorf("writer: %s: %v", name, err)
				return
			}
			if err := os.WriteFile(filepath.Join(ref, name), b, 0o644); err != nil {
				t.Errorf("reference: %s: %v", name, err)
				return
			}
			if i%2 == 1 {
				prev := fmt.Sprintf("%s%04d", prefix, i-1)
				if err := os.Remove(m.Path("w", prev)); err != nil {
					t.Errorf("writer: rm %s: %v", prev, err)
					return
				}
				_ = os.Remove(filepath.Join(ref, prev))
			}
		}
	}
	start := time.Now()
	wg.Add(2)
	go writer("a", 10000)
	go writer("b", 20000)
	var sawRunning bool
	err := waitFor(actionDeadline, func() error {
		d := m.autoGC()
		if strings.HasPrefix(d.Action, "gc (automatic, unused ") {
			sawRunning = true
		}
		if d.AutoGC.Runs < 2 || d.AutoGC.LastState == "running" {
			return fmt.Errorf("not two automatic runs ended: auto_gc %+v", d.AutoGC)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	d := m.autoGC()
	elapsed := time.Since(start)
	t.Logf("after %s of writes: auto_gc %+v", elapsed.Round(time.Millisecond), d.AutoGC)
	if d.AutoGC.LastState != "done" && d.AutoGC.LastState != "running" {
		t.Errorf("automatic run ended as %q, want done", d.AutoGC.LastState)
	}
	if maxRuns := 1 + int64(elapsed/interval); d.AutoGC.Runs > maxRuns {
		t.Errorf("%d automatic runs in %s, want at most %d (one per %s)", d.AutoGC.Runs, elapsed, maxRuns, interval)
	}
	if !sawRunning {
		t.Logf("the run ended before a stats read saw it running (the status check is in TestAutoGCVisibleAndStoppable)")
	}

	// With the writers stopped, delete one more file: well past the
	// threshold, so the next run collects every unreferenced chunk.
	runs := d.AutoGC.Runs
	victim := randBytes(1501, 4<<20)
	writeFile(t, m.Path("w", "victim"), victim)
	live := m.Stats().LogicalBytes
	filesBefore := map[string]int{}
	for _, tier := range tiers {
		filesBefore[tier] = len(m.ChunkFiles(tier))
	}
	if err := os.Remove(m.Path("w", "victim")); err != nil {
		t.Fatal(err)
	}
	m.waitStats(10*time.Second, "the victim's purge", func(st Stats) bool { return st.LogicalBytes == live-int64(len(victim)) })
	d = m.waitAutoGC(actionDeadline, "a run that leaves nothing unreferenced", func(d autoGCDoc) bool {
		a := d.AutoGC
		return a.Runs > runs && a.LastState == "done" && a.UnusedBytes == 0 && d.Action == "idle"
	})
	if d.AutoGC.LastRemovedBytes < int64(len(victim)) {
		t.Errorf("the last automatic run removed %d bytes, want at least the victim's %d", d.AutoGC.LastRemovedBytes, len(victim))
	}
	st := m.Stats()
	for _, tier := range tiers {
		n := len(m.ChunkFiles(tier))
		if n >= filesBefore[tier] || int64(n) != st.UniqueChunks {
			t.Errorf("%s tier: %d chunk files after the automatic gc (%d before), want the %d referenced", tier, n, filesBefore[tier], st.UniqueChunks)
		}
	}
	if r := m.Report(); r.Action != "gc" || r.State != "done" || r.Errors != 0 {
		t.Errorf("compare document after the automatic gc: %+v", r)
	}
	diffTrees(t, ref, m.Path("w"))
	m.Remount()
	diffTrees(t, ref, m.Path("w"))
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after the automatic gc: %s", r.counts())
	}
	if logs := m.Logs(); !strings.Contains(logs, "automatic gc started") || !strings.Contains(logs, "automatic gc finished") {
		t.Errorf("the log does not say when the automatic gc started and finished:\n%s", tailLog(logs, 40, 300))
	}
}

// TestAutoGCBelowThreshold: files written and never deleted leave nothing
// unreferenced, and gc does not start over several checks and intervals.
// Not parallel, for the reason TestAutoGCFreesSpace gives.
func TestAutoGCBelowThreshold(t *testing.T) {
	m := mount(t, withConfig("gc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 1s\n  check_interval: 100ms\n"))
	for i := range 6 {
		writeFile(t, m.Path("d", fmt.Sprintf("f%d", i)), randBytes(uint64(1600+i), 1<<20+i*4096))
	}
	// Overwriting a small file in place leaves its old chunk unreferenced:
	// some garbage, far below the threshold.
	writeFile(t, m.Path("d", "small"), randBytes(1700, 100<<10))
	writeFile(t, m.Path("d", "small"), randBytes(1701, 100<<10))
	// 25 checks of 100 ms: two and a half intervals.
	d := m.waitChecks(25)
	if d.AutoGC.Runs != 0 || d.Action != "idle" {
		t.Errorf("below the threshold: auto_gc %+v, action %q; want no run", d.AutoGC, d.Action)
	}
	if d.AutoGC.ThresholdBytes != 1<<20 || d.AutoGC.UnusedBytes >= d.AutoGC.ThresholdBytes {
		t.Errorf("auto_gc %+v: want threshold_bytes 1 MiB (the floor: 1%% of 6 MiB is less) and unused_bytes below it", d.AutoGC)
	}
}

// TestAutoGCVisibleAndStoppable: a throttled automatic run shows in ctl,
// stats and compare as automatic; a manual gc or compare during it gets
// EBUSY; stop ends it; and it does not start again within the interval.
func TestAutoGCVisibleAndStoppable(t *testing.T) {
	t.Parallel()
	// 1 MiB/s over 8 MiB of garbage: a run of about 8 s.
	m := mount(t, withConfig("gc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 1m\n  check_interval: 100ms\n  rate: 1M\n"))
	writeFile(t, m.Path("keep"), randBytes(1800, 2<<20))
	m.makeGarbage("g", 1810, 8, 1<<20)
	d := m.waitAutoGC(actionDeadline, "an automatic run", func(d autoGCDoc) bool { return d.AutoGC.Runs == 1 })
	status := m.CtlStatus()
	r := m.Report()
	if d.AutoGC.LastState != "running" || r.State != "running" {
		t.Fatalf("the throttled run is not running: auto_gc %+v, compare %+v (a run of 8 MiB at 1 MiB/s)", d.AutoGC, r)
	}
	if !strings.HasPrefix(status, "gc (automatic, unused ") || !strings.Contains(status, "% of live data) ") {
		t.Errorf("ctl during the automatic run: %q, want it to start with \"gc (automatic, unused N%% of live data) \"", status)
	}
	if !strings.HasPrefix(d.Action, "gc (automatic, unused ") {
		t.Errorf("stats action during the automatic run: %q", d.Action)
	}
	raw := readJSON(t, m.control("compare"))
	if raw["automatic"] != true || raw["action"] != "gc" {
		t.Errorf("compare document during the automatic run: automatic %v, action %v; want true, gc", raw["automatic"], raw["action"])
	}
	for _, cmd := range []string{"gc", "compare", "repair"} {
		if err := m.Ctl(cmd); !errors.Is(err, syscall.EBUSY) {
			t.Errorf("%s during the automatic gc: %v, want EBUSY", cmd, err)
		}
	}
	if err := m.Ctl("stop"); err != nil {
		t.Fatal(err)
	}
	if r := m.Report(); r.State != "stopped" || r.Action != "gc" {
		t.Errorf("after stop: compare %+v, want a stopped gc", r)
	}
	m.waitAutoGC(10*time.Second, "the stopped run's end in stats", func(d autoGCDoc) bool { return d.AutoGC.LastState == "stopped" })
	// Still past the threshold, but the interval (1m) has not passed.
	d = m.waitChecks(10)
	if d.AutoGC.Runs != 1 || d.Action != "idle" || d.AutoGC.UnusedBytes <= d.AutoGC.ThresholdBytes {
		t.Errorf("after stop: auto_gc %+v, action %q; want still 1 run, idle, unused past the threshold", d.AutoGC, d.Action)
	}
	// The manual gc collects what is left.
	if r := m.Action("gc"); r.State != "done" || r.Removed == 0 {
		t.Errorf("manual gc after the stopped automatic one: %+v", r)
	}
	if raw := readJSON(t, m.control("compare")); raw["automatic"] != nil {
		t.Errorf("compare document of a manual gc says automatic: %v", raw["automatic"])
	}
}

// TestAutoGCWaitsForManualAction: a manual compare running when the
// garbage passes the threshold keeps the automatic gc from starting (no
// second action); once it ends, the automatic gc starts.
func TestAutoGCWaitsForManualAction(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("gc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 1s\n  check_interval: 100ms\n"))
	writeFile(t, m.Path("big"), randBytes(1900, 12<<20))
	// A deep compare at 2 MiB/s of reads over 12 MiB: several seconds.
	if err := m.Ctl("compare deep rate=2M concurrency=1"); err != nil {
		t.Fatal(err)
	}
	m.makeGarbage("g", 1910, 3, 1<<20)
	// Past the threshold, while the compare runs: several checks, no run.
	m.waitAutoGC(actionDeadline, "a check that sees the garbage", func(d autoGCDoc) bool {
		return d.AutoGC.UnusedBytes > d.AutoGC.ThresholdBytes
	})
	d := m.waitChecks(15)
	r := m.Report()
	if d.AutoGC.Runs != 0 || r.Action != "compare" || r.State != "running" || !strings.HasPrefix(d.Action, "compare deep") {
		t.Fatalf("while a compare runs: auto_gc %+v, action %q, compare %s %s; want no automatic run and the compare still running",
			d.AutoGC, d.Action, r.Action, r.State)
	}
	if err := m.Ctl("stop"); err != nil {
		t.Fatal(err)
	}
	d = m.waitAutoGC(actionDeadline, "the automatic run after the compare", func(d autoGCDoc) bool {
		return d.AutoGC.Runs == 1 && d.AutoGC.LastState == "done"
	})
	if d.AutoGC.LastRemovedBytes < 3<<20 {
		t.Errorf("the automatic run removed %d bytes, want the 3 MiB of garbage", d.AutoGC.LastRemovedBytes)
	}
	// Once the automatic run is over, `.dualstore/compare` shows the last
	// run a command started again, not the gc.
	if r := m.Report(); r.Action != "compare" || r.State != "stopped" || !r.Deep {
		t.Errorf("after the automatic gc: .dualstore/compare shows %s %s (deep %v), want the stopped deep compare", r.Action, r.State, r.Deep)
	}
}

// TestAutoGCOff: with `auto: false` nothing starts however much garbage
// there is, and the garbage is still there for a manual gc.
func TestAutoGCOff(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("gc:\n  auto: false\n  max_unused: 0%\n  min_unused: 0\n  interval: 1s\n  check_interval: 100ms\n"))
	writeFile(t, m.Path("keep"), randBytes(2000, 1<<20))
	m.makeGarbage("g", 2010, 3, 1<<20)
	// Nothing to poll for: the loop does not run. Time for ten checks and
	// a few intervals, as an observation window, not synchronisation.
	time.Sleep(2 * time.Second)
	d := m.autoGC()
	if d.AutoGC.Enabled || d.AutoGC.Runs != 0 || d.AutoGC.Checks != 0 || d.Action != "idle" {
		t.Errorf("auto: false: auto_gc %+v, action %q; want disabled, no checks, no runs", d.AutoGC, d.Action)
	}
	if r := m.Action("gc"); r.State != "done" || r.RemovedBytes < 3<<20 {
		t.Errorf("manual gc with auto off: %+v, want the 3 MiB of garbage removed", r)
	}
}

// TestAutoGCAfterRestore: after `dualstore restore` the stores may hold
// chunks a newer index still references, so the automatic gc does not
// run, says why once (log and stats), and runs again once `gc
// after-restore` has cleared the mark.
func TestAutoGCAfterRestore(t *testing.T) {
	t.Parallel()
	cfg, _, _ := separateStores(t, "log_level: info\ngc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 1s\n  check_interval: 100ms\n")
	m := mount(t, withConfig(cfg))
	keep := randBytes(2100, 2<<20)
	writeFile(t, m.Path("keep"), keep)
	m.waitBackup()
	m.loseDataDir()
	m.restoreCLI("--from", "safety")
	m.start()
	m.makeGarbage("g", 2110, 3, 1<<20)
	d := m.waitAutoGC(actionDeadline, "the automatic gc saying why it does not run", func(d autoGCDoc) bool { return d.AutoGC.Blocked != "" })
	if !strings.Contains(d.AutoGC.Blocked, "gc after-restore") {
		t.Errorf("auto_gc.blocked = %q, want it to say how to unblock", d.AutoGC.Blocked)
	}
	d = m.waitChecks(15)
	if d.AutoGC.Runs != 0 || d.Action != "idle" || d.AutoGC.UnusedBytes <= d.AutoGC.ThresholdBytes {
		t.Errorf("after a restore: auto_gc %+v, action %q; want no run with the garbage past the threshold", d.AutoGC, d.Action)
	}
	if n := strings.Count(m.Logs(), "automatic gc does not run"); n != 1 {
		t.Errorf("the log says %d times why the automatic gc does not run, want once:\n%s", n, tailLog(m.Logs(), 40, 400))
	}
	if r := m.Action("gc after-restore"); r.State != "done" || r.RemovedBytes < 3<<20 {
		t.Errorf("gc after-restore: %+v", r)
	}
	// The mark is gone: new garbage is collected automatically again.
	m.makeGarbage("h", 2120, 3, 1<<20)
	m.waitAutoGC(actionDeadline, "an automatic run once the mark is cleared", func(d autoGCDoc) bool {
		return d.AutoGC.Runs == 1 && d.AutoGC.LastState == "done" && d.AutoGC.Blocked == ""
	})
	if got, err := os.ReadFile(m.Path("keep")); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("keep after the gcs: %v, equal %v", err, bytes.Equal(got, keep))
	}
}

// readJSON reads a control file as a generic JSON object.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", path, err, b)
	}
	return v
}
