package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/index/replica"
	"github.com/dualstore/dualstore/stores"
)

// snapshot is a stats snapshot with a value in every field the
// collector reads, each distinct, so a mix-up shows.
func snapshot() dsfs.Stats {
	var lat stores.Latency
	lat.Observe(50 * time.Microsecond)
	lat.Observe(3 * time.Millisecond)
	h := lat.Histogram()
	failing := dual.WriteHealth{WritesFailing: true, LastWriteError: "2025-01-02T03:04:05Z",
		State: stores.WriteState{WriteLatency: h, ReadLatency: h, LastWriteError: time.Unix(1735787045, 0), LastWriteOK: time.Unix(1735787000, 0)}}
	var s dsfs.Stats
	s.UptimeSeconds, s.ReadPreference = 60, "primary"
	s.Tiers = map[string]dual.TierStats{
		dual.TierPrimary: {
			Writes: stores.OpStats{OK: 10, Errors: 0, Bytes: 1000},
			Reads:  stores.ReadStats{OK: 7, Errors: 3, NotFound: 2, ChecksumErrors: 4, Bytes: 700},
			Stores: []dual.StoreStats{{Name: "primary-0", Type: "local",
				Writes: stores.OpStats{OK: 10, Bytes: 1000}, Reads: stores.ReadStats{OK: 7, Errors: 3, NotFound: 2, ChecksumErrors: 4, Bytes: 700}}},
		},
		dual.TierSafety: {
			Writes: stores.OpStats{OK: 8, Errors: 2, Bytes: 800}, WriteHealth: failing,
			Stores: []dual.StoreStats{{Name: "safety-0", Type: "s3", Writes: stores.OpStats{OK: 8, Errors: 2, Bytes: 800}, WriteHealth: failing}},
		},
	}
	s.Fallbacks, s.SelfHeals, s.SelfHealErrors, s.VerifyFailures, s.OneSidedWrites = 5, 6, 1, 2, 3
	s.PendingBackfill, s.PendingBackfillAgeSeconds, s.Backfilled, s.BackfillErrors = 2, 30, 9, 1
	s.ChunkWrites = dual.OpCount{OK: 10, Errors: 1, Bytes: 1000}
	s.ChunkReads = dual.OpCount{OK: 12, Errors: 1, Bytes: 1200}
	cr := 0.75
	s.ConsistencyRate = &cr
	s.LastCompare = &dual.Report{Action: "compare", State: "done", FinishedAt: "2025-01-02T03:00:00Z", Done: 4, Matches: 3, Missing: 1}
	s.Files, s.Dirs, s.LogicalBytes, s.UniqueChunks, s.UniqueBytes, s.DedupRatio = 3, 2, 5000, 40, 2500, 2
	s.Cache.Hits, s.Cache.Misses, s.Cache.Bytes = 11, 4, 4096
	s.FS.OpenFiles, s.FS.ChunksCut, s.FS.DedupHits, s.FS.DedupBytes, s.FS.ChunksPredicted = 1, 20, 3, 300, 2
	s.FS.BytesWritten, s.FS.BytesRead, s.FS.IOErrors, s.FS.Syncs, s.FS.SyncErrors = 5000, 6000, 1, 7, 0
	s.IndexBackup = &replica.Stats{Seq: 4, Point: time.Unix(1735787000, 0), SnapshotTime: time.Unix(1735700000, 0), Snapshots: 1,
		Tiers: []replica.TierStats{{Name: "primary", LagSeconds: 1.5, Objects: 4, Bytes: 4000}, {Name: "safety", LagSeconds: 20, Behind: 2, Errors: 3}}}
	s.AutoGC = dsfs.AutoGCStats{Enabled: true, Runs: 1, Checks: 5, UnusedBytes: 100, ThresholdBytes: 1000}
	s.FSID = "0123456789abcdef0123456789abcdef"
	s.FUSEOps = map[string]dsfs.FUSEOpStats{"read": {Count: 2, Latency: h}, "lookup": {Count: 2, Latency: h}}
	s.Maintenance = dual.Report{Action: "repair", State: "running", Total: 200, Done: 50, TotalBytes: 2e6, DoneBytes: 5e5}
	s.Health = dsfs.CheckHealth(s, dsfs.HealthOptions{})
	return s
}

