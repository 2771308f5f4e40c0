package bounds

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrOutOfRange is wrapped by every error about a value out of its
// range.
var ErrOutOfRange = errors.New("out of range")

// Unit is what a bound's numbers count.
type Unit int

// The units of the table.
const (
	// Count is a plain number (chunks, retries).
	Count Unit = iota
	// Bytes is a size in bytes, written with binary units ("64MiB").
	Bytes
	// MiB is a size in MiB, written as a plain number.
	MiB
	// BytesPerSecond is a rate, written with binary units ("50MiB/s").
	BytesPerSecond
	// Percent is a percentage; the value may have a fraction.
	Percent
	// Duration is a time.Duration in nanoseconds, written as Go does
	// ("200ms", "24h").
	Duration
)

// Largest values other code needs as constants.
const (
	// MaxConcurrency bounds compare.concurrency and the ctl and CLI
	// overrides of it.
	MaxConcurrency = 1024
	// MaxPrefetch bounds mount.prefetch.
	MaxPrefetch = 64
)

// The keys of the table: the config file's, in its dotted form. The CLI
// flags and ctl options that set the same thing check against the same
// entry. S3 keys are a store entry's ("safety[0].timeout").
const (
	MountCacheMB        = "mount.cache_mb"
	MountPrefetch       = "mount.prefetch"
	MountMaxNodes       = "mount.max_nodes"
	MountAttrTimeout    = "mount.attr_timeout"
	MountEntryTimeout   = "mount.entry_timeout"
	MountSyncInterval   = "mount.sync_interval"
	MountMaxFileSize    = "mount.max_file_size"
	ChunkerMinSize      = "chunker.min_size"
	ChunkerAvgSize      = "chunker.avg_size"
	ChunkerMaxSize      = "chunker.max_size"
	DualWriteConcurrent = "dual.write_concurrency"
	DualStoreTimeout    = "dual.store_timeout"
	DualBackfill        = "dual.backfill_interval"
	CompareConcurrency  = "compare.concurrency"
	CompareBatchSize    = "compare.batch_size"
	CompareRate         = "compare.rate"
	CompareMaxDetails   = "compare.max_details"
	BackupInterval      = "index_backup.interval"
	BackupSnapshot      = "index_backup.snapshot_interval"
	BackupRetention     = "index_backup.retention"
	BackupSpoolMB       = "index_backup.spool_mb"
	GCMaxUnused         = "gc.max_unused"
	GCMinUnused         = "gc.min_unused"
	GCInterval          = "gc.interval"
	GCCheckInterval     = "gc.check_interval"
	GCRate              = "gc.rate"
	HealthBackfillAge   = "health.backfill_age"
	HealthBackupLag     = "health.backup_lag"
	S3Timeout           = "s3.timeout"
	S3Retries           = "s3.retries"
	S3Concurrency       = "s3.concurrency"
	S3OutageBackoff     = "s3.outage_backoff"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
	eib = int64(1) << 60
	day = int64(24 * time.Hour)
)

// Bound is one setting's sane range, inclusive at both ends, after its
// default is filled in (a 0 that means "the default" never reaches a
// check).
type Bound struct {
	// Key is the config key ("compare.concurrency").
	Key string
	// Min and Max are in Unit (nanoseconds for Duration, bytes for Bytes
	// and BytesPerSecond).
	Min, Max int64
	Unit     Unit
	// Negative, if set, says what any negative value means ("off"): it is
	// accepted besides the range.
	Negative string
	// Why is the reason for the range, for the docs.
	Why string

	known bool
}

