package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index/replica"
	"github.com/dualstore/dualstore/stores"
)

// healthyStats is a snapshot with two tiers of one store each and
// nothing wrong.
func healthyStats() Stats {
	var s Stats
	s.Tiers = map[string]dual.TierStats{
		dual.TierPrimary: {Stores: []dual.StoreStats{{Name: "primary-0", Type: "local"}}},
		dual.TierSafety:  {Stores: []dual.StoreStats{{Name: "safety-0", Type: "local"}}},
	}
	return s
}

func TestCheckHealth(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Stats)
		// kinds and subjects of the problems, in order ("kind subject").
		want []string
	}{
		{"healthy", func(*Stats) {}, nil},
		{"tier failing writes", func(s *Stats) {
			sf := s.Tiers[dual.TierSafety]
			sf.WritesFailing, sf.LastWriteError, sf.Writes.Errors = true, "2025-01-01T00:00:00Z", 3
			sf.Stores[0].WritesFailing = true // the tier's problem says it all
			s.Tiers[dual.TierSafety] = sf
		}, []string{"writes_failing safety"}},
		{"store failing writes, the tier failing over", func(s *Stats) {
			p := s.Tiers[dual.TierPrimary]
			p.Stores = append(p.Stores, dual.StoreStats{Name: "primary-1"})
			p.Stores[0].WritesFailing = true
			s.Tiers[dual.TierPrimary] = p
		}, []string{"writes_failing primary/primary-0"}},
		{"errors in the past, writes good now", func(s *Stats) {
			sf := s.Tiers[dual.TierSafety]
			sf.Writes.Errors, sf.LastWriteError = 40, "2025-01-01T00:00:00Z"
			s.Tiers[dual.TierSafety] = sf
		}, nil},
		{"young backlog", func(s *Stats) { s.PendingBackfill, s.PendingBackfillAgeSeconds = 10, 599 }, nil},
		{"stale backlog", func(s *Stats) { s.PendingBackfill, s.PendingBackfillAgeSeconds = 10, 601 }, []string{"backfill_stale "}},
		{"compare with differences", func(s *Stats) {
			s.LastCompare = &dual.Report{Action: "compare", State: "done", Missing: 2, Mismatches: 1}
		}, []string{"compare_differences "}},
		{"clean compare", func(s *Stats) { s.LastCompare = &dual.Report{Action: "compare", State: "done", Matches: 5, Done: 5} }, nil},
		{"repair that fixed everything", func(s *Stats) {
			s.LastCompare = &dual.Report{Action: "repair", State: "done", Missing: 2, Repaired: 2}
		}, nil},
		{"repair that could not fix all", func(s *Stats) {
			s.LastCompare = &dual.Report{Action: "repair", State: "done", Missing: 2, Repaired: 1, Unrecoverable: 1}
		}, []string{"compare_differences "}},
		{"checksum errors stay", func(s *Stats) {
			p := s.Tiers[dual.TierPrimary]
			p.Stores[0].Reads = stores.ReadStats{OK: 10, ChecksumErrors: 1}
			s.Tiers[dual.TierPrimary] = p
		}, []string{"store_errors primary/primary-0"}},
		{"missing chunk", func(s *Stats) {
			sf := s.Tiers[dual.TierSafety]
			sf.Stores[0].Reads = stores.ReadStats{Errors: 1, NotFound: 1}
			s.Tiers[dual.TierSafety] = sf
		}, []string{"store_errors safety/safety-0"}},
		{"backup lagging", func(s *Stats) {
			s.IndexBackup = &replica.Stats{Tiers: []replica.TierStats{{Name: "primary", LagSeconds: 2}, {Name: "safety", LagSeconds: 301}}}
		}, []string{"backup_lagging safety"}},
		{"everything at once, in order", func(s *Stats) {
			s.IndexBackup = &replica.Stats{Tiers: []replica.TierStats{{Name: "safety", LagSeconds: 1000}}}
			sf := s.Tiers[dual.TierSafety]
			sf.WritesFailing = true
			sf.Stores[0].Reads.ChecksumErrors = 1
			s.Tiers[dual.TierSafety] = sf
			s.PendingBackfill, s.PendingBackfillAgeSeconds = 1, 3600
			s.LastCompare = &dual.Report{Action: "compare", State: "done", SafetyOnly: 1}
		}, []string{"writes_failing safety", "backfill_stale ", "compare_differences ", "store_errors safety/safety-0", "backup_lagging safety"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthyStats()
			tt.edit(&s)
			h := CheckHealth(s, HealthOptions{})
			var got []string
			for _, p := range h.Problems {
				got = append(got, p.Kind+" "+p.Subject)
				if p.Message == "" || strings.Contains(p.Message, "\n") || strings.Contains(p.Message, "%!") {
					t.Errorf("problem %s: message %q, want one formatted line", p.Kind, p.Message)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("problems %q, want %q", got, tt.want)
			}
			if want := map[bool]string{true: Healthy, false: Degraded}[len(tt.want) == 0]; h.State != want {
				t.Errorf("state %s, want %s", h.State, want)
			}
		})
	}
}

