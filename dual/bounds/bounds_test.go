package bounds

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range All() {
		if seen[b.Key] {
			t.Errorf("%s: two entries", b.Key)
		}
		seen[b.Key] = true
		if b.Min > b.Max {
			t.Errorf("%s: min %d > max %d", b.Key, b.Min, b.Max)
		}
		if b.Why == "" {
			t.Errorf("%s: no why", b.Key)
		}
		if err := b.Check(b.Key, b.Min); err != nil {
			t.Errorf("%s: its min: %v", b.Key, err)
		}
		if err := b.Check(b.Key, b.Max); err != nil {
			t.Errorf("%s: its max: %v", b.Key, err)
		}
		if err := b.Check(b.Key, b.Max+1); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%s: max+1: %v, want ErrOutOfRange", b.Key, err)
		}
	}
	for _, k := range []string{MountCacheMB, MountPrefetch, MountAttrTimeout, MountEntryTimeout, MountSyncInterval,
		MountMaxFileSize, ChunkerMinSize, ChunkerAvgSize, ChunkerMaxSize, DualWriteConcurrent, DualStoreTimeout,
		DualBackfill, CompareConcurrency, CompareBatchSize, CompareRate, CompareMaxDetails, BackupInterval,
		BackupSnapshot, BackupRetention, BackupSpoolMB, GCMaxUnused, GCMinUnused, GCInterval, GCCheckInterval,
		GCRate, S3Timeout, S3Retries, S3Concurrency, S3OutageBackoff} {
		if !seen[k] {
			t.Errorf("key %s has no entry", k)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		v         int64
		want      string // "" = accepted
	}{
		{"count in range", CompareConcurrency, 1024, ""},
		{"count above", CompareConcurrency, 100000, "compare.concurrency 100000: want 1..1024"},
		{"count below", CompareConcurrency, 0, "compare.concurrency 0: want 1..1024"},
		{"MiB", MountCacheMB, 1_000_000_000_000, "mount.cache_mb 1000000000000: want 1..65536 MiB"},
		{"negative duration", MountAttrTimeout, int64(-time.Second), "mount.attr_timeout -1s: want 0s..1h"},
		{"negative means off", MountSyncInterval, int64(-time.Second), ""},
		{"too short", MountSyncInterval, int64(time.Millisecond), "mount.sync_interval 1ms: want 100ms..1h, or negative: only fsync and unmount make commits durable"},
		{"bytes", MountMaxFileSize, 1 << 19, "mount.max_file_size 512KiB: want 1MiB..1EiB"},
		{"rate", CompareRate, 2 << 40, "compare.rate 2TiB/s: want 0..1TiB/s"},
		{"unknown key", "mount.colour", 1, `mount.colour: no bound for "mount.colour": out of range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.key, tc.v)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check(%s, %d) = %v, want nil", tc.key, tc.v, err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("Check(%s, %d) = %v, want %q", tc.key, tc.v, err, tc.want)
			case tc.want != "" && !errors.Is(err, ErrOutOfRange):
				t.Errorf("Check(%s, %d) = %v, does not wrap ErrOutOfRange", tc.key, tc.v, err)
			}
		})
	}
	if err := Of(CompareConcurrency).Check("--concurrency", 2000); err == nil || err.Error() != "--concurrency 2000: want 1..1024" {
		t.Errorf("a flag's name: %v", err)
	}
	if err := Of(GCMaxUnused).CheckFloat("gc.max_unused", 2.5); err != nil {
		t.Errorf("2.5%%: %v", err)
	}
	for _, v := range []float64{1000.5, math.NaN(), math.Inf(1)} {
		if err := Of(GCMaxUnused).CheckFloat("gc.max_unused", v); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%v%%: %v, want ErrOutOfRange", v, err)
		}
	}
}

// TestREADMETable: the bounds table in cmd/dualstore/README.md is this
// table, row for row.
func TestREADMETable(t *testing.T) {
	b, err := os.ReadFile("../../cmd/dualstore/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range All() {
		row := fmt.Sprintf("| `%s` | %s | %s |", e.Key, e.Range(), e.Why)
		if !strings.Contains(string(b), row+"\n") {
			t.Errorf("cmd/dualstore/README.md lacks the row\n%s", row)
		}
	}
}
