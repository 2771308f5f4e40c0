package dual

import (
	"sync/atomic"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// LatencyMS is a tier's latency percentiles in milliseconds.
type LatencyMS struct {
	WriteP50 float64 `json:"write_p50"`
	WriteP99 float64 `json:"write_p99"`
	ReadP50  float64 `json:"read_p50"`
	ReadP99  float64 `json:"read_p99"`
}

// StoreStats is one store of a tier, as `zpool status` shows one disk.
type StoreStats struct {
	Name      string           `json:"name"`
	Type      string           `json:"type"`
	Writes    stores.OpStats   `json:"writes"`
	Reads     stores.ReadStats `json:"reads"`
	LatencyMS LatencyMS        `json:"latency_ms"`
	WriteHealth
}

// TierStats is one tier's counters.
type TierStats struct {
	Writes    stores.OpStats   `json:"writes"`
	Reads     stores.ReadStats `json:"reads"`
	LatencyMS LatencyMS        `json:"latency_ms"`
	WriteHealth
	Stores []StoreStats `json:"stores"`
}

// WriteHealth says whether a tier or store is failing writes now: its
// last write ended in an error (a write that succeeds again, a backfill
// one included, clears it). The latency histograms and times behind it
// are for the metrics, not the JSON.
type WriteHealth struct {
	WritesFailing bool `json:"writes_failing"`
	// LastWriteError is when a write last failed (RFC 3339), since the
	// mount or the last reset-stats.
	LastWriteError string `json:"last_write_error,omitempty"`
	// State holds the latency histograms and the times of the last good
	// and failed write.
	State stores.WriteState `json:"-"`
}

func writeHealth(w stores.WriteState) WriteHealth {
	h := WriteHealth{WritesFailing: w.WritesFailing(), State: w}
	if !w.LastWriteError.IsZero() {
		h.LastWriteError = w.LastWriteError.UTC().Format(time.RFC3339)
	}
	return h
}

// Stats is a snapshot of the manager's counters, in the JSON shape of the
// `.dualstore/stats` contract (the filesystem adds files and bytes).
type Stats struct {
	UptimeSeconds   float64              `json:"uptime_seconds"`
	ReadPreference  string               `json:"read_preference"`
	Tiers           map[string]TierStats `json:"tiers"`
	Fallbacks       int64                `json:"fallbacks"`
	SelfHeals       int64                `json:"self_heals"`
	SelfHealErrors  int64                `json:"self_heal_errors"`
	VerifyFailures  int64                `json:"verify_failures"`
	OneSidedWrites  int64                `json:"one_sided_writes"`
	PendingBackfill int64                `json:"pending_backfill"`
	// PendingBackfillAgeSeconds is how long chunks have been pending
	// without a break (Manager.PendingAge); 0 when none are.
	PendingBackfillAgeSeconds float64 `json:"pending_backfill_age_seconds"`
	Backfilled                int64   `json:"backfilled"`
	BackfillErrors            int64   `json:"backfill_errors"`
	ChunkWrites               OpCount `json:"chunk_writes"`
	ChunkReads                OpCount `json:"chunk_reads"`
	SuccessRate               float64 `json:"success_rate"`
	ErrorRate                 float64 `json:"error_rate"`
	// ConsistencyRate is matches/compared of the last comparison, or null
	// when none has run since the mount.
	ConsistencyRate *float64 `json:"consistency_rate"`
	LastCompare     *Report  `json:"last_compare"`
}

// OpCount counts whole-manager operations (a chunk write to both tiers is
// one).
type OpCount struct {
	OK     int64 `json:"ok"`
	Errors int64 `json:"errors"`
	Bytes  int64 `json:"bytes"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func tierStats(s stores.TierStats) TierStats {
	t := TierStats{
		Writes: s.Writes, Reads: s.Reads,
		LatencyMS:   LatencyMS{ms(s.WriteP50), ms(s.WriteP99), ms(s.ReadP50), ms(s.ReadP99)},
		WriteHealth: writeHealth(s.WriteState),
		Stores:      []StoreStats{},
	}
	for _, m := range s.Stores {
		t.Stores = append(t.Stores, StoreStats{
			Name: m.Name, Type: m.Type, Writes: m.Writes, Reads: m.Reads,
			LatencyMS:   LatencyMS{ms(m.WriteP50), ms(m.WriteP99), ms(m.ReadP50), ms(m.ReadP99)},
			WriteHealth: writeHealth(m.WriteState),
		})
	}
	return t
}

// Stats returns a snapshot of every counter.
func (m *Manager) Stats() Stats {
	c := &m.ctr
	s := Stats{
		UptimeSeconds:             time.Since(m.start).Seconds(),
		ReadPreference:            m.ReadPreference().String(),
		Tiers:                     map[string]TierStats{TierPrimary: tierStats(m.tiers[0].Stats()), TierSafety: tierStats(m.tiers[1].Stats())},
		Fallbacks:                 c.fallbacks.Load(),
		SelfHeals:                 c.selfHeals.Load(),
		SelfHealErrors:            c.selfHealErrors.Load(),
		VerifyFailures:            c.verifyFailures.Load(),
		OneSidedWrites:            c.oneSided.Load(),
		PendingBackfill:           m.pendingCount.Load(),
		PendingBackfillAgeSeconds: m.PendingAge().Seconds(),
		Backfilled:                c.backfilled.Load(),
		BackfillErrors:            c.backfillErrors.Load(),
		ChunkWrites:               OpCount{c.putOK.Load(), c.putErr.Load(), c.logicalBytesWrite.Load()},
		ChunkReads:                OpCount{c.getOK.Load(), c.getErr.Load(), c.logicalBytesRead.Load()},
		SuccessRate:               1,
	}
	ok := s.ChunkWrites.OK + s.ChunkReads.OK
	bad := s.ChunkWrites.Errors + s.ChunkReads.Errors
	if ok+bad > 0 {
		s.SuccessRate = float64(ok) / float64(ok+bad)
		s.ErrorRate = float64(bad) / float64(ok+bad)
	}
	if r := m.LastCompare(); r != nil {
		summary := *r
		summary.Details = nil // the full list is in `.dualstore/compare`
		s.LastCompare = &summary
		if cr := r.ConsistencyRate(); cr >= 0 {
			s.ConsistencyRate = &cr
		}
	}
	return s
}

// ResetStats zeroes the counters (not the pending list, which is state).
func (m *Manager) ResetStats() {
	c := &m.ctr
	for _, a := range []*atomic.Int64{&c.putOK, &c.putErr, &c.getOK, &c.getErr, &c.fallbacks, &c.selfHeals,
		&c.selfHealErrors, &c.verifyFailures, &c.oneSided, &c.backfilled, &c.backfillErrors,
		&c.logicalBytesRead, &c.logicalBytesWrite} {
		a.Store(0)
	}
	m.tiers[0].ResetStats()
	m.tiers[1].ResetStats()
}
