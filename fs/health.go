package fs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dualstore/dualstore/dual"
)

// HealthOptions are the bounds of the health checks (the config's health
// section). Zero takes the default.
type HealthOptions struct {
	// BackfillAge is how long chunks may stay pending backfill (the
	// pending list non-empty without a break) before the mount is
	// degraded: a tier that keeps failing, or a backfill that cannot
	// copy. Default 10m.
	BackfillAge time.Duration
	// BackupLag is how far a tier's copy of the index may fall behind
	// (index_backup's lag_seconds) before the mount is degraded. Default
	// 5m: thirty times the default backup interval.
	BackupLag time.Duration
}

// DefaultHealth returns the default bounds.
func DefaultHealth() HealthOptions {
	return HealthOptions{BackfillAge: 10 * time.Minute, BackupLag: 5 * time.Minute}
}

func (o HealthOptions) withDefaults() HealthOptions {
	d := DefaultHealth()
	if o.BackfillAge == 0 {
		o.BackfillAge = d.BackfillAge
	}
	if o.BackupLag == 0 {
		o.BackupLag = d.BackupLag
	}
	return o
}

// Validate reports bounds that are out of range.
func (o HealthOptions) Validate() error {
	if o.BackfillAge < 0 || o.BackupLag < 0 {
		return errors.New("health: negative bound (backfill age " + o.BackfillAge.String() + ", backup lag " + o.BackupLag.String() + ")")
	}
	return nil
}

// Health states.
const (
	Healthy  = "healthy"
	Degraded = "degraded"
)

// Kinds of health problem (Problem.Kind).
const (
	// ProblemWritesFailing: a tier's, or a store's, last write failed
	// (cleared by the next write that succeeds, a backfill's included).
	ProblemWritesFailing = "writes_failing"
	// ProblemBackfillStale: chunks have been pending backfill for longer
	// than HealthOptions.BackfillAge.
	ProblemBackfillStale = "backfill_stale"
	// ProblemCompareDifferences: the last compare (or repair) left
	// differences between the tiers.
	ProblemCompareDifferences = "compare_differences"
	// ProblemStoreErrors: a store returned bad data or failed reads
	// since the mount or the last reset-stats. Like the error counts of
	// `zpool status`, it stays until cleared (reset-stats), since the
	// store may be losing data even though every read was served.
	ProblemStoreErrors = "store_errors"
	// ProblemBackupLagging: a tier's copy of the index lags more than
	// HealthOptions.BackupLag.
	ProblemBackupLagging = "backup_lagging"
)

// ProblemKinds returns every kind of problem, in the order CheckHealth
// reports them.
func ProblemKinds() []string {
	return []string{ProblemWritesFailing, ProblemBackfillStale, ProblemCompareDifferences, ProblemStoreErrors, ProblemBackupLagging}
}

// Health is the `health` object of the stats: healthy, or degraded with
// what is wrong. It names tiers and stores, never paths.
type Health struct {
	State    string    `json:"state"`
	Problems []Problem `json:"problems"`
}

// Problem is one thing that makes a mount degraded.
type Problem struct {
	// Kind is one of ProblemKinds.
	Kind string `json:"kind"`
	// Subject is the tier ("safety"), store ("safety/safety-0") or index
	// backup tier it is about, if any.
	Subject string `json:"subject,omitempty"`
	// Message says what is wrong, and what to do where that is not
	// obvious, on one line.
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Message }

// CheckHealth applies the health rules to a stats snapshot: it is what
// the stats' health object, `dualstore status` and the health metrics
// show.
func CheckHealth(s Stats, o HealthOptions) Health {
	o = o.withDefaults()
	h := Health{State: Healthy, Problems: []Problem{}}
	add := func(kind, subject, format string, args ...any) {
		h.Problems = append(h.Problems, Problem{Kind: kind, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	tiers := make([]string, 0, len(s.Tiers))
	for name := range s.Tiers {
		tiers = append(tiers, name)
	}
	slices.SortFunc(tiers, tierOrder)

	for _, name := range tiers {
		t := s.Tiers[name]
		if t.WritesFailing {
			add(ProblemWritesFailing, name, "tier %s is failing writes: its last write failed at %s (%d write errors since the mount or reset-stats); what it misses is kept for backfill",
				name, t.LastWriteError, t.Writes.Errors)
			continue
		}
		for _, m := range t.Stores {
			if m.WritesFailing {
				add(ProblemWritesFailing, name+"/"+m.Name, "store %s of tier %s is failing writes: its last write failed at %s (%d write errors); the tier writes to its next store",
					m.Name, name, m.LastWriteError, m.Writes.Errors)
			}
		}
	}
	if s.PendingBackfill > 0 && s.PendingBackfillAgeSeconds > o.BackfillAge.Seconds() {
		add(ProblemBackfillStale, "", "%d chunks have been pending backfill for %s (bound %s): a tier keeps failing or the backfill cannot copy",
			s.PendingBackfill, roundAge(s.PendingBackfillAgeSeconds), o.BackfillAge)
	}
	if r := s.LastCompare; r != nil && r.Remaining() > 0 {
		if r.Action == "compare" || r.Direction == dual.MigrateCompareAll {
			add(ProblemCompareDifferences, "", "the last %s (finished %s) found %d differences between the tiers (%s): run `repair`",
				r.Action, r.FinishedAt, r.Remaining(), differences(*r))
		} else {
			add(ProblemCompareDifferences, "", "the last %s (finished %s) could not fix %d chunks (%d unrecoverable, %d failed, %d errors): see .dualstore/compare",
				r.Action, r.FinishedAt, r.Remaining(), r.Unrecoverable, r.RepairFailed, r.Errors)
		}
	}
	for _, name := range tiers {
		for _, m := range s.Tiers[name].Stores {
			if m.Reads.ChecksumErrors == 0 && m.Reads.Errors == 0 {
				continue
			}
			add(ProblemStoreErrors, name+"/"+m.Name, "store %s of tier %s: %d checksum errors and %d failed reads (%d chunks not found) since the mount or reset-stats: "+
				"check the store, run `compare deep` (and `repair`), then `reset-stats` to clear",
				m.Name, name, m.Reads.ChecksumErrors, m.Reads.Errors, m.Reads.NotFound)
		}
	}
	if b := s.IndexBackup; b != nil {
		for _, t := range b.Tiers {
			if t.LagSeconds > o.BackupLag.Seconds() {
				add(ProblemBackupLagging, t.Name, "the index backup in tier %s lags %s (bound %s; %d errors)",
					t.Name, roundAge(t.LagSeconds), o.BackupLag, t.Errors)
			}
		}
	}
	if len(h.Problems) > 0 {
		h.State = Degraded
	}
	return h
}

// tierOrder puts primary before safety, then the rest by name.
func tierOrder(a, b string) int {
	rank := func(s string) int {
		switch s {
		case dual.TierPrimary:
			return 0
		case dual.TierSafety:
			return 1
		}
		return 2
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	return strings.Compare(a, b)
}

func roundAge(seconds float64) time.Duration {
	return time.Duration(seconds * float64(time.Second)).Round(time.Second)
}

// differences lists a report's non-zero difference counts.
func differences(r dual.Report) string {
	var parts []string
	for _, c := range []struct {
		n    int64
		what string
	}{
		{r.Mismatches, "mismatched"}, {r.PrimaryOnly, "in primary only"}, {r.SafetyOnly, "in safety only"},
		{r.Missing, "missing"}, {r.Errors, "errors"},
	} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(parts, ", ")
}
