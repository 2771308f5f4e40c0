package dual

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// Class is the outcome of comparing one chunk's two copies.
type Class string

// The comparison classes (DESIGN.md section 4).
const (
	ClassMatch       Class = "match"        // both tiers hold it (deep: both verify)
	ClassMismatch    Class = "mismatch"     // both hold it, but sizes, bytes or hash differ
	ClassPrimaryOnly Class = "primary_only" // only the primary holds a (good) copy
	ClassSafetyOnly  Class = "safety_only"  // only the safety tier holds a (good) copy
	ClassMissing     Class = "missing"      // no tier holds a good copy: data is lost
	ClassError       Class = "error"        // a store failed, the state is unknown
)

// ChunkInfo is a chunk the index references, with its logical size (or
// -1 where unknown).
type ChunkInfo struct {
	ID   stores.ID
	Size int64
}

// bound returns ctx telling the stores the chunk's size, so that a copy
// of another size is corrupt without being read whole.
func (c ChunkInfo) bound(ctx context.Context) context.Context {
	return stores.WithExpectedSize(ctx, c.ID, c.Size)
}

// Verdict is the result of comparing one chunk.
type Verdict struct {
	Class Class
	// Good names the tier holding a verified copy when the class is not
	// match: "primary", "safety" or "none". Shallow comparisons leave it
	// empty for mismatches (they do not read bytes).
	Good string
	// Note says what was seen on each side, for reports and logs.
	Note string
	Err  error
}

type copyState int

const (
	copyOK copyState = iota
	copyAbsent
	copyBad
	copyErr
)

func classify(err error) copyState {
	switch {
	case err == nil:
		return copyOK
	case errors.Is(err, stores.ErrNotFound):
		return copyAbsent
	case errors.Is(err, stores.ErrCorrupt):
		return copyBad
	}
	return copyErr
}

var stateName = [...]string{copyOK: "ok", copyAbsent: "absent", copyBad: "corrupt", copyErr: "error"}

// CompareChunk compares the primary and safety copies of one chunk.
// Shallow checks existence and size; deep reads both copies and checks
// their hashes and bytes.
func (m *Manager) CompareChunk(ctx context.Context, c ChunkInfo, deep bool) Verdict {
	ctx = c.bound(ctx)
	var ps, ss copyState
	var pErr, sErr error
	var pData, sData []byte
	var pSize, sSize int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if deep {
			pData, pErr = m.getTier(ctx, 0, c.ID)
		} else {
			pSize, pErr = m.statTier(ctx, 0, c.ID)
		}
	}()
	go func() {
		defer wg.Done()
		if deep {
			sData, sErr = m.getTier(ctx, 1, c.ID)
		} else {
			sSize, sErr = m.statTier(ctx, 1, c.ID)
		}
	}()
	wg.Wait()
	ps, ss = classify(pErr), classify(sErr)
	note := fmt.Sprintf("primary %s, safety %s", stateName[ps], stateName[ss])
	v := Verdict{Note: note}
	switch {
	case ps == copyErr || ss == copyErr:
		v.Class, v.Err = ClassError, errors.Join(pErr, sErr)
	case ps == copyOK && ss == copyOK:
		v.Class = ClassMatch
		if deep && !bytes.Equal(pData, sData) {
			// Both verified against the same id yet differ: only possible
			// with a broken hash function, but never call that a match.
			v.Class, v.Good = ClassMismatch, "none"
		}
		if !deep && !sizesAgree(c.Size, pSize, sSize) {
			v.Class = ClassMismatch
			v.Note = fmt.Sprintf("sizes differ: index %d, primary %d, safety %d", c.Size, pSize, sSize)
		}
	case ps == copyOK && ss == copyAbsent:
		v.Class, v.Good = ClassPrimaryOnly, TierPrimary
	case ps == copyAbsent && ss == copyOK:
		v.Class, v.Good = ClassSafetyOnly, TierSafety
	case ps == copyOK && ss == copyBad:
		v.Class, v.Good = ClassMismatch, TierPrimary
	case ps == copyBad && ss == copyOK:
		v.Class, v.Good = ClassMismatch, TierSafety
	default: // absent or corrupt on both sides
		v.Class, v.Good = ClassMissing, "none"
	}
	return v
}

func sizesAgree(want, p, s int64) bool {
	for _, got := range []int64{p, s} {
		if got >= 0 && want >= 0 && got != want {
			return false
		}
	}
	return true
}

