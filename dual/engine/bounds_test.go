package engine

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/s3"
)

// completeYAML parses yaml (with data_dir set unless it sets one) and
// completes it.
func completeYAML(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	var c Config
	if err := ParseYAML([]byte(yaml), &c); err != nil {
		return &c, err
	}
	return &c, c.Complete(DefaultRegistry())
}

// TestConfigRefusesOutOfRange: every number of the config out of its
// bounds is refused, the error naming the key, the value and the range.
func TestConfigRefusesOutOfRange(t *testing.T) {
	s3Head := "data_dir: /tmp/d\nsafety:\n  - type: s3\n    endpoint: h\n    bucket: chunks\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"cache", "mount:\n  cache_mb: 1000000000000\n", "mount.cache_mb 1000000000000: want 1..65536 MiB"},
		{"negative cache", "mount:\n  cache_mb: -5\n", "mount.cache_mb -5: want 1..65536 MiB"},
		{"prefetch", "mount:\n  prefetch: 65\n", "mount.prefetch 65: want 1..64"},
		{"attr timeout negative", "mount:\n  attr_timeout: -1s\n", "mount.attr_timeout -1s: want 0s..1h"},
		{"entry timeout long", "mount:\n  entry_timeout: 2h\n", "mount.entry_timeout 2h: want 0s..1h"},
		{"sync interval short", "mount:\n  sync_interval: 5ms\n", "mount.sync_interval 5ms: want 100ms..1h"},
		{"max file size small", "mount:\n  max_file_size: 512K\n", "mount.max_file_size 512KiB: want 1MiB..1EiB"},
		{"chunk max size", "chunker:\n  max_size: 134217728\n", "chunker.max_size 128MiB: want 64..64MiB"},
		{"chunk min size", "chunker:\n  min_size: 16\n", "chunker.min_size 16: want 64..64MiB"},
		{"write concurrency", "dual:\n  write_concurrency: 2000\n", "dual.write_concurrency 2000: want 1..1024"},
		{"store timeout", "dual:\n  store_timeout: 10ms\n", "dual.store_timeout 10ms: want 1s..1h"},
		{"store timeout negative", "dual:\n  store_timeout: -5s\n", "dual.store_timeout -5s: want 1s..1h"},
		{"backfill", "dual:\n  backfill_interval: 2h\n", "dual.backfill_interval 2h: want 10ms..1h"},
		{"compare concurrency", "compare:\n  concurrency: 100000\n", "compare.concurrency 100000: want 1..1024"},
		{"compare batch", "compare:\n  batch_size: 100000\n", "compare.batch_size 100000: want 1..65536"},
		{"compare rate", "compare:\n  rate: 2199023255552\n", "compare.rate 2TiB/s: want 0..1TiB/s"},
		{"compare details", "compare:\n  max_details: 10000000\n", "compare.max_details 10000000: want 1..100000"},
		{"backup interval", "index_backup:\n  interval: 48h\n", "index_backup.interval 48h: want 200ms..24h"},
		{"backup snapshot", "index_backup:\n  snapshot_interval: 1000h\n", "index_backup.snapshot_interval 1000h: want 1m..720h"},
		{"backup retention", "index_backup:\n  retention: -1s\n", "index_backup.retention -1s: want 0s..8760h"},
		{"backup spool", "index_backup:\n  spool_mb: 70000\n", "index_backup.spool_mb 70000: want 1..65536 MiB"},
		{"gc max unused", "gc:\n  max_unused: 5000%\n", "gc.max_unused 5000%: want 0..1000%"},
		{"gc min unused", "gc:\n  min_unused: 2000000000000000000\n", "gc.min_unused 2000000000000000000: want 0..1EiB"},
		{"gc rate", "gc:\n  rate: 2T\n", "gc.rate 2TiB/s: want 0..1TiB/s"},
		{"gc interval", "gc:\n  interval: 10000h\n", "gc.interval 10000h: want 1s..720h"},
		{"gc check interval", "gc:\n  check_interval: 48h\n", "gc.check_interval 48h: want 100ms..24h"},
		{"s3 timeout", s3Head + "    timeout: 2h\n", "safety[0].timeout 2h: want 1s..1h"},
		{"s3 retries", s3Head + "    retries: 1000\n", "safety[0].retries 1000: want 0..100"},
		{"s3 concurrency", s3Head + "    concurrency: 5000\n", "safety[0].concurrency 5000: want 1..1024"},
		{"s3 outage backoff", s3Head + "    outage_backoff: 1m\n", "safety[0].outage_backoff 1m: want 0s..15s, or negative: never fail fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := tc.yaml
			if !strings.HasPrefix(yaml, "data_dir:") {
				yaml = "data_dir: /tmp/d\n" + yaml
			}
			_, err := completeYAML(t, yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Complete = %v, want it to say %q", err, tc.want)
			}
			if !errors.Is(err, bounds.ErrOutOfRange) {
				t.Errorf("Complete = %v, does not wrap bounds.ErrOutOfRange", err)
			}
		})
	}
	// The edges are accepted, and a negative sync_interval means off.
	for _, yaml := range []string{
		"mount:\n  cache_mb: 65536\n  prefetch: 64\n  attr_timeout: 1h\n  sync_interval: -1s\n",
		"compare:\n  concurrency: 1024\n  rate: 1099511627776\n",
		"gc:\n  max_unused: 0%\n  min_unused: 0\n",
		s3Head + "    outage_backoff: -1s\n    retries: 0\n",
	} {
		if !strings.HasPrefix(yaml, "data_dir:") {
			yaml = "data_dir: /tmp/d\n" + yaml
		}
		if _, err := completeYAML(t, yaml); err != nil {
			t.Errorf("%q: %v", yaml, err)
		}
	}
}

// TestBoundsCoverEveryNumber walks the config's types: every number and
// duration (and the sizes and percentages written as strings) has an
// entry in the bounds table, and the table agrees with the limits the
// chunker and the file layer keep as constants.
func TestBoundsCoverEveryNumber(t *testing.T) {
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				walk(prefix+name+".", ft)
			case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
				keys = append(keys, prefix+name)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
	walk("s3.", reflect.TypeOf(s3.Config{}))
	walk("local.", reflect.TypeOf(local.Config{}))
	keys = append(keys, bounds.MountMaxFileSize, bounds.GCMaxUnused, bounds.GCMinUnused, bounds.GCRate)
	if len(keys) < 25 {
		t.Fatalf("found only %d numeric keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if b := bounds.Of(k); b.Check(k, b.Min) != nil {
			t.Errorf("config key %s has no entry in the bounds table", k)
		}
	}
	for _, c := range []struct {
		key      string
		min, max int64
	}{
		{bounds.ChunkerMinSize, chunker.MinSizeLimit, chunker.MaxSizeLimit},
		{bounds.ChunkerMaxSize, chunker.MinSizeLimit, chunker.MaxSizeLimit},
		{bounds.MountPrefetch, 1, vfs.MaxPrefetch},
	} {
		if b := bounds.Of(c.key); b.Min != c.min || b.Max != c.max {
			t.Errorf("%s: bounds %d..%d, the code's limits %d..%d", c.key, b.Min, b.Max, c.min, c.max)
		}
	}
}
