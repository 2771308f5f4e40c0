package dual_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// statsWorkload runs a few operations with known outcomes: three writes
// (one of them one-sided), a read that falls back and heals, a read of a
// chunk nobody has.
func statsWorkload(t *testing.T, r *rig) {
	t.Helper()
	a, _ := chunk(20, 1000)
	b, bid := chunk(21, 2000)
	c, _ := chunk(22, 3000)
	r.put(t, a)
	r.put(t, b)
	r.s.Set(stores.OpPut, stores.Rule{})
	r.put(t, c)
	r.s.Clear()
	if err := r.p.Inner().Delete(t.Context(), bid); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Get(t.Context(), bid); err != nil {
		t.Fatal(err)
	}
	_, missing := chunk(23, 10)
	if _, err := r.m.Get(t.Context(), missing); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Get of a missing chunk = %v", err)
	}
}

// TestStatsJSON checks the `.dualstore/stats` JSON contract: key names,
// types and values.
func TestStatsJSON(t *testing.T) {
	r := newRig(t, rigConfig{})
	statsWorkload(t, r)
	b, err := json.Marshal(r.m.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	// Present even when null.
	for _, k := range []string{"uptime_seconds", "read_preference", "tiers", "fallbacks", "self_heals",
		"pending_backfill", "success_rate", "error_rate", "consistency_rate", "last_compare",
		"self_heal_errors", "verify_failures", "one_sided_writes", "backfilled", "backfill_errors",
		"chunk_writes", "chunk_reads"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stats JSON has no %q", k)
		}
	}
	if raw["consistency_rate"] != nil || raw["last_compare"] != nil {
		t.Errorf("consistency_rate %v, last_compare %v: want null before any comparison", raw["consistency_rate"], raw["last_compare"])
	}
	flat := flatStats(t, r.m)
	if up, ok := flat["uptime_seconds"].(float64); !ok || up <= 0 {
		t.Errorf("uptime_seconds = %v", flat["uptime_seconds"])
	}
	for path, want := range map[string]any{
		"read_preference":               "primary",
		"tiers.primary.stores.0.name":   "p0",
		"tiers.primary.stores.0.type":   "mem",
		"tiers.safety.stores.0.name":    "s0",
		"tiers.safety.stores.0.type":    "mem",
		"tiers.primary.reads.bytes":     float64(0),
		"tiers.safety.reads.bytes":      float64(2000),
		"tiers.primary.reads.ok":        float64(0),
		"tiers.primary.reads.errors":    float64(2),
		"tiers.primary.reads.not_found": float64(2),
	} {
		if got, ok := flat[path]; !ok || got != want {
			t.Errorf("stats %s = %v (present %v), want %v", path, got, ok, want)
		}
	}
	for _, path := range []string{
		"tiers.primary.writes.ok", "tiers.primary.reads.checksum_errors",
		"tiers.primary.latency_ms.write_p50", "tiers.primary.latency_ms.write_p99",
		"tiers.primary.latency_ms.read_p50", "tiers.primary.latency_ms.read_p99",
		"tiers.primary.stores.0.writes.ok", "tiers.primary.stores.0.reads.checksum_errors",
		"tiers.primary.stores.0.latency_ms.write_p50", "tiers.safety.latency_ms.read_p99",
	} {
		if _, ok := flat[path].(float64); !ok {
			t.Errorf("stats %s = %v, want a number", path, flat[path])
		}
	}
	if statNum(t, r.m, "tiers.primary.latency_ms.write_p50") <= 0 {
		t.Error("write_p50 is 0 after writes")
	}
	// 3 writes ok; reads: 1 ok, 1 error.
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok": 3, "chunk_writes.errors": 0, "chunk_writes.bytes": 6000,
		"chunk_reads.ok": 1, "chunk_reads.errors": 1, "chunk_reads.bytes": 2000,
		"fallbacks": 2, "self_heals": 1, "one_sided_writes": 1, "pending_backfill": 1,
		"success_rate": 0.8, "error_rate": 0.2,
		"tiers.primary.writes.ok": 4, // 3 writes and the self-heal
		"tiers.safety.writes.ok":  2, "tiers.safety.writes.errors": 1,
		"tiers.safety.reads.ok": 1, "tiers.safety.reads.not_found": 1,
	})
}

