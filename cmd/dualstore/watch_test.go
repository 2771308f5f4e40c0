package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/engine"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/stores"
)

func watchStatsAt(writes, bytes, fallbacks int64, storeName string) dsfs.Stats {
	var s dsfs.Stats
	t := dual.TierStats{Writes: stores.OpStats{OK: writes, Bytes: bytes}, Stores: []dual.StoreStats{{Name: storeName, Writes: stores.OpStats{OK: writes, Bytes: bytes}}}}
	s.Tiers = map[string]dual.TierStats{dual.TierSafety: t, dual.TierPrimary: t}
	s.Fallbacks = fallbacks
	s.FUSEOps = map[string]dsfs.FUSEOpStats{"write": {Count: writes}}
	s.Health.State = dsfs.Healthy
	return s
}

func TestWatchRates(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := sample{at: t0, s: watchStatsAt(10, 10<<20, 1, "s-0")}
	cur := sample{at: t0.Add(2 * time.Second), s: watchStatsAt(30, 30<<20, 5, "s-0")}
	r := rates(prev, cur)
	if len(r.tiers) != 2 || r.tiers[0].name != dual.TierPrimary || r.tiers[1].name != dual.TierSafety {
		t.Fatalf("tiers %+v, want primary then safety", r.tiers)
	}
	if tr := r.tiers[0]; tr.writes != 10 || tr.writeMiB != 10 {
		t.Errorf("primary: %v writes/s, %v MiB/s; want 10 and 10 (20 writes of 20 MiB in 2s)", tr.writes, tr.writeMiB)
	}
	if r.fallbacks != 2 || r.fuseOps != 10 {
		t.Errorf("fallbacks/s %v, fuse/s %v; want 2, 10", r.fallbacks, r.fuseOps)
	}
	// A remount or reset-stats: the counters start again from zero.
	after := sample{at: cur.at.Add(time.Second), s: watchStatsAt(3, 3<<20, 0, "s-0")}
	if r := rates(cur, after); r.tiers[0].writes != 3 || r.fallbacks != 0 {
		t.Errorf("after a counter reset: %v writes/s, %v fallbacks/s; want 3 and 0", r.tiers[0].writes, r.fallbacks)
	}
	// A store list that changed (a remount with another config) does not
	// subtract another store's counters.
	other := sample{at: cur.at.Add(time.Second), s: watchStatsAt(31, 31<<20, 5, "s-1")}
	if r := rates(cur, other); r.stores[0][0].writes != 31 || r.tiers[0].writes != 1 {
		t.Errorf("a new store: %v writes/s, tier %v; want 31 (all its own) and 1", r.stores[0][0].writes, r.tiers[0].writes)
	}

	header := strings.Fields(lineHeader(tierNames(cur.s)))
	line := strings.Fields(r.line())
	if len(header) != len(line) || header[0] != "time" || line[0] != "03:04:07" || header[len(header)-1] != "health" || line[len(line)-1] != "healthy" {
		t.Errorf("piped form:\n%s\n%s\nwant as many fields in both, time first and health last", strings.Join(header, " "), strings.Join(line, " "))
	}
	var b strings.Builder
	r.panel(&b, "/mnt", time.Second)
	for _, want := range []string{"primary", "safety", "WRITE MiB/s", "health: healthy"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the terminal panel lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPrintProblems(t *testing.T) {
	var b strings.Builder
	printProblems(&b, dsfs.Health{State: dsfs.Healthy, Problems: []dsfs.Problem{}})
	if b.String() != "healthy\n" {
		t.Errorf("healthy: %q", b.String())
	}
	b.Reset()
	printProblems(&b, dsfs.Health{State: dsfs.Degraded, Problems: []dsfs.Problem{{Message: "a"}, {Message: "b"}}})
	if b.String() != "degraded: a\ndegraded: b\n" {
		t.Errorf("degraded: %q", b.String())
	}
}

// TestHealthDefaults: the config's health defaults are the filesystem's.
func TestHealthDefaults(t *testing.T) {
	cfg := Config{DataDir: t.TempDir()}
	if err := cfg.Complete(engine.DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	if got, want := healthOptions(cfg), dsfs.DefaultHealth(); got != want {
		t.Errorf("config health defaults %+v, filesystem's %+v", got, want)
	}
	if cfg.Mount.MetricsAddr != "off" {
		t.Errorf("mount.metrics_addr defaults to %q, want off", cfg.Mount.MetricsAddr)
	}
	cfg.Mount.MetricsAddr = "9567"
	if err := checkMetricsAddr(cfg); err == nil || !strings.Contains(err.Error(), "mount.metrics_addr") {
		t.Errorf("checkMetricsAddr(9567) = %v, want an error naming mount.metrics_addr", err)
	}
}