func (m *Manager) statTier(ctx context.Context, t int, id stores.ID) (int64, error) {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	size, err := m.tiers[t].Stat(ctx, id)
	if err != nil {
		return -1, fmt.Errorf("%s tier: stat %s: %w", m.tiers[t].Name(), id, err)
	}
	return size, nil
}

// RepairChunk makes both tiers hold a verified copy of the chunk, copying
// only data that hashes to its id. It returns the verdict it acted on
// (always from a deep comparison) and whether it wrote anything. A chunk
// with no good copy is reported, never "repaired" from bad data.
func (m *Manager) RepairChunk(ctx context.Context, c ChunkInfo) (Verdict, bool, error) {
	ctx = c.bound(ctx)
	v := m.CompareChunk(ctx, c, true)
	var src, dst int
	switch v.Class {
	case ClassMatch:
		return v, false, nil
	case ClassPrimaryOnly:
		src, dst = 0, 1
	case ClassSafetyOnly:
		src, dst = 1, 0
	case ClassMismatch:
		switch v.Good {
		case TierPrimary:
			src, dst = 0, 1
		case TierSafety:
			src, dst = 1, 0
		default:
			return v, false, fmt.Errorf("chunk %s: %w: no verified copy to repair from (%s)", c.ID, ErrUnrecoverable, v.Note)
		}
	case ClassMissing:
		return v, false, fmt.Errorf("chunk %s: %w: no tier holds a good copy (%s)", c.ID, ErrUnrecoverable, v.Note)
	default:
		return v, false, fmt.Errorf("chunk %s: cannot repair: %w", c.ID, v.Err)
	}
	data, err := m.getTier(ctx, src, c.ID)
	if err != nil {
		return v, false, fmt.Errorf("chunk %s: read good copy: %w", c.ID, err)
	}
	wctx, cancel := m.callCtx(ctx)
	defer cancel()
	tier := m.tiers[dst]
	_ = tier.Delete(wctx, c.ID) // a bad copy would make Put a no-op
	if err := tier.Put(wctx, c.ID, data); err != nil {
		return v, false, fmt.Errorf("chunk %s: write into %s: %w", c.ID, tier.Name(), err)
	}
	if _, err := m.getTier(wctx, dst, c.ID); err != nil {
		return v, false, fmt.Errorf("chunk %s: repaired copy in %s does not verify: %w", c.ID, tier.Name(), err)
	}
	return v, true, nil
}

// ErrUnrecoverable is wrapped by a repair or migrate error when no tier
// holds a copy that verifies: the chunk's files have lost data. Any other
// repair error (a store that failed the read or the write) may succeed on
// a later run.
var ErrUnrecoverable = errors.New("unrecoverable")

// Migration directions (ScrubOptions.Migrate).
const (
	MigrateToSafety   = "to_safety"
	MigrateToPrimary  = "to_primary"
	MigrateCompareAll = "compare_all"
)

// ParseDirection checks a migrate direction.
func ParseDirection(s string) (string, error) {
	switch s {
	case MigrateToSafety, MigrateToPrimary, MigrateCompareAll:
		return s, nil
	}
	return "", fmt.Errorf("migrate direction %q: want to_safety, to_primary or compare_all", s)
}

// MigrateChunk makes tier dst (0 primary, 1 safety) hold the chunk: a copy
// already there with the right size is left alone (so a rerun skips what
// is done); a missing one is copied from the other tier, whose bytes are
// verified against the id before they are written; a copy of the wrong
// size is repaired from whichever copy verifies. It returns the state it
// found and whether it copied.
func (m *Manager) MigrateChunk(ctx context.Context, c ChunkInfo, dst int) (Verdict, bool, error) {
	ctx = c.bound(ctx)
	src := 1 - dst
	n, err := m.statTier(ctx, dst, c.ID)
	switch {
	case err == nil && (c.Size < 0 || n < 0 || n == c.Size):
		return Verdict{Class: ClassMatch}, false, nil
	case err == nil:
		return m.RepairChunk(ctx, c)
	case !errors.Is(err, stores.ErrNotFound):
		return Verdict{Class: ClassError, Err: err}, false, err
	}
	v := Verdict{Class: ClassPrimaryOnly, Good: TierPrimary}
	if dst == 0 {
		v = Verdict{Class: ClassSafetyOnly, Good: TierSafety}
	}
	data, err := m.getTier(ctx, src, c.ID)
	switch {
	case errors.Is(err, stores.ErrNotFound) || errors.Is(err, stores.ErrCorrupt):
		v = Verdict{Class: ClassMissing, Good: "none", Note: err.Error()}
		return v, false, fmt.Errorf("chunk %s: %w: not in %s, and %s has no good copy", c.ID, ErrUnrecoverable, m.tiers[dst].Name(), m.tiers[src].Name())
	case err != nil:
		return Verdict{Class: ClassError, Err: err}, false, err
	}
	wctx, cancel := m.callCtx(ctx)
	defer cancel()
	if err := m.tiers[dst].Put(wctx, c.ID, data); err != nil {
		return v, false, fmt.Errorf("chunk %s: write into %s: %w", c.ID, m.tiers[dst].Name(), err)
	}
	return v, true, nil
}

