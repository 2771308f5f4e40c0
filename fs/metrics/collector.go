package metrics

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/stores"
)

// Source returns a stats snapshot: (*fs.FS).Stats.
type Source func(ctx context.Context) (dsfs.Stats, error)

// scrapeTimeout bounds the one index query a snapshot makes.
const scrapeTimeout = 10 * time.Second

// def is one metric: its name, help and variable labels. The type is
// the one its name and Collect give it.
type def struct {
	name, help string
	labels     []string
}

var (
	tierLabels  = []string{"tier"}
	storeLabels = []string{"tier", "store"}
)

// defs lists every metric the collector exports.
func defs() []def {
	d := []def{
		{"dualstore_start_time_seconds", "When the mount started, as a Unix time.", nil},
		{"dualstore_read_preference_info", "The tier reads go to first (always 1; the preference is the label).", []string{"preference"}},
		{"dualstore_health_degraded", "1 when the mount is degraded (see dualstore_health_problems), 0 when healthy.", nil},
		{"dualstore_read_only", "1 when the tree is mounted read-only (no changes, no background gc), else 0.", nil},
		{"dualstore_health_problems", "Problems that make the mount degraded, by kind.", []string{"kind"}},

		{"dualstore_chunk_writes_total", "Chunk writes the dual manager completed (one per chunk, whatever the tiers).", nil},
		{"dualstore_chunk_write_errors_total", "Chunk writes that failed (the required tiers did not take the chunk).", nil},
		{"dualstore_chunk_written_bytes_total", "Bytes of the chunks written, counted once.", nil},
		{"dualstore_chunk_reads_total", "Chunk reads the dual manager served with verified data.", nil},
		{"dualstore_chunk_read_errors_total", "Chunk reads no tier could serve.", nil},
		{"dualstore_chunk_read_bytes_total", "Bytes of the chunks read, counted once.", nil},
		{"dualstore_fallbacks_total", "Reads served by the other tier after the preferred one failed.", nil},
		{"dualstore_self_heals_total", "Chunks copied back into the tier that failed to serve them.", nil},
		{"dualstore_self_heal_errors_total", "Self-heals that failed.", nil},
		{"dualstore_verify_failures_total", "Chunks whose read-back after a write did not verify (verify_both).", nil},
		{"dualstore_one_sided_writes_total", "Chunk writes one tier missed (kept for backfill).", nil},
		{"dualstore_backfill_pending_chunks", "Chunks a tier is known to miss, waiting for the backfill.", nil},
		{"dualstore_backfill_pending_age_seconds", "How long chunks have been pending backfill without a break (0 when none are).", nil},
		{"dualstore_backfilled_chunks_total", "Chunks the backfill copied into the tier that missed them.", nil},
		{"dualstore_backfill_errors_total", "Backfill copies that failed (retried later).", nil},

		{"dualstore_files", "Regular files in the filesystem.", nil},
		{"dualstore_directories", "Directories in the filesystem.", nil},
		{"dualstore_logical_bytes", "Sum of the sizes of the files.", nil},
		{"dualstore_unique_chunks", "Distinct chunks the files reference.", nil},
		{"dualstore_unique_bytes", "Bytes of the distinct chunks the files reference (per tier).", nil},
		{"dualstore_dedup_ratio", "Logical bytes per unique byte.", nil},
		{"dualstore_chunk_cache_hits_total", "Chunk reads served from the in-memory chunk cache.", nil},
		{"dualstore_chunk_cache_misses_total", "Chunk reads the chunk cache could not serve.", nil},
		{"dualstore_chunk_cache_bytes", "Bytes held by the chunk cache.", nil},
		{"dualstore_open_files", "Files open through the mount.", nil},
		{"dualstore_chunks_cut_total", "Chunks the chunker cut from written data.", nil},
		{"dualstore_chunks_predicted_total", "Chunks cut without the rolling hash, because the index knew the bytes.", nil},
		{"dualstore_dedup_hits_total", "Written chunks the stores already held (not written again).", nil},
		{"dualstore_dedup_bytes_total", "Bytes of the written chunks the stores already held.", nil},
		{"dualstore_fs_written_bytes_total", "Bytes applications wrote to files.", nil},
		{"dualstore_fs_read_bytes_total", "Bytes applications read from files.", nil},
		{"dualstore_io_errors_total", "Requests answered with EIO.", nil},
		{"dualstore_syncs_total", "Durability points run (fsync, the sync interval, unmount).", nil},
		{"dualstore_sync_errors_total", "Durability points that failed (retried by the next one).", nil},
		{"dualstore_recovery_checked_files_total", "Files checked after an unclean shutdown.", nil},
		{"dualstore_recovery_healed_chunks_total", "Chunks copied back into a tier after an unclean shutdown.", nil},
		{"dualstore_recovery_reverted_files_total", "Files reverted to their last durable content after an unclean shutdown.", nil},
		{"dualstore_fuse_operation_duration_seconds", "FUSE requests answered, by kind (the FUSE opcode), and how long each took.", []string{"op"}},

		{"dualstore_maintenance_running", "1 while the action runs (compare, repair, migrate, gc), else 0.", []string{"action"}},
		{"dualstore_maintenance_done_chunks", "Chunks the running or last action has processed.", []string{"action"}},
		{"dualstore_maintenance_planned_chunks", "Chunks the running or last action has to process.", []string{"action"}},
		{"dualstore_maintenance_done_bytes", "Bytes the running or last action has processed.", []string{"action"}},
		{"dualstore_maintenance_planned_bytes", "Bytes the running or last action has to process.", []string{"action"}},
		{"dualstore_maintenance_progress_ratio", "Done over planned chunks of the running or last action (0 to 1).", []string{"action"}},
		{"dualstore_last_compare_chunks", "Chunks of the last finished compare (or repair), by result.", []string{"class"}},
		{"dualstore_last_compare_timestamp_seconds", "When the last compare (or repair) finished, as a Unix time.", nil},
		{"dualstore_last_compare_consistency_ratio", "Matching over compared chunks in the last compare.", nil},

		{"dualstore_auto_gc_enabled", "1 when the background gc is on.", nil},
		{"dualstore_auto_gc_runs_total", "Automatic gc runs started.", nil},
		{"dualstore_auto_gc_checks_total", "Measurements of the unreferenced bytes.", nil},
		{"dualstore_auto_gc_unused_bytes", "Bytes of chunks no file references, at the last check.", nil},
		{"dualstore_auto_gc_threshold_bytes", "Unreferenced bytes past which an automatic gc starts.", nil},
		{"dualstore_auto_gc_last_removed_bytes", "Bytes the last automatic gc removed.", nil},

		{"dualstore_index_backup_lag_seconds", "Age of the oldest index change the tier's backup lacks (0: it has them all).", tierLabels},
		{"dualstore_index_backup_behind_objects", "Backup objects not yet shipped to the tier.", tierLabels},
		{"dualstore_index_backup_uploaded_objects_total", "Backup objects shipped to the tier.", tierLabels},
		{"dualstore_index_backup_uploaded_bytes_total", "Bytes of backup objects shipped to the tier.", tierLabels},
		{"dualstore_index_backup_errors_total", "Failed backup uploads to the tier.", tierLabels},
		{"dualstore_index_backup_point_timestamp_seconds", "The newest point in time of the index handed to the backup, as a Unix time.", nil},
		{"dualstore_index_backup_snapshot_timestamp_seconds", "When the current backup generation's snapshot was taken, as a Unix time.", nil},
		{"dualstore_index_backup_snapshots_total", "Snapshots (new backup generations) taken.", nil},
		{"dualstore_index_backup_spool_objects", "Backup objects held in memory for a lagging tier.", nil},
		{"dualstore_index_backup_spool_bytes", "Bytes held in memory for a lagging tier.", nil},
	}
	// Tiers and their stores have the same metrics: dualstore_tier_* and
	// dualstore_store_* (never one name for both: sum() would count the
	// stores twice).
	for _, level := range []struct {
		prefix, what string
		labels       []string
	}{{"dualstore_tier_", "the tier", tierLabels}, {"dualstore_store_", "the store", storeLabels}} {
		p, w, l := level.prefix, level.what, level.labels
		d = append(d,
			def{p + "writes_total", "Chunk writes " + w + " took.", l},
			def{p + "write_errors_total", "Chunk writes " + w + " failed.", l},
			def{p + "written_bytes_total", "Bytes written to " + w + ".", l},
			def{p + "reads_total", "Chunk reads " + w + " served with verified data.", l},
			def{p + "read_errors_total", "Chunk reads " + w + " failed, by class: not_found (the chunk was missing) or failed.", append(l[:len(l):len(l)], "class")},
			def{p + "checksum_errors_total", "Chunk reads where " + w + " returned data that did not verify (not in read errors).", l},
			def{p + "read_bytes_total", "Bytes read from " + w + ".", l},
			def{p + "write_duration_seconds", "How long chunk writes to " + w + " took.", l},
			def{p + "read_duration_seconds", "How long chunk reads from " + w + " took.", l},
			def{p + "writes_failing", "1 when the last write to " + w + " failed, else 0.", l},
			def{p + "last_write_error_timestamp_seconds", "When a write to " + w + " last failed, as a Unix time.", l},
		)
	}
	d = append(d, def{"dualstore_store_info", "The stores of each tier (always 1; the type is a label).", []string{"tier", "store", "type"}})
	return d
}