// table is the table. A function, not a variable, so nothing can change
// it; checks are rare (config load, a ctl command).
func table() []Bound {
	d := func(x time.Duration) int64 { return int64(x) }
	return []Bound{
		{Key: MountCacheMB, Min: 1, Max: 64 << 10, Unit: MiB,
			Why: "the chunk cache is RAM (the daemon's soft memory limit is 96 MiB plus it); 64 GiB is more than any working set needs"},
		{Key: MountPrefetch, Min: 1, Max: MaxPrefetch, Unit: Count,
			Why: "chunks a sequential reader fetches ahead, each up to chunker.max_size in memory"},
		{Key: MountMaxNodes, Min: 1000, Max: 10_000_000, Unit: Count,
			Why: "inodes the kernel holds through the mount, about 450 bytes of daemon memory each; fewer than 1000 would make the kernel forget what a single directory listing just looked up"},
		{Key: MountAttrTimeout, Min: 0, Max: d(time.Hour), Unit: Duration,
			Why: "how long the kernel keeps attributes; every change goes through the mount, so longer only saves requests, but not past an hour"},
		{Key: MountEntryTimeout, Min: 0, Max: d(time.Hour), Unit: Duration,
			Why: "how long the kernel keeps names, as attr_timeout"},
		{Key: MountSyncInterval, Min: d(100 * time.Millisecond), Max: d(time.Hour), Unit: Duration, Negative: "only fsync and unmount make commits durable",
			Why: "a power loss takes back at most about this much closed work; below 100ms every burst of writes pays a sync"},
		{Key: MountMaxFileSize, Min: mib, Max: eib, Unit: Bytes,
			Why: "the largest file; the staging file of a random write is sparse on local disk, which ext4 limits to 16 TiB"},
		{Key: ChunkerMinSize, Min: 64, Max: 64 * mib, Unit: Bytes,
			Why: "at least the rolling hash's window; at most the chunker's largest chunk"},
		{Key: ChunkerAvgSize, Min: 64, Max: 64 * mib, Unit: Bytes,
			Why: "a power of two between min_size and max_size"},
		{Key: ChunkerMaxSize, Min: 64, Max: 64 * mib, Unit: Bytes,
			Why: "every stream holds a chunk of up to this in memory"},
		{Key: DualWriteConcurrent, Min: 1, Max: 1024, Unit: Count,
			Why: "chunk writes in flight, each holding its chunk in memory"},
		{Key: DualStoreTimeout, Min: d(time.Second), Max: d(time.Hour), Unit: Duration,
			Why: "one store call; below a second a busy disk fails writes, past an hour a hung store hangs the mount that long"},
		{Key: DualBackfill, Min: d(10 * time.Millisecond), Max: d(time.Hour), Unit: Duration,
			Why: "how often pending copies are retried; an hour bounds how long a tier that came back stays behind"},
		{Key: CompareConcurrency, Min: 1, Max: MaxConcurrency, Unit: Count,
			Why: "chunks one compare, repair, migrate or gc handles at once, each read into memory"},
		{Key: CompareBatchSize, Min: 1, Max: 64 << 10, Unit: Count,
			Why: "chunk ids one index query returns"},
		{Key: CompareRate, Min: 0, Max: tib, Unit: BytesPerSecond,
			Why: "read throttle of a scrub; 0 is unlimited"},
		{Key: CompareMaxDetails, Min: 1, Max: 100000, Unit: Count,
			Why: "differences a report lists, all held in memory and, for the last comparison, in the index"},
		{Key: BackupInterval, Min: d(200 * time.Millisecond), Max: day, Unit: Duration,
			Why: "the index changes a lost data dir can take back; below 200ms every commit is a store write"},
		{Key: BackupSnapshot, Min: d(time.Minute), Max: 30 * day, Unit: Duration,
			Why: "a full snapshot of the index starts a generation, bounding what a restore replays"},
		{Key: BackupRetention, Min: 0, Max: 365 * day, Unit: Duration,
			Why: "points in time kept in both tiers"},
		{Key: BackupSpoolMB, Min: 1, Max: 64 << 10, Unit: MiB,
			Why: "memory that waits for a lagging tier before it is dropped"},
		{Key: GCMaxUnused, Min: 0, Max: 1000, Unit: Percent,
			Why: "unreferenced data allowed, as a share of the live data, before gc runs by itself"},
		{Key: GCMinUnused, Min: 0, Max: eib, Unit: Bytes,
			Why: "unreferenced data under which gc never starts by itself"},
		{Key: GCInterval, Min: d(time.Second), Max: 30 * day, Unit: Duration,
			Why: "least time between two automatic gc runs"},
		{Key: GCCheckInterval, Min: d(100 * time.Millisecond), Max: day, Unit: Duration,
			Why: "how often the unreferenced bytes are measured (an index query)"},
		{Key: GCRate, Min: 0, Max: tib, Unit: BytesPerSecond,
			Why: "bytes an automatic gc removes per second; 0 takes compare.rate"},
		{Key: HealthBackfillAge, Min: d(time.Second), Max: 30 * day, Unit: Duration,
			Why: "pending backfill older than this makes the mount degraded; past a month a tier missing chunks would go unreported"},
		{Key: HealthBackupLag, Min: d(time.Second), Max: 30 * day, Unit: Duration,
			Why: "an index copy in a tier older than this makes the mount degraded, as health.backfill_age"},
		{Key: S3Timeout, Min: d(time.Second), Max: d(time.Hour), Unit: Duration,
			Why: "one S3 call with its retries, as dual.store_timeout"},
		{Key: S3Retries, Min: 0, Max: 100, Unit: Count,
			Why: "retries of a transient failure, each with a growing backoff"},
		{Key: S3Concurrency, Min: 1, Max: 1024, Unit: Count,
			Why: "calls talking to the server at once, each a connection"},
		{Key: S3OutageBackoff, Min: 0, Max: d(15 * time.Second), Unit: Duration, Negative: "never fail fast",
			Why: "how long calls fail at once after the endpoint was unreachable; it is capped at 15s anyway"},
	}
}