// Detail describes one chunk a comparison found not matching.
type Detail struct {
	Chunk    string   `json:"chunk"`
	Class    Class    `json:"class"`
	Files    []string `json:"files"`
	Good     string   `json:"good,omitempty"`
	Note     string   `json:"note,omitempty"`
	Error    string   `json:"error,omitempty"`
	Repaired bool     `json:"repaired,omitempty"`
}

// Report is the state and result of a comparison or repair; its JSON form
// is the `.dualstore/compare` contract (fields may be added, never renamed
// or dropped).
type Report struct {
	State           string  `json:"state"` // idle, running, done, stopped, failed
	Action          string  `json:"action"`
	Deep            bool    `json:"deep"`
	Path            string  `json:"path,omitempty"`
	StartedAt       Time    `json:"started_at"`  // null until a run starts
	FinishedAt      Time    `json:"finished_at"` // null while it runs
	Total           int64   `json:"total"`
	Done            int64   `json:"done"`
	TotalBytes      int64   `json:"total_bytes"`
	DoneBytes       int64   `json:"done_bytes"`
	ElapsedSeconds  float64 `json:"elapsed_seconds"`
	BytesPerSecond  float64 `json:"bytes_per_second"`
	ChunksPerSecond float64 `json:"chunks_per_second"`
	Matches         int64   `json:"matches"`
	Mismatches      int64   `json:"mismatches"`
	PrimaryOnly     int64   `json:"primary_only"`
	SafetyOnly      int64   `json:"safety_only"`
	Missing         int64   `json:"missing"`
	Errors          int64   `json:"errors"`
	Repaired        int64   `json:"repaired"`
	Unrecoverable   int64   `json:"unrecoverable"`
	RepairFailed    int64   `json:"repair_failed"`
	Backfilled      int64   `json:"backfilled"`
	// Migrate: the direction, and the chunks copied to the target tier.
	Direction string `json:"direction,omitempty"`
	Copied    int64  `json:"copied"`
	// GC: chunks (and their bytes) removed, or that would be in a dry run,
	// and candidates skipped because a write in flight holds them.
	DryRun           bool     `json:"dry_run,omitempty"`
	Removed          int64    `json:"removed"`
	RemovedBytes     int64    `json:"removed_bytes"`
	InFlight         int64    `json:"in_flight"`
	Details          []Detail `json:"details"`
	DetailsTruncated bool     `json:"details_truncated"`
	Error            string   `json:"error,omitempty"`
}

// Differences counts the chunks that did not match.
func (r Report) Differences() int64 {
	return r.Mismatches + r.PrimaryOnly + r.SafetyOnly + r.Missing + r.Errors
}

// Remaining counts the differences a run leaves behind: for a compare,
// every difference; for a repair or migration, the chunks it could not
// fix; for gc, the chunks it failed to remove.
func (r Report) Remaining() int64 {
	switch {
	case r.Action == "gc":
		return r.Errors
	case r.Action == "compare" || r.Direction == MigrateCompareAll:
		return r.Differences()
	}
	return r.Unrecoverable + r.RepairFailed + r.Errors
}

// ConsistencyRate is matches / total compared, or -1 if nothing was.
func (r Report) ConsistencyRate() float64 {
	if r.Done == 0 {
		if r.State == "done" {
			return 1
		}
		return -1
	}
	return float64(r.Matches) / float64(r.Done)
}