func TestResetStats(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.ReadPreference = dual.PreferSafety }})
	statsWorkload(t, r)
	before := flatStats(t, r.m)
	r.m.ResetStats()
	after := flatStats(t, r.m)
	for k, v := range after {
		f, isNum := v.(float64)
		if !isNum {
			continue
		}
		switch k {
		case "uptime_seconds":
			if f < before[k].(float64) {
				t.Errorf("uptime went back from %v to %v", before[k], f)
			}
		case "pending_backfill":
			// State, not a counter.
			if f != 1 {
				t.Errorf("pending_backfill = %v after ResetStats, want 1", f)
			}
		case "pending_backfill_age_seconds":
			// State too: the backlog is as old as it was.
			if f < before[k].(float64) {
				t.Errorf("pending_backfill_age_seconds went back from %v to %v", before[k], f)
			}
		case "success_rate":
			if f != 1 {
				t.Errorf("success_rate = %v after ResetStats, want 1", f)
			}
		default:
			if f != 0 {
				t.Errorf("%s = %v after ResetStats, want 0", k, f)
			}
		}
	}
	if after["read_preference"] != "safety" {
		t.Errorf("read_preference = %v after ResetStats", after["read_preference"])
	}
	if after["tiers.primary.stores.0.name"] != "p0" {
		t.Error("ResetStats lost the store list")
	}
	// Counting resumes.
	data, _ := chunk(24, 10)
	r.put(t, data)
	wantStats(t, r.m, map[string]float64{"chunk_writes.ok": 1, "tiers.primary.writes.ok": 1, "tiers.primary.stores.0.writes.ok": 1})
}

func TestStatsNamesAllTiers(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	s := r.m.Stats()
	if len(s.Tiers) != 2 {
		t.Fatalf("stats tiers = %v", s.Tiers)
	}
	for name, tier := range s.Tiers {
		if len(tier.Stores) != 1 || tier.Stores[0].Type != "local" || !strings.HasSuffix(tier.Stores[0].Name, "0") {
			t.Errorf("tier %s stores = %+v", name, tier.Stores)
		}
	}
}

// TestPendingAgeAndWritesFailing: a one-sided write starts the backlog's
// age and marks the tier as failing writes; the backfill that empties the
// backlog clears both.
func TestPendingAgeAndWritesFailing(t *testing.T) {
	r := newRig(t, rigConfig{})
	if s := r.m.Stats(); s.PendingBackfillAgeSeconds != 0 || r.m.PendingAge() != 0 {
		t.Fatalf("nothing pending, yet age %v", s.PendingBackfillAgeSeconds)
	}
	data, _ := chunk(30, 100)
	r.s.Set(stores.OpPut, stores.Rule{})
	r.put(t, data)
	r.s.Clear()
	s := r.m.Stats()
	if s.PendingBackfill != 1 || s.PendingBackfillAgeSeconds <= 0 {
		t.Errorf("after a one-sided write: pending %d, age %v; want 1 and > 0", s.PendingBackfill, s.PendingBackfillAgeSeconds)
	}
	if sf := s.Tiers[dual.TierSafety]; !sf.WritesFailing || sf.LastWriteError == "" || !sf.Stores[0].WritesFailing || s.Tiers[dual.TierPrimary].WritesFailing {
		t.Errorf("after a one-sided write: safety failing %v (last error %q, store %v), primary failing %v; want true, set, true, false",
			sf.WritesFailing, sf.LastWriteError, sf.Stores[0].WritesFailing, s.Tiers[dual.TierPrimary].WritesFailing)
	}
	if n, err := r.m.BackfillOnce(t.Context()); n != 1 || err != nil {
		t.Fatalf("BackfillOnce = %d, %v", n, err)
	}
	s = r.m.Stats()
	if s.PendingBackfill != 0 || s.PendingBackfillAgeSeconds != 0 || s.Tiers[dual.TierSafety].WritesFailing {
		t.Errorf("after the backfill: pending %d, age %v, safety failing %v; want 0, 0, false",
			s.PendingBackfill, s.PendingBackfillAgeSeconds, s.Tiers[dual.TierSafety].WritesFailing)
	}
}
