package dual_test

import (
	"bytes"
	"context"
	"os"
	"sort"
	"strconv"
	"testing"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// maintSize is the data a maintenance benchmark works on (issue #4 asks
// for 1 GiB); DUALSTORE_MAINT_BENCH_MIB overrides it for a quick look.
func maintSize() int {
	if v, err := strconv.Atoi(os.Getenv("DUALSTORE_MAINT_BENCH_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 1 << 30
}

// BenchmarkMaintenance measures migrate and compare over maintSize of
// random data in two local stores, chunked with the default sizes: first
// migrate to_safety into an empty safety store (every chunk read,
// verified and written), then a rerun (every chunk found in place), a
// shallow compare (stat both), a deep compare (read and hash both), and
// a no-op repair (deep, nothing to fix). Each reports MB/s and chunks/s
// as the scrub reports them. Run with -benchtime 1x: the steps depend on
// each other.
func BenchmarkMaintenance(b *testing.B) {
	size := maintSize()
	dir := b.TempDir()
	m := benchManager(b, dir, false) // primary only: safety is migrate's job
	defer m.Close()
	data, _ := chunk(7, size)
	ids := engineWrite(b, m, data)
	infos := make([]dual.ChunkInfo, 0, len(ids))
	seen := map[stores.ID]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		n, err := m.Tier(dual.TierPrimary).Stat(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		infos = append(infos, dual.ChunkInfo{ID: id, Size: n})
	}
	sort.Slice(infos, func(i, j int) bool { return bytes.Compare(infos[i].ID[:], infos[j].ID[:]) < 0 })
	source := func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		i := sort.Search(len(infos), func(i int) bool { return bytes.Compare(infos[i].ID[:], after[:]) > 0 })
		return infos[i:min(i+limit, len(infos))], nil
	}
	steps := []struct {
		name string
		opts dual.ScrubOptions
		want func(dual.Report) bool
	}{
		{"migrate_to_safety", dual.ScrubOptions{Migrate: dual.MigrateToSafety}, func(r dual.Report) bool { return r.Copied == int64(len(infos)) }},
		{"migrate_rerun", dual.ScrubOptions{Migrate: dual.MigrateToSafety}, func(r dual.Report) bool { return r.Copied == 0 && r.Matches == int64(len(infos)) }},
		{"compare", dual.ScrubOptions{}, func(r dual.Report) bool { return r.Matches == int64(len(infos)) }},
		{"compare_deep", dual.ScrubOptions{Deep: true}, func(r dual.Report) bool { return r.Matches == int64(len(infos)) }},
		{"repair_nothing", dual.ScrubOptions{Repair: true}, func(r dual.Report) bool { return r.Repaired == 0 && r.Matches == int64(len(infos)) }},
	}
	for _, st := range steps {
		b.Run(st.name, func(b *testing.B) {
			for range b.N {
				o := st.opts
				o.Source, o.Concurrency = source, 8
				r, err := m.Run(context.Background(), o)
				if err != nil {
					b.Fatal(err)
				}
				if r.State != "done" || !st.want(r) {
					b.Fatalf("%s: %+v", st.name, r)
				}
				b.ReportMetric(r.BytesPerSecond/1e6, "MB/s")
				b.ReportMetric(r.ChunksPerSecond, "chunks/s")
				b.ReportMetric(float64(r.Done), "chunks")
			}
		})
	}
}