// Progress renders the short form `compare 41%` used by `.dualstore/ctl`.
func (r Report) Progress() string {
	pct := 100.0
	if r.Total > 0 {
		pct = 100 * float64(r.Done) / float64(r.Total)
	}
	mode := r.Action
	if r.Deep && r.Action == "compare" {
		mode = "compare deep"
	}
	return fmt.Sprintf("%s %.0f%% (%d/%d chunks, %.1f MB/s)", mode, pct, r.Done, r.Total, r.BytesPerSecond/1e6)
}

// ScrubOptions configure a comparison or repair run.
type ScrubOptions struct {
	// Repair copies verified-good data over every difference found (and
	// drains the pending backfill first).
	Repair bool
	// Migrate, instead of Repair, fills one tier from the other
	// (MigrateToSafety, MigrateToPrimary: see MigrateChunk; the pending
	// backfill is drained first), or compares all chunks deeply
	// (MigrateCompareAll).
	Migrate string
	// Deep reads and hashes both copies; otherwise existence and size.
	Deep bool
	// Path is informational: the subtree Source was limited to.
	Path string
	// Concurrency is how many chunks are compared at once. Default 4.
	Concurrency int
	// BatchSize is how many ids one Source call returns. Default 512.
	BatchSize int
	// Rate throttles the bytes read per second (deep and repair); 0 is
	// unlimited. It keeps a scrub from starving the mount.
	Rate int64
	// MaxDetails bounds the details kept in the report. Default 1000.
	MaxDetails int
	// Source pages through the chunks to compare, in id order, strictly
	// after `after`; an empty page ends the run. Required.
	Source func(ctx context.Context, after stores.ID, limit int) ([]ChunkInfo, error)
	// Count returns the number and bytes of the chunks Source will yield,
	// for progress. Optional.
	Count func(ctx context.Context) (chunks, bytes int64, err error)
	// FilesOf names the files that reference a chunk, for the report.
	// Optional.
	FilesOf func(ctx context.Context, id stores.ID) ([]string, error)
	// OnDetail, if set, is called for every difference (e.g. the text form
	// of `dualstore compare`), one call at a time.
	OnDetail func(Detail)
}

func (o *ScrubOptions) defaults() error {
	if o.Source == nil {
		return errors.New("dual: scrub needs a chunk source")
	}
	// These fallbacks equal maint.DefaultTuning, where callers get theirs
	// (maint imports dual, so it cannot be referenced here).
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.MaxDetails <= 0 {
		o.MaxDetails = 1000
	}
	if o.Rate < 0 {
		return fmt.Errorf("dual: scrub rate %d: want >= 0", o.Rate)
	}
	if o.Migrate != "" {
		if _, err := ParseDirection(o.Migrate); err != nil {
			return fmt.Errorf("dual: %w", err)
		}
		if o.Repair {
			return errors.New("dual: a run is a repair or a migration, not both")
		}
	}
	return nil
}

// ErrBusy is returned when an action is started while another runs: like
// md's sync_action, one scrub at a time.
var ErrBusy = errors.New("another action is running")

// Scrub is a running or finished comparison/repair.
type Scrub struct {
	m      *Manager
	opts   ScrubOptions
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time

	total, totalBytes             atomic.Int64
	n, nBytes                     atomic.Int64
	match, mismatch, pOnly, sOnly atomic.Int64
	missing, errs                 atomic.Int64
	repaired, unrecoverable       atomic.Int64
	repairFailed, copied          atomic.Int64
	backfilled                    atomic.Int64
	removed, removedBytes         atomic.Int64
	inFlight                      atomic.Int64

	gc *GCOptions // set for a garbage collection

	mu        sync.Mutex
	state     string
	finished  time.Time
	details   []Detail
	truncated bool
	err       error

	limiter rateLimiter
}

// Run compares (and with opts.Repair, repairs) every chunk Source yields,
// in the foreground, and returns the final report. Cancel ctx to stop. It
// fails with ErrBusy if an action is running.
func (m *Manager) Run(ctx context.Context, opts ScrubOptions) (Report, error) {
	s, err := m.newScrub(&opts)
	if err != nil {
		return Report{}, err
	}
	return s.foreground(ctx)
}

// foreground runs s in the caller's goroutine until it ends or ctx does.
func (s *Scrub) foreground(ctx context.Context) (Report, error) {
	ctx, s.cancel = context.WithCancel(ctx)
	defer s.cancel()
	s.run(ctx)
	r := s.Report()
	if r.State == "failed" {
		return r, s.err
	}
	return r, nil
}