// Collector is a prometheus.Collector over a mount's stats.
type Collector struct {
	src    Source
	descs  map[string]*prometheus.Desc
	bounds []float64 // the latency histograms' bucket bounds, in seconds
	// invalid reports a failed snapshot.
	invalid *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector that reads src at every scrape and
// labels every metric with fsid and mountpoint.
func NewCollector(src Source, fsid, mountpoint string) *Collector {
	cl := prometheus.Labels{"fsid": fsid, "mountpoint": mountpoint}
	c := &Collector{src: src, descs: map[string]*prometheus.Desc{}}
	for _, d := range defs() {
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, d.labels, cl)
	}
	c.invalid = prometheus.NewDesc("dualstore_stats_error", "The stats snapshot failed.", nil, cl)
	for i := range stores.HistogramBuckets {
		c.bounds = append(c.bounds, stores.HistogramBound(i).Seconds())
	}
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// emitter sends the metrics of one scrape.
type emitter struct {
	c  *Collector
	ch chan<- prometheus.Metric
}

func (e emitter) send(name string, t prometheus.ValueType, v float64, lv ...string) {
	d := e.c.descs[name]
	if d == nil {
		e.ch <- prometheus.NewInvalidMetric(e.c.invalid, fmt.Errorf("metric %s is not defined", name))
		return
	}
	m, err := prometheus.NewConstMetric(d, t, v, lv...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func (e emitter) counter(name string, v int64, lv ...string) {
	e.send(name, prometheus.CounterValue, float64(v), lv...)
}

func (e emitter) gauge(name string, v float64, lv ...string) {
	e.send(name, prometheus.GaugeValue, v, lv...)
}

func (e emitter) flag(name string, on bool, lv ...string) {
	v := 0.0
	if on {
		v = 1
	}
	e.gauge(name, v, lv...)
}

// timestamp sends t as Unix seconds, or nothing when t is unset.
func (e emitter) timestamp(name string, t time.Time, lv ...string) {
	if !t.IsZero() {
		e.gauge(name, float64(t.UnixNano())/1e9, lv...)
	}
}

func (e emitter) histogram(name string, h stores.LatencyHistogram, lv ...string) {
	d := e.c.descs[name]
	buckets := make(map[float64]uint64, len(e.c.bounds))
	for i, b := range e.c.bounds {
		buckets[b] = h.Buckets[i]
	}
	m, err := prometheus.NewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, lv...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

// Collect takes one snapshot and sends every metric of it. A snapshot
// that fails (the index cannot be read) fails the scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := c.src(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.invalid, err)
		return
	}
	e := emitter{c, ch}
	e.general(s)
	e.manager(s)
	e.tiers(s)
	e.files(s)
	e.maintenance(s)
	e.backup(s)
}

func (e emitter) general(s dsfs.Stats) {
	started := s.Started
	if started.IsZero() {
		started = time.Now().Add(-time.Duration(s.UptimeSeconds * float64(time.Second)))
	}
	e.timestamp("dualstore_start_time_seconds", started)
	e.gauge("dualstore_read_preference_info", 1, s.ReadPreference)
	e.flag("dualstore_health_degraded", s.Health.State != dsfs.Healthy)
	e.flag("dualstore_read_only", s.ReadOnly)
	n := map[string]int{}
	for _, p := range s.Health.Problems {
		n[p.Kind]++
	}
	for _, k := range dsfs.ProblemKinds() {
		e.gauge("dualstore_health_problems", float64(n[k]), k)
	}
}

func (e emitter) manager(s dsfs.Stats) {
	e.counter("dualstore_chunk_writes_total", s.ChunkWrites.OK)
	e.counter("dualstore_chunk_write_errors_total", s.ChunkWrites.Errors)
	e.counter("dualstore_chunk_written_bytes_total", s.ChunkWrites.Bytes)
	e.counter("dualstore_chunk_reads_total", s.ChunkReads.OK)
	e.counter("dualstore_chunk_read_errors_total", s.ChunkReads.Errors)
	e.counter("dualstore_chunk_read_bytes_total", s.ChunkReads.Bytes)
	e.counter("dualstore_fallbacks_total", s.Fallbacks)
	e.counter("dualstore_self_heals_total", s.SelfHeals)
	e.counter("dualstore_self_heal_errors_total", s.SelfHealErrors)
	e.counter("dualstore_verify_failures_total", s.VerifyFailures)
	e.counter("dualstore_one_sided_writes_total", s.OneSidedWrites)
	e.gauge("dualstore_backfill_pending_chunks", float64(s.PendingBackfill))
	e.gauge("dualstore_backfill_pending_age_seconds", s.PendingBackfillAgeSeconds)
	e.counter("dualstore_backfilled_chunks_total", s.Backfilled)
	e.counter("dualstore_backfill_errors_total", s.BackfillErrors)
}

// level is the metrics of a tier or a store.
func (e emitter) level(prefix string, w stores.OpStats, r stores.ReadStats, h dual.WriteHealth, lv ...string) {
	e.counter(prefix+"writes_total", w.OK, lv...)
	e.counter(prefix+"write_errors_total", w.Errors, lv...)
	e.counter(prefix+"written_bytes_total", w.Bytes, lv...)
	e.counter(prefix+"reads_total", r.OK, lv...)
	e.counter(prefix+"read_errors_total", r.NotFound, append(lv, "not_found")...)
	e.counter(prefix+"read_errors_total", r.Errors-r.NotFound, append(lv, "failed")...)
	e.counter(prefix+"checksum_errors_total", r.ChecksumErrors, lv...)
	e.counter(prefix+"read_bytes_total", r.Bytes, lv...)
	e.histogram(prefix+"write_duration_seconds", h.State.WriteLatency, lv...)
	e.histogram(prefix+"read_duration_seconds", h.State.ReadLatency, lv...)
	e.flag(prefix+"writes_failing", h.WritesFailing, lv...)
	e.timestamp(prefix+"last_write_error_timestamp_seconds", h.State.LastWriteError, lv...)
}

func (e emitter) tiers(s dsfs.Stats) {
	names := make([]string, 0, len(s.Tiers))
	for n := range s.Tiers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, tier := range names {
		t := s.Tiers[tier]
		e.level("dualstore_tier_", t.Writes, t.Reads, t.WriteHealth, tier)
		for _, m := range t.Stores {
			e.gauge("dualstore_store_info", 1, tier, m.Name, m.Type)
			e.level("dualstore_store_", m.Writes, m.Reads, m.WriteHealth, tier, m.Name)
		}
	}
}

func (e emitter) files(s dsfs.Stats) {
	e.gauge("dualstore_files", float64(s.Files))
	e.gauge("dualstore_directories", float64(s.Dirs))
	e.gauge("dualstore_logical_bytes", float64(s.LogicalBytes))
	e.gauge("dualstore_unique_chunks", float64(s.UniqueChunks))
	e.gauge("dualstore_unique_bytes", float64(s.UniqueBytes))
	e.gauge("dualstore_dedup_ratio", s.DedupRatio)
	e.counter("dualstore_chunk_cache_hits_total", s.Cache.Hits)
	e.counter("dualstore_chunk_cache_misses_total", s.Cache.Misses)
	e.gauge("dualstore_chunk_cache_bytes", float64(s.Cache.Bytes))
	f := s.FS
	e.gauge("dualstore_open_files", float64(f.OpenFiles))
	e.counter("dualstore_chunks_cut_total", f.ChunksCut)
	e.counter("dualstore_chunks_predicted_total", f.ChunksPredicted)
	e.counter("dualstore_dedup_hits_total", f.DedupHits)
	e.counter("dualstore_dedup_bytes_total", f.DedupBytes)
	e.counter("dualstore_fs_written_bytes_total", f.BytesWritten)
	e.counter("dualstore_fs_read_bytes_total", f.BytesRead)
	e.counter("dualstore_io_errors_total", f.IOErrors)
	e.counter("dualstore_syncs_total", f.Syncs)
	e.counter("dualstore_sync_errors_total", f.SyncErrors)
	e.counter("dualstore_recovery_checked_files_total", f.RecoveryChecked)
	e.counter("dualstore_recovery_healed_chunks_total", f.RecoveryHealed)
	e.counter("dualstore_recovery_reverted_files_total", f.RecoveryReverted)
	ops := make([]string, 0, len(s.FUSEOps))
	for op := range s.FUSEOps {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		e.histogram("dualstore_fuse_operation_duration_seconds", s.FUSEOps[op].Latency, op)
	}
}

// maintenanceActions are the actions ctl starts.
var maintenanceActions = [...]string{"compare", "repair", "migrate", "gc"}

func (e emitter) maintenance(s dsfs.Stats) {
	r := s.Maintenance
	for _, a := range maintenanceActions {
		e.flag("dualstore_maintenance_running", r.State == "running" && r.Action == a, a)
	}
	if r.State != "" && r.State != "idle" {
		e.gauge("dualstore_maintenance_done_chunks", float64(r.Done), r.Action)
		e.gauge("dualstore_maintenance_planned_chunks", float64(r.Total), r.Action)
		e.gauge("dualstore_maintenance_done_bytes", float64(r.DoneBytes), r.Action)
		e.gauge("dualstore_maintenance_planned_bytes", float64(r.TotalBytes), r.Action)
		ratio := 1.0
		if r.Total > 0 {
			ratio = min(float64(r.Done)/float64(r.Total), 1)
		}
		e.gauge("dualstore_maintenance_progress_ratio", ratio, r.Action)
	}
	if c := s.LastCompare; c != nil {
		for _, v := range []struct {
			class string
			n     int64
		}{
			{"matches", c.Matches}, {"mismatches", c.Mismatches}, {"primary_only", c.PrimaryOnly}, {"safety_only", c.SafetyOnly},
			{"missing", c.Missing}, {"errors", c.Errors}, {"repaired", c.Repaired}, {"unrecoverable", c.Unrecoverable},
			{"repair_failed", c.RepairFailed},
		} {
			e.gauge("dualstore_last_compare_chunks", float64(v.n), v.class)
		}
		if t, err := time.Parse(time.RFC3339, string(c.FinishedAt)); err == nil {
			e.timestamp("dualstore_last_compare_timestamp_seconds", t)
		}
	}
	if s.ConsistencyRate != nil {
		e.gauge("dualstore_last_compare_consistency_ratio", *s.ConsistencyRate)
	}
	g := s.AutoGC
	e.flag("dualstore_auto_gc_enabled", g.Enabled)
	e.counter("dualstore_auto_gc_runs_total", g.Runs)
	e.counter("dualstore_auto_gc_checks_total", g.Checks)
	e.gauge("dualstore_auto_gc_unused_bytes", float64(g.UnusedBytes))
	e.gauge("dualstore_auto_gc_threshold_bytes", float64(g.ThresholdBytes))
	e.gauge("dualstore_auto_gc_last_removed_bytes", float64(g.LastRemovedBytes))
}

func (e emitter) backup(s dsfs.Stats) {
	b := s.IndexBackup
	if b == nil {
		return
	}
	for _, t := range b.Tiers {
		e.gauge("dualstore_index_backup_lag_seconds", t.LagSeconds, t.Name)
		e.gauge("dualstore_index_backup_behind_objects", float64(t.Behind), t.Name)
		e.counter("dualstore_index_backup_uploaded_objects_total", t.Objects, t.Name)
		e.counter("dualstore_index_backup_uploaded_bytes_total", t.Bytes, t.Name)
		e.counter("dualstore_index_backup_errors_total", t.Errors, t.Name)
	}
	e.timestamp("dualstore_index_backup_point_timestamp_seconds", b.Point)
	e.timestamp("dualstore_index_backup_snapshot_timestamp_seconds", b.SnapshotTime)
	e.counter("dualstore_index_backup_snapshots_total", b.Snapshots)
	e.gauge("dualstore_index_backup_spool_objects", float64(b.SpoolObjects))
	e.gauge("dualstore_index_backup_spool_bytes", float64(b.SpoolBytes))
}

// Names returns the name of every metric the collector exports (a
// histogram's series add _bucket, _sum and _count), for the checks that
// dashboards and docs name only metrics that exist.
func Names() []string {
	var out []string
	for _, d := range defs() {
		out = append(out, d.name)
	}
	return out
}