func TestCheckHealthBounds(t *testing.T) {
	s := healthyStats()
	s.PendingBackfill, s.PendingBackfillAgeSeconds = 1, 61
	if h := CheckHealth(s, HealthOptions{BackfillAge: time.Minute}); h.State != Degraded {
		t.Errorf("backlog of 61s with a 1m bound: %s, want degraded", h.State)
	}
	if h := CheckHealth(s, HealthOptions{BackfillAge: 2 * time.Minute}); h.State != Healthy {
		t.Errorf("backlog of 61s with a 2m bound: %s, want healthy", h.State)
	}
	if err := (HealthOptions{BackupLag: -time.Second}).Validate(); err == nil {
		t.Error("a negative backup lag bound is valid")
	}
}

// TestMountStatsOpsAndHealth: on a real mount the stats count FUSE
// requests by kind, and a tier that fails writes makes the mount degraded
// until the backfill has copied what it missed.
func TestMountStatsOpsAndHealth(t *testing.T) {
	m := newTestMount(t)
	ctx := t.Context()
	p := filepath.Join(m.dir, "f")
	if err := os.WriteFile(p, make([]byte, 100<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	// The kernel sends RELEASE after close(2) has returned: the counts
	// are polled until each kind has been seen (and its latency with it).
	var s Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if s, err = m.fs.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, op := range []string{"create", "write", "flush", "release", "lookup"} {
			if o := s.FUSEOps[op]; o.Count == 0 || o.Latency.Count != uint64(o.Count) {
				missing = append(missing, fmt.Sprintf("%s %+v", op, o))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("fuse_ops not counted with a latency per request within 10s: %s", strings.Join(missing, "; "))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Health.State != Healthy || s.FSID == "" {
		t.Errorf("a fresh mount: health %+v, fsid %q", s.Health, s.FSID)
	}

	env := m.env.SafetyFault
	env.Set(stores.OpPut, stores.Rule{})
	if err := os.WriteFile(filepath.Join(m.dir, "g"), []byte(strings.Repeat("one-sided ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ = m.fs.Stats(ctx)
	if s.Health.State != Degraded || len(s.Health.Problems) == 0 || s.Health.Problems[0].Kind != ProblemWritesFailing {
		t.Fatalf("safety refusing writes: health %+v, want degraded with writes_failing", s.Health)
	}
	env.Clear()
	if _, err := m.dm.BackfillOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ = m.fs.Stats(ctx); s.Health.State != Healthy || s.PendingBackfill != 0 {
		t.Errorf("after the backfill: health %+v, pending %d; want healthy, 0", s.Health, s.PendingBackfill)
	}
	if err := m.fs.ctl.exec(ctx, command{Verb: "reset-stats"}); err != nil {
		t.Fatal(err)
	}
	if s, _ = m.fs.Stats(ctx); len(s.FUSEOps) > 0 && s.FUSEOps["create"].Count != 0 {
		t.Errorf("after reset-stats: fuse_ops %v", s.FUSEOps)
	}
}