func (m *Manager) newScrub(opts *ScrubOptions) (*Scrub, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return m.newRun(opts, nil)
}

// newRun claims the one action slot for a scrub (or, with gc, a garbage
// collection).
func (m *Manager) newRun(opts *ScrubOptions, gc *GCOptions) (*Scrub, error) {
	if !m.scrubbing.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("dual: %s: %w", opts.action(gc != nil), ErrBusy)
	}
	s := &Scrub{m: m, opts: *opts, gc: gc, done: make(chan struct{}), start: time.Now(), state: "running"}
	s.limiter.rate = opts.Rate
	s.limiter.start = s.start
	return s, nil
}

func (o *ScrubOptions) action(gc bool) string {
	switch {
	case gc:
		return "gc"
	case o.Migrate != "":
		return "migrate"
	case o.Repair:
		return "repair"
	}
	return "compare"
}

// StartScrub runs a comparison or repair in the background. It fails with
// ErrBusy if an action is running.
func (m *Manager) StartScrub(opts ScrubOptions) (*Scrub, error) {
	s, err := m.newScrub(&opts)
	if err != nil {
		return nil, err
	}
	m.background(s)
	return s, nil
}

// background runs s until it ends, is stopped, or the manager closes.
func (m *Manager) background(s *Scrub) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-s.done:
			}
		}()
		s.run(ctx)
	}()
}

// Stop cancels the run; Wait returns once it has ended.
func (s *Scrub) Stop() { s.cancel() }

// Wait blocks until the run ends and returns its report.
func (s *Scrub) Wait() Report { <-s.done; return s.Report() }

// Running reports whether the run is still going: its report says
// "running". Once it says anything else the manager takes the next run
// (run frees it first), so `compare --wait && repair` never meets EBUSY.
func (s *Scrub) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == "running"
}

// Report returns a consistent snapshot of progress and results.
func (s *Scrub) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reportLocked(s.state, s.finished, s.err)
}