// All returns the table, in the order of the README's.
func All() []Bound {
	t := table()
	for i := range t {
		t[i].known = true
	}
	return t
}

// Of returns the entry of key. For a key the table lacks, every check
// fails, naming the key.
func Of(key string) Bound {
	for _, b := range All() {
		if b.Key == key {
			return b
		}
	}
	return Bound{Key: key}
}

// Check checks v against key's entry, naming key in the error.
func Check(key string, v int64) error { return Of(key).Check(key, v) }

// CheckDuration checks a duration against key's entry.
func CheckDuration(key string, v time.Duration) error { return Of(key).Check(key, int64(v)) }

// Check checks v against b; name is how the user wrote the setting: the
// config key, a store's key ("safety[0].timeout"), a flag ("--cache-mb")
// or a ctl option ("concurrency="). The error wraps ErrOutOfRange.
func (b Bound) Check(name string, v int64) error {
	if !b.known {
		return fmt.Errorf("%s: no bound for %q: %w", name, b.Key, ErrOutOfRange)
	}
	if (v < 0 && b.Negative != "") || (v >= b.Min && v <= b.Max) {
		return nil
	}
	return &RangeError{Name: name, Value: b.Format(v), Bound: b}
}

// CheckFloat checks a value with a fraction (a percentage).
func (b Bound) CheckFloat(name string, v float64) error {
	if !b.known {
		return fmt.Errorf("%s: no bound for %q: %w", name, b.Key, ErrOutOfRange)
	}
	if !math.IsNaN(v) && ((v < 0 && b.Negative != "") || (v >= float64(b.Min) && v <= float64(b.Max))) {
		return nil
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if b.Unit == Percent {
		s += "%"
	}
	return &RangeError{Name: name, Value: s, Bound: b}
}

// RangeError is a value out of its bound.
type RangeError struct {
	// Name is the setting as the user wrote it, Value the value as it
	// reads in that unit.
	Name, Value string
	Bound       Bound
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("%s %s: want %s", e.Name, e.Value, e.Bound.Range())
}

// Is makes errors.Is(err, ErrOutOfRange) hold.
func (e *RangeError) Is(target error) bool { return target == ErrOutOfRange }

// Range renders the accepted values: "1..1024", "200ms..24h",
// "1MiB..1EiB", "1..65536 MiB", and what a negative value means if one
// is accepted.
func (b Bound) Range() string {
	var r string
	switch b.Unit {
	case Bytes:
		r = FormatBytes(b.Min) + ".." + FormatBytes(b.Max)
	case BytesPerSecond:
		r = FormatBytes(b.Min) + ".." + FormatBytes(b.Max) + "/s"
	case Duration:
		r = FormatDuration(time.Duration(b.Min)) + ".." + FormatDuration(time.Duration(b.Max))
	case MiB:
		r = fmt.Sprintf("%d..%d MiB", b.Min, b.Max)
	case Percent:
		r = fmt.Sprintf("%d..%d%%", b.Min, b.Max)
	default:
		r = fmt.Sprintf("%d..%d", b.Min, b.Max)
	}
	if b.Negative != "" {
		r += ", or negative: " + b.Negative
	}
	return r
}

// Format renders v in b's unit.
func (b Bound) Format(v int64) string {
	switch b.Unit {
	case Bytes:
		return FormatBytes(v)
	case BytesPerSecond:
		return FormatBytes(v) + "/s"
	case Percent:
		return strconv.FormatInt(v, 10) + "%"
	case Duration:
		return FormatDuration(time.Duration(v))
	}
	return strconv.FormatInt(v, 10)
}

// FormatBytes renders a size with the largest binary unit that divides
// it into a readable number ("64MiB", "1EiB"), else in bytes.
func FormatBytes(v int64) string {
	if v != 0 {
		for _, u := range []struct {
			n    int64
			name string
		}{{eib, "EiB"}, {1 << 50, "PiB"}, {tib, "TiB"}, {gib, "GiB"}, {mib, "MiB"}, {kib, "KiB"}} {
			if v%u.n == 0 && v/u.n < 1<<20 && v/u.n > -(1<<20) {
				return strconv.FormatInt(v/u.n, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(v, 10)
}

// FormatDuration renders a duration as Go does without its zero tails:
// "1h" for 1h0m0s, "10m" for 10m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