func newTestCollector(s dsfs.Stats, err error) *Collector {
	return NewCollector(func(context.Context) (dsfs.Stats, error) { return s, err }, s.FSID, "/mnt/data")
}

// TestCollectorLint: the metrics pass promlint (Prometheus' naming and
// typing conventions) and every defined metric is exported.
func TestCollectorLint(t *testing.T) {
	c := newTestCollector(snapshot(), nil)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather (pedantic): %v", err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["fsid"] != snapshot().FSID || labels["mountpoint"] != "/mnt/data" {
				t.Errorf("%s: labels %v, want fsid and mountpoint", mf.GetName(), labels)
			}
		}
	}
	for _, d := range defs() {
		if !seen[d.name] {
			t.Errorf("metric %s is defined but not exported from a full snapshot", d.name)
		}
	}
}

// TestCollectorValues checks the values and types of a sample of the
// metrics against the snapshot they come from.
func TestCollectorValues(t *testing.T) {
	c := newTestCollector(snapshot(), nil)
	const labels = `fsid="0123456789abcdef0123456789abcdef",mountpoint="/mnt/data"`
	want := `
# HELP dualstore_fallbacks_total Reads served by the other tier after the preferred one failed.
# TYPE dualstore_fallbacks_total counter
dualstore_fallbacks_total{` + labels + `} 5
# HELP dualstore_tier_read_errors_total Chunk reads the tier failed, by class: not_found (the chunk was missing) or failed.
# TYPE dualstore_tier_read_errors_total counter
dualstore_tier_read_errors_total{class="failed",` + labels + `,tier="primary"} 1
dualstore_tier_read_errors_total{class="not_found",` + labels + `,tier="primary"} 2
dualstore_tier_read_errors_total{class="failed",` + labels + `,tier="safety"} 0
dualstore_tier_read_errors_total{class="not_found",` + labels + `,tier="safety"} 0
# HELP dualstore_store_checksum_errors_total Chunk reads where the store returned data that did not verify (not in read errors).
# TYPE dualstore_store_checksum_errors_total counter
dualstore_store_checksum_errors_total{` + labels + `,store="primary-0",tier="primary"} 4
dualstore_store_checksum_errors_total{` + labels + `,store="safety-0",tier="safety"} 0
# HELP dualstore_tier_writes_failing 1 when the last write to the tier failed, else 0.
# TYPE dualstore_tier_writes_failing gauge
dualstore_tier_writes_failing{` + labels + `,tier="primary"} 0
dualstore_tier_writes_failing{` + labels + `,tier="safety"} 1
# HELP dualstore_backfill_pending_age_seconds How long chunks have been pending backfill without a break (0 when none are).
# TYPE dualstore_backfill_pending_age_seconds gauge
dualstore_backfill_pending_age_seconds{` + labels + `} 30
# HELP dualstore_maintenance_progress_ratio Done over planned chunks of the running or last action (0 to 1).
# TYPE dualstore_maintenance_progress_ratio gauge
dualstore_maintenance_progress_ratio{action="repair",` + labels + `} 0.25
# HELP dualstore_last_compare_chunks Chunks of the last finished compare (or repair), by result.
# TYPE dualstore_last_compare_chunks gauge
dualstore_last_compare_chunks{class="errors",` + labels + `} 0
dualstore_last_compare_chunks{class="matches",` + labels + `} 3
dualstore_last_compare_chunks{class="mismatches",` + labels + `} 0
dualstore_last_compare_chunks{class="missing",` + labels + `} 1
dualstore_last_compare_chunks{class="primary_only",` + labels + `} 0
dualstore_last_compare_chunks{class="repair_failed",` + labels + `} 0
dualstore_last_compare_chunks{class="repaired",` + labels + `} 0
dualstore_last_compare_chunks{class="safety_only",` + labels + `} 0
dualstore_last_compare_chunks{class="unrecoverable",` + labels + `} 0
# HELP dualstore_health_problems Problems that make the mount degraded, by kind.
# TYPE dualstore_health_problems gauge
dualstore_health_problems{fsid="0123456789abcdef0123456789abcdef",kind="backfill_stale",mountpoint="/mnt/data"} 0
dualstore_health_problems{fsid="0123456789abcdef0123456789abcdef",kind="backup_lagging",mountpoint="/mnt/data"} 0
dualstore_health_problems{fsid="0123456789abcdef0123456789abcdef",kind="compare_differences",mountpoint="/mnt/data"} 1
dualstore_health_problems{fsid="0123456789abcdef0123456789abcdef",kind="store_errors",mountpoint="/mnt/data"} 1
dualstore_health_problems{fsid="0123456789abcdef0123456789abcdef",kind="writes_failing",mountpoint="/mnt/data"} 1
# HELP dualstore_index_backup_lag_seconds Age of the oldest index change the tier's backup lacks (0: it has them all).
# TYPE dualstore_index_backup_lag_seconds gauge
dualstore_index_backup_lag_seconds{` + labels + `,tier="primary"} 1.5
dualstore_index_backup_lag_seconds{` + labels + `,tier="safety"} 20
`
	names := []string{"dualstore_fallbacks_total", "dualstore_tier_read_errors_total", "dualstore_store_checksum_errors_total",
		"dualstore_tier_writes_failing", "dualstore_backfill_pending_age_seconds", "dualstore_maintenance_progress_ratio",
		"dualstore_last_compare_chunks", "dualstore_health_problems", "dualstore_index_backup_lag_seconds"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// A histogram: the two observations of the snapshot, 50µs and 3ms.
	b, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "dualstore_fuse_operation_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`dualstore_fuse_operation_duration_seconds_bucket{` + labels + `,op="read",le="4e-05"} 0`,
		`dualstore_fuse_operation_duration_seconds_bucket{` + labels + `,op="read",le="8e-05"} 1`,
		`dualstore_fuse_operation_duration_seconds_bucket{` + labels + `,op="read",le="0.00512"} 2`,
		`dualstore_fuse_operation_duration_seconds_bucket{` + labels + `,op="read",le="+Inf"} 2`,
		`dualstore_fuse_operation_duration_seconds_count{` + labels + `,op="read"} 2`,
		`dualstore_fuse_operation_duration_seconds_sum{` + labels + `,op="read"} 0.00305`,
	} {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("histogram lacks %q:\n%s", line, b)
		}
	}
}

// TestServer scrapes a real listener: the text parses, passes promlint,
// and a failed snapshot fails the scrape instead of serving half of it.
func TestServer(t *testing.T) {
	s := snapshot()
	var fail error
	c := NewCollector(func(context.Context) (dsfs.Stats, error) { return s, fail }, s.FSID, "/mnt/data")
	srv, err := Listen("127.0.0.1:0", c, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := get()
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	for _, name := range []string{"dualstore_fallbacks_total", "go_goroutines", "process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("the scrape lacks %s", name)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	fail = errors.New("index: usage: disk I/O error")
	if code, body := get(); code != http.StatusInternalServerError || !strings.Contains(body, "disk I/O error") {
		t.Errorf("a failed snapshot: %d %q, want 500 naming the error", code, body)
	}
	for _, bad := range []string{"localhost", "127.0.0.1:http", "127.0.0.1:65536", "", "on"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) = nil, want an error", bad)
		}
	}
	for _, ok := range []string{"127.0.0.1:9567", ":0", "[::1]:9567", Off} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q) = %v", ok, err)
		}
	}
}