// reportLocked builds the report as it is with the given end state
// (finished zero while running). Caller holds s.mu.
func (s *Scrub) reportLocked(state string, finished time.Time, err error) Report {
	r := Report{
		State: state, Action: s.opts.action(s.gc != nil), Path: s.opts.Path,
		Deep:      s.gc == nil && (s.opts.Deep || s.opts.Repair || s.opts.Migrate == MigrateCompareAll),
		Direction: s.opts.Migrate,
		StartedAt: Time(s.start.UTC().Format(time.RFC3339)),
		Total:     s.total.Load(), TotalBytes: s.totalBytes.Load(),
		Done: s.n.Load(), DoneBytes: s.nBytes.Load(),
		Matches: s.match.Load(), Mismatches: s.mismatch.Load(),
		PrimaryOnly: s.pOnly.Load(), SafetyOnly: s.sOnly.Load(),
		Missing: s.missing.Load(), Errors: s.errs.Load(),
		Repaired: s.repaired.Load(), Unrecoverable: s.unrecoverable.Load(),
		RepairFailed: s.repairFailed.Load(), Copied: s.copied.Load(),
		Backfilled: s.backfilled.Load(),
		Removed:    s.removed.Load(), RemovedBytes: s.removedBytes.Load(), InFlight: s.inFlight.Load(),
		DryRun:           s.gc != nil && s.gc.DryRun,
		Details:          append([]Detail{}, s.details...),
		DetailsTruncated: s.truncated,
	}
	end := time.Now()
	if !finished.IsZero() {
		end = finished
		r.FinishedAt = Time(finished.UTC().Format(time.RFC3339))
	}
	if r.Total < r.Done {
		r.Total = r.Done
	}
	el := end.Sub(s.start).Seconds()
	r.ElapsedSeconds = el
	if el > 0 {
		r.BytesPerSecond = float64(r.DoneBytes) / el
		r.ChunksPerSecond = float64(r.Done) / el
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func (s *Scrub) run(ctx context.Context) {
	defer close(s.done)
	// Free the manager for the next action before Wait returns.
	defer s.m.scrubbing.Store(false)
	produce, work := s.pageSource, s.one
	if s.gc != nil {
		produce, work = s.gcSource, s.collect
	} else if s.opts.Count != nil {
		if n, b, err := s.opts.Count(ctx); err == nil {
			s.total.Store(n)
			s.totalBytes.Store(b)
		}
	}
	if s.gc == nil && (s.opts.Repair || s.opts.Migrate == MigrateToSafety || s.opts.Migrate == MigrateToPrimary) {
		n, err := s.m.BackfillOnce(ctx)
		s.backfilled.Store(int64(n))
		if err != nil && ctx.Err() == nil {
			s.m.log.Warn().Err(err).Msg("pending backfill incomplete; the pass below copies what it can")
		}
	}
	queue := make(chan ChunkInfo, s.opts.Concurrency*2)
	var wg sync.WaitGroup
	for range s.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range queue {
				work(ctx, c)
			}
		}()
	}
	srcErr := produce(ctx, func(c ChunkInfo) bool {
		select {
		case queue <- c:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(queue)
	wg.Wait()
	if s.gc != nil {
		s.m.refreshPending(context.WithoutCancel(ctx))
	}

	finished, state, err := time.Now(), "done", error(nil)
	switch {
	case srcErr != nil && ctx.Err() == nil:
		state, err = "failed", srcErr
	case ctx.Err() != nil:
		state = "stopped"
	}
	// The final report is recorded (an index write) before it is
	// published: while the document says "running" the run still holds
	// the manager, and once it says "done" the manager is free.
	s.mu.Lock()
	r := s.reportLocked(state, finished, err)
	s.mu.Unlock()
	switch {
	case r.State != "done" || s.gc != nil:
	case !s.opts.Repair && s.opts.Migrate == "":
		s.m.setLastCompare(r)
	case s.opts.Migrate == MigrateCompareAll:
		s.m.setLastCompare(r)
	case s.opts.Repair:
		// A finished repair leaves both tiers consistent except for what it
		// could not repair; record that as the latest knowledge.
		r2 := r
		r2.Matches = r.Done - r.Unrecoverable - r.RepairFailed - r.Errors
		s.m.setLastCompare(r2)
	}
	s.m.scrubbing.Store(false)
	s.mu.Lock()
	s.finished, s.state, s.err = finished, state, err
	s.mu.Unlock()
	s.m.log.Info().Str("action", r.Action).Str("state", r.State).Int64("done", r.Done).
		Int64("differences", r.Differences()).Int64("repaired", r.Repaired).Int64("copied", r.Copied).
		Int64("removed", r.Removed).Msg("action finished")
}

// pageSource pages through opts.Source.
func (s *Scrub) pageSource(ctx context.Context, emit func(ChunkInfo) bool) error {
	var after stores.ID
	for ctx.Err() == nil {
		page, err := s.opts.Source(ctx, after, s.opts.BatchSize)
		if err != nil {
			return fmt.Errorf("list chunks: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		for _, c := range page {
			if !emit(c) {
				return nil
			}
		}
		after = page[len(page)-1].ID
	}
	return nil
}

func (s *Scrub) addDetail(d Detail) {
	if s.m.opts.ComparisonLogging {
		s.m.log.Warn().Str("action", s.opts.action(s.gc != nil)).Str("chunk", d.Chunk).Str("class", string(d.Class)).
			Strs("files", d.Files).Str("good", d.Good).Str("note", d.Note).Str("error", d.Error).
			Bool("repaired", d.Repaired).Msg("comparison difference")
	}
	s.mu.Lock()
	if s.opts.OnDetail != nil {
		s.opts.OnDetail(d) // one at a time
	}
	if len(s.details) < s.opts.MaxDetails {
		s.details = append(s.details, d)
	} else {
		s.truncated = true
	}
	s.mu.Unlock()
}

func (s *Scrub) one(ctx context.Context, c ChunkInfo) {
	if ctx.Err() != nil {
		return
	}
	deep := s.opts.Deep || s.opts.Repair || s.opts.Migrate == MigrateCompareAll
	fixes := s.opts.Repair || s.opts.Migrate == MigrateToSafety || s.opts.Migrate == MigrateToPrimary
	if deep || fixes {
		if err := s.limiter.wait(ctx, 2*c.Size); err != nil {
			return
		}
	}
	var v Verdict
	var repaired bool
	var rerr error
	switch {
	case s.opts.Repair:
		v, repaired, rerr = s.m.RepairChunk(ctx, c)
	case s.opts.Migrate == MigrateToSafety:
		v, repaired, rerr = s.m.MigrateChunk(ctx, c, 1)
	case s.opts.Migrate == MigrateToPrimary:
		v, repaired, rerr = s.m.MigrateChunk(ctx, c, 0)
	default:
		v = s.m.CompareChunk(ctx, c, deep)
	}
	if ctx.Err() != nil && v.Class == ClassError {
		return // stopped mid-chunk: not a finding
	}
	s.n.Add(1)
	s.nBytes.Add(c.Size)
	switch v.Class {
	case ClassMatch:
		s.match.Add(1)
		return
	case ClassMismatch:
		s.mismatch.Add(1)
	case ClassPrimaryOnly:
		s.pOnly.Add(1)
	case ClassSafetyOnly:
		s.sOnly.Add(1)
	case ClassMissing:
		s.missing.Add(1)
	case ClassError:
		s.errs.Add(1)
	}
	switch {
	case repaired && s.opts.Migrate != "":
		s.copied.Add(1)
	case repaired:
		s.repaired.Add(1)
	case !fixes || v.Class == ClassError:
	case errors.Is(rerr, ErrUnrecoverable):
		s.unrecoverable.Add(1)
	default:
		s.repairFailed.Add(1)
	}
	d := Detail{Chunk: c.ID.String(), Class: v.Class, Good: v.Good, Note: v.Note, Repaired: repaired, Files: []string{}}
	if v.Err != nil {
		d.Error = v.Err.Error()
	} else if rerr != nil {
		d.Error = rerr.Error()
	}
	if s.opts.FilesOf != nil {
		if files, err := s.opts.FilesOf(ctx, c.ID); err == nil {
			d.Files = files
		}
	}
	s.addDetail(d)
}

// rateLimiter spaces reads so that, over the run, at most rate bytes per
// second are read. Zero rate is unlimited.
type rateLimiter struct {
	rate  int64
	start time.Time
	mu    sync.Mutex
	bytes int64
}

func (l *rateLimiter) wait(ctx context.Context, n int64) error {
	if l.rate <= 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	l.bytes += n
	due := l.start.Add(time.Duration(float64(l.bytes) / float64(l.rate) * float64(time.Second)))
	l.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Time is a report's RFC 3339 time, "" for none: in JSON a string, or
// null for none, so the field is always there (the compare document is a
// contract scripts build on: its fields are never dropped).
type Time string

// MarshalJSON writes null for no time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(t))
}

// UnmarshalJSON reads a string, or null as no time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = Time(s)
	return nil
}

// LastCompare returns the report of the last finished comparison, or nil.
func (m *Manager) LastCompare() *Report { return m.lastCompare.Load() }

// CompareRecord keeps the last comparison across runs (the index does:
// index.DB.SaveLastCompare), as JSON.
type CompareRecord interface {
	SaveLastCompare(ctx context.Context, report []byte) error
	LastCompare(ctx context.Context) ([]byte, error)
}

// RecordCompares makes rec the keeper of the last comparison: the one it
// holds becomes LastCompare now, and every comparison or repair that
// finishes is saved to it. A record that cannot be read or decoded is
// logged and left to the next comparison to replace: it is a report,
// not data.
func (m *Manager) RecordCompares(ctx context.Context, rec CompareRecord) {
	b, err := rec.LastCompare(ctx)
	var r Report
	switch {
	case err != nil:
		m.log.Warn().Err(err).Msg("the last comparison could not be read; the stats have none until the next")
	case b == nil:
	case json.Unmarshal(b, &r) != nil:
		m.log.Warn().Msg("the last comparison's record does not decode; the stats have none until the next")
	default:
		m.lastCompare.Store(&r)
	}
	m.record.Store(&rec)
}

// savedDetails bounds the details a saved comparison keeps (the one in
// memory keeps compare.max_details): the record is read at every open
// and copied by the index backup, and 1000 differences name what to
// repair as well as more would.
const savedDetails = 1000

// setLastCompare makes r the last comparison, and saves it where
// RecordCompares said.
func (m *Manager) setLastCompare(r Report) {
	m.lastCompare.Store(&r)
	rec := m.record.Load()
	if rec == nil {
		return
	}
	saved := r // r is the one in memory now: not cut
	if len(saved.Details) > savedDetails {
		saved.Details, saved.DetailsTruncated = saved.Details[:savedDetails], true
	}
	b, err := json.Marshal(saved)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = (*rec).SaveLastCompare(ctx, b)
		cancel()
	}
	if err != nil {
		m.log.Warn().Err(err).Msg("the last comparison was not saved: a remount will not show it")
	}
}
