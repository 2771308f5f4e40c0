package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Monitoring a live mount: the Prometheus metrics it serves, `dualstore
// status`, and `dualstore stats --watch` in its piped form.

var metricsURL = regexp.MustCompile(`dualstore: metrics at (http://\S+/metrics)`)

// metricsAt waits for the running daemon of m to print where it serves
// its metrics (it binds once the mount is ready, a moment after the
// control files appear) and returns the URL.
func (m *Mount) metricsAt() string {
	m.t.Helper()
	var url string
	if err := waitFor(mountDeadline, func() error {
		if m.proc == nil {
			return fmt.Errorf("not mounted")
		}
		if s := metricsURL.FindStringSubmatch(m.proc.stderr.String()); s != nil {
			url = s[1]
			return nil
		}
		return fmt.Errorf("the daemon has not said where its metrics are:\n%s", m.proc.stderr.String())
	}); err != nil {
		m.t.Fatal(err)
	}
	return url
}

// scrape is one parsed scrape, with its text.
type scrape struct {
	text string
	mfs  map[string]*dto.MetricFamily
}

func scrapeMetrics(t *testing.T, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("the scrape of %s does not parse as Prometheus text: %v", url, err)
	}
	return scrape{string(b), mfs}
}

// value returns the value of the metric name whose labels include want
// ("k=v" pairs): a counter's or gauge's value, a histogram's count. It
// fails the test when there is no such metric.
func (s scrape) value(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	mf := s.mfs[name]
	if mf == nil {
		t.Fatalf("the scrape has no %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("the scrape has no %s%v", name, want)
	return 0
}

// lint fails the test for every promlint problem of the scrape.
func (s scrape) lint(t *testing.T) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(s.text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetrics scrapes a live mount: the counters move with cp and cat, a
// corrupt chunk raises the checksum and fallback counters, a compare
// shows its progress and then its result, and the output passes
// promlint.
func TestMetrics(t *testing.T) {
	t.Parallel()
	m := mount(t, withArgs("--metrics-addr", "127.0.0.1:0"))
	url := m.metricsAt()
	before := scrapeMetrics(t, url)
	before.lint(t)
	fsid, _ := m.StatsRaw()["fsid"].(string)
	if v := before.value(t, "dualstore_files", "fsid="+fsid, "mountpoint="+m.Dir); v != 0 {
		t.Errorf("dualstore_files of an empty mount = %v", v)
	}

	// cp: writes and bytes per tier and store, FUSE writes.
	src := t.TempDir()
	data := randBytes(70, 6<<20)
	writeFile(t, filepath.Join(src, "f"), data)
	runTool(t, "cp", filepath.Join(src, "f"), m.Path("f"))
	after := scrapeMetrics(t, url)
	for _, tier := range []string{primary, safety} {
		if d := after.value(t, "dualstore_tier_writes_total", "tier="+tier) - before.value(t, "dualstore_tier_writes_total", "tier="+tier); d < 2 {
			t.Errorf("%s tier writes rose by %v after cp of 6 MiB, want >= 2 chunks", tier, d)
		}
		if v := after.value(t, "dualstore_store_written_bytes_total", "tier="+tier, "store="+tier+"-0"); v < float64(len(data)) {
			t.Errorf("%s-0 written bytes %v, want >= %d", tier, v, len(data))
		}
		if v := after.value(t, "dualstore_tier_write_duration_seconds", "tier="+tier); v < 2 {
			t.Errorf("%s tier write latency histogram counts %v writes, want >= 2", tier, v)
		}
	}
	if v := after.value(t, "dualstore_fs_written_bytes_total"); v != float64(len(data)) {
		t.Errorf("dualstore_fs_written_bytes_total = %v, want %d", v, len(data))
	}
	if v := after.value(t, "dualstore_fuse_operation_duration_seconds", "op=write"); v < 1 {
		t.Errorf("FUSE writes counted: %v", v)
	}
	if v := after.value(t, "dualstore_files"); v != 1 {
		t.Errorf("dualstore_files = %v after one cp, want 1", v)
	}

	// A corrupt chunk in primary, read after a remount (no cache): the
	// checksum error and the fallback show, the health goes degraded.
	refs := m.FileChunks(primary, data)
	m.Unmount()
	corruptChunk(t, m.ChunkPath(primary, refs[0].ID))
	m.start()
	url = m.metricsAt()
	cmpFiles(t, filepath.Join(src, "f"), m.Path("f"))
	bad := scrapeMetrics(t, url)
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"dualstore_tier_checksum_errors_total", []string{"tier=primary"}},
		{"dualstore_store_checksum_errors_total", []string{"tier=primary", "store=primary-0"}},
		{"dualstore_fallbacks_total", nil},
		{"dualstore_tier_reads_total", []string{"tier=safety"}},
		{"dualstore_fuse_operation_duration_seconds", []string{"op=read"}},
		{"dualstore_health_degraded", nil},
		{"dualstore_health_problems", []string{"kind=store_errors"}},
	} {
		if v := bad.value(t, c.name, c.labels...); v < 1 {
			t.Errorf("after reading a file with a corrupt primary chunk: %s%v = %v, want >= 1", c.name, c.labels, v)
		}
	}

	// A compare, throttled so that it is still running when scraped, then
	// stopped; a full one shows its result.
	if err := m.Ctl("compare deep rate=64K concurrency=1"); err != nil {
		t.Fatalf("starting a compare: %v (ctl: %s)", err, m.CtlStatus())
	}
	var running scrape
	if err := waitFor(actionDeadline, func() error {
		running = scrapeMetrics(t, url)
		if running.value(t, "dualstore_maintenance_running", "action=compare") != 1 {
			return fmt.Errorf("dualstore_maintenance_running{action=compare} is not 1 (ctl: %s)", m.CtlStatus())
		}
		if running.value(t, "dualstore_maintenance_planned_chunks", "action=compare") < 1 {
			return fmt.Errorf("the running compare has no planned chunks yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := running.value(t, "dualstore_maintenance_progress_ratio", "action=compare"); r < 0 || r >= 1 {
		t.Errorf("a throttled compare's progress ratio is %v, want in [0, 1)", r)
	}
	if err := m.Ctl("stop"); err != nil {
		t.Fatal(err)
	}
	m.WaitAction()
	r := m.Compare(false)
	done := scrapeMetrics(t, url)
	if v := done.value(t, "dualstore_maintenance_running", "action=compare"); v != 0 {
		t.Errorf("after the compare: running %v", v)
	}
	if d, p := done.value(t, "dualstore_maintenance_done_chunks", "action=compare"), done.value(t, "dualstore_maintenance_planned_chunks", "action=compare"); d != p || d != float64(r.Total) {
		t.Errorf("after the compare: done %v of %v chunks, the report says %d", d, p, r.Total)
	}
	if v := done.value(t, "dualstore_last_compare_chunks", "class=matches"); v != float64(r.Matches) || v < 2 {
		t.Errorf("last compare matches %v, the report says %d", v, r.Matches)
	}
	if v := done.value(t, "dualstore_last_compare_timestamp_seconds"); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last compare timestamp %v", v)
	}
	done.lint(t)
}

// TestStatusHealth: `status -x` says healthy, goes degraded (exit 1)
// while the safety store refuses writes, and healthy again once it takes
// them and the backfill has copied what it missed.
func TestStatusHealth(t *testing.T) {
	t.Parallel()
	safe := sfTmpfs(t, "32m")
	m := mount(t, withConfig(fmt.Sprintf("dual:\n  backfill_interval: 200ms\nsafety:\n  - name: safety-0\n    path: %s\n", safe)))
	status := func(args ...string) (string, int) {
		t.Helper()
		out, errOut, code := CLI(t, append(append([]string{"status"}, args...), m.Dir)...)
		if code != 0 && code != 1 {
			t.Fatalf("status %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out, code
	}
	if out, code := status("-x"); out != "healthy\n" || code != 0 {
		t.Fatalf("status -x of a fresh mount: %q, exit %d; want healthy, 0", out, code)
	}

	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), randBytes(71, 3<<20))
	runTool(t, "mount", "-o", "remount,ro", safe)
	remounted := true
	t.Cleanup(func() {
		if remounted {
			_ = exec.Command("mount", "-o", "remount,rw", safe).Run()
		}
	})
	if out, err := sfCopy(filepath.Join(src, "f"), m.Path("f")); err != nil {
		t.Fatalf("cp with a read-only safety store (require primary): %v %s", err, out)
	}
	out, code := status("-x")
	if code != 1 || !strings.HasPrefix(out, "degraded: ") || !strings.Contains(out, "tier safety is failing writes") {
		t.Errorf("status -x with a read-only safety store: %q, exit %d; want a degraded line naming the safety tier, exit 1", out, code)
	}
	full, code := status()
	if code != 1 || !strings.Contains(full, "DEGRADED") || !regexp.MustCompile(`(?m)^safety\s+tier\s+FAILING`).MatchString(full) {
		t.Errorf("status with a read-only safety store (exit %d):\n%s\nwant DEGRADED and the safety tier FAILING, exit 1", code, full)
	}
	var st struct {
		Health struct {
			State    string `json:"state"`
			Problems []struct {
				Kind, Subject, Message string
			} `json:"problems"`
		} `json:"health"`
	}
	m.statsInto(&st)
	if st.Health.State != "degraded" || len(st.Health.Problems) == 0 || st.Health.Problems[0].Kind != "writes_failing" || st.Health.Problems[0].Subject != safety {
		t.Errorf("stats health %+v, want degraded with writes_failing of safety first", st.Health)
	}

	runTool(t, "mount", "-o", "remount,rw", safe)
	remounted = false
	m.sfWaitPending(actionDeadline)
	if out, code := status("-x"); out != "healthy\n" || code != 0 {
		t.Errorf("status -x after the backfill: %q, exit %d; want healthy, 0", out, code)
	}
	if full, _ := status(); !strings.Contains(full, "HEALTHY") {
		t.Errorf("status after the backfill:\n%s", full)
	}
}

// TestStatsWatchPiped runs `stats --watch` into a pipe: a header, then
// one line per interval with a value for every column, and the write
// rates of a writer that runs meanwhile.
func TestStatsWatchPiped(t *testing.T) {
	t.Parallel()
	m := mount(t)
	var stop atomic.Bool
	writerDone := make(chan error, 1)
	running := make(chan struct{}) // closed once a first file is written
	go func() {
		data := randBytes(72, 1<<20)
		for i := 0; !stop.Load(); i++ {
			if err := os.WriteFile(m.Path(fmt.Sprintf("w%d", i%4)), append(data, byte(i)), 0o644); err != nil {
				if i == 0 {
					close(running)
				}
				writerDone <- err
				return
			}
			if i == 0 {
				close(running)
			}
		}
		writerDone <- nil
	}()
	// The watch starts once the writer is under way, and spans 2 s: a
	// writer on a loaded machine still writes some chunk in that time.
	<-running
	out, errOut, code := CLI(t, "stats", "--watch", "--interval", "400ms", "--count", "5", m.Dir)
	stop.Store(true)
	if err := <-writerDone; err != nil {
		t.Fatalf("the writer: %v", err)
	}
	if code != 0 {
		t.Fatalf("stats --watch: exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("stats --watch --count 5 printed %d lines, want a header and 5:\n%s", len(lines), out)
	}
	header := strings.Fields(lines[0])
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, h := range []string{"time", "primary:wMiB/s", "primary:w/s", "safety:w/s", "fuse/s", "fallback/s", "heal/s", "backfill/s", "pending", "health"} {
		if _, ok := col[h]; !ok {
			t.Errorf("the header lacks %s: %s", h, lines[0])
		}
	}
	var writes, fuse float64
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			t.Errorf("line %q has %d fields, the header %d", l, len(f), len(header))
			continue
		}
		if _, err := time.Parse("15:04:05", f[0]); err != nil {
			t.Errorf("line %q: time %v", l, err)
		}
		for i := 1; i < len(f)-1; i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || v < 0 {
				t.Errorf("line %q: %s = %q, want a number >= 0", l, header[i], f[i])
			}
		}
		if f[col["health"]] != "healthy" {
			t.Errorf("line %q: health %q", l, f[col["health"]])
		}
		w, _ := strconv.ParseFloat(f[col["primary:w/s"]], 64)
		u, _ := strconv.ParseFloat(f[col["fuse/s"]], 64)
		writes += w
		fuse += u
	}
	if writes == 0 || fuse == 0 {
		t.Errorf("a writer ran throughout, yet primary writes/s %v and FUSE requests/s %v over 5 intervals:\n%s", writes, fuse, out)
	}
}

// TestMetricsPortTaken: a metrics address whose port is taken does not
// stop the mount; the stats' warnings and `dualstore stats` say that no
// metrics are served, and why.
func TestMetricsPortTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	m := mount(t, withArgs("--metrics-addr", addr))
	writeFile(t, m.Path("f"), []byte("still mounted\n"))
	want := []string{"metrics not served", "mount.metrics_addr " + addr, "address already in use"}
	if err := waitFor(mountDeadline, func() error {
		raw, _ := m.StatsRaw()["warnings"].([]any)
		var got []string
		for _, w := range raw {
			s, _ := w.(string)
			got = append(got, s)
		}
		if !anyHasAll(got, want) {
			return fmt.Errorf("the stats' warnings %q say nothing of %q", got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := CLI(t, "stats", m.Dir)
	if code != 0 || !strings.Contains(out, "WARNING: metrics not served") {
		t.Errorf("dualstore stats: exit %d, no metrics warning:\n%s%s", code, out, errOut)
	}
	if got, err := os.ReadFile(m.Path("f")); err != nil || string(got) != "still mounted\n" {
		t.Errorf("read back %q, %v", got, err)
	}
}
