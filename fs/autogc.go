package fs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// AutoGCOptions configure the background gc: when the bytes of the chunks
// no file references pass a share of the live data (like restic prune's
// max-unused), the mount starts a gc by itself, as `gc` on ctl would, at
// most once per Interval and never while another action runs.
type AutoGCOptions struct {
	// Enabled starts the background loop in New; off, only a `gc` command
	// (ctl or offline) collects.
	Enabled bool
	// MaxUnusedPercent is how much unreferenced data may pile up, as a
	// percentage of the live unique bytes (the stats' unique_bytes).
	// Default 5.
	MaxUnusedPercent float64
	// MinUnused is a floor in bytes: below it gc never starts by itself,
	// so a small filesystem does not collect a few KiB. Default 64 MiB.
	MinUnused int64
	// Interval is the least time between the starts of two automatic runs
	// (a stopped or failed one counts). Default 10m.
	Interval time.Duration
	// CheckInterval is how often the unreferenced bytes are measured (a
	// scan of the index's unreferenced rows only, through their partial
	// index: its cost follows the garbage, not the filesystem). Default
	// 1m, or Interval if that is shorter.
	CheckInterval time.Duration
	// Rate bounds the bytes of unreferenced chunks a run removes per
	// second; 0 takes Options.Tuning.Rate (0 there: unlimited). gc reads
	// no chunks, so the ctl command runs unthrottled; the background one
	// is throttled so it never competes hard with the mount's own I/O.
	Rate int64
}

// DefaultAutoGC returns the background gc's defaults: on, 5% of the live
// data and at least 64 MiB, at most once per 10 minutes, checked every
// minute, at the compare tuning's rate.
func DefaultAutoGC() AutoGCOptions {
	return AutoGCOptions{Enabled: true, MaxUnusedPercent: 5, MinUnused: 64 << 20,
		Interval: 10 * time.Minute, CheckInterval: time.Minute}
}

// withDefaults fills the zero durations (a zero percentage or floor is a
// value: collect as soon as anything is unreferenced).
func (o AutoGCOptions) withDefaults() AutoGCOptions {
	d := DefaultAutoGC()
	if o.Interval == 0 {
		o.Interval = d.Interval
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = min(d.CheckInterval, o.Interval)
	}
	return o
}

// Validate reports the values out of range.
func (o AutoGCOptions) Validate() error {
	var errs []error
	if o.MaxUnusedPercent < 0 || math.IsNaN(o.MaxUnusedPercent) || math.IsInf(o.MaxUnusedPercent, 0) {
		errs = append(errs, fmt.Errorf("max unused %v%%: want 0 or more", o.MaxUnusedPercent))
	}
	if o.MinUnused < 0 {
		errs = append(errs, fmt.Errorf("min unused %d: want 0 or more bytes", o.MinUnused))
	}
	if o.Interval < 0 || o.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("negative interval (interval %s, check interval %s)", o.Interval, o.CheckInterval))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %d: want 0 or more (0: the compare tuning's)", o.Rate))
	}
	return errors.Join(errs...)
}

// threshold is the unreferenced bytes past which a run starts, for live
// unique bytes.
func (o AutoGCOptions) threshold(live int64) int64 {
	return max(o.MinUnused, int64(float64(live)*o.MaxUnusedPercent/100))
}

// AutoGCStats is the background gc in `.dualstore/stats` (auto_gc).
type AutoGCStats struct {
	Enabled bool `json:"enabled"`
	// Runs counts the automatic runs started by this mount.
	Runs int64 `json:"runs"`
	// LastStart, LastState (running, done, stopped, failed) and
	// LastRemovedBytes are the last automatic run's, once it has ended.
	LastStart        string `json:"last_start,omitempty"`
	LastState        string `json:"last_state,omitempty"`
	LastRemovedBytes int64  `json:"last_removed_bytes"`
	// Checks counts the measurements; UnusedBytes and ThresholdBytes are
	// the last one's: the bytes of unreferenced chunks, and the mark past
	// which a run starts.
	Checks         int64  `json:"checks"`
	UnusedBytes    int64  `json:"unused_bytes"`
	ThresholdBytes int64  `json:"threshold_bytes"`
	CheckedAt      string `json:"checked_at,omitempty"`
	// Blocked says why a run that is due does not start (after a
	// restore, until `gc after-restore`).
	Blocked string `json:"blocked,omitempty"`
}

// autoGC is the background gc's state in an FS.
type autoGC struct {
	opts   AutoGCOptions
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has returned
	// watchers wait for the runs the loop started, to record their end.
	watchers sync.WaitGroup

	mu      sync.Mutex
	stats   AutoGCStats
	lastTry time.Time // the last start, or failed attempt to start
}

func (a *autoGC) snapshot() AutoGCStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// startAutoGC starts the background loop when it is enabled.
func (f *FS) startAutoGC() {
	a := &f.agc
	a.stats.Enabled = a.opts.Enabled
	if !a.opts.Enabled {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.opts.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				f.autoGCCheck(ctx, now)
			}
		}
	}()
}

// stopAutoGC ends the loop: no run starts after it returns. A run already
// started is the control's action, which Close stops.
func (f *FS) stopAutoGC() {
	a := &f.agc
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
}

// autoGCCheck measures the unreferenced bytes and starts a run if they are
// past the threshold, no action runs, and the last run is older than the
// interval. Otherwise it only records the measurement and logs nothing.
func (f *FS) autoGCCheck(ctx context.Context, now time.Time) {
	a := &f.agc
	// A run of its own or a manual action: measure, start nothing. (A
	// command that starts after this still wins: startAutoRun looks again
	// under the control's lock.)
	busy := f.ctl.running()
	_, unused, err := f.db.UnrefCount(ctx)
	if err != nil {
		f.log.Debug().Err(err).Msg("automatic gc: counting unreferenced chunks")
		return
	}
	u, err := f.db.Usage(ctx)
	if err != nil {
		f.log.Debug().Err(err).Msg("automatic gc: reading usage")
		return
	}
	thr := a.opts.threshold(u.UniqueBytes)
	a.mu.Lock()
	a.stats.Checks++
	a.stats.UnusedBytes, a.stats.ThresholdBytes = unused, thr
	a.stats.CheckedAt = now.UTC().Format(time.RFC3339)
	due := !busy && unused > thr && (a.lastTry.IsZero() || now.Sub(a.lastTry) >= a.opts.Interval)
	a.mu.Unlock()
	if !due {
		return
	}
	// After a restore only `gc after-restore` may sweep (maint.GCAllowed,
	// which the start below checks too): say why once, not every check.
	if note, err := f.db.RestoredFrom(ctx); err != nil || note != "" {
		if err != nil {
			f.log.Debug().Err(err).Msg("automatic gc: reading the restore mark")
			return
		}
		why := fmt.Sprintf("this index was %s: run `gc after-restore` once no newer copy of the index exists", note)
		a.mu.Lock()
		first := a.stats.Blocked == ""
		a.stats.Blocked = why
		a.mu.Unlock()
		if first {
			f.log.Warn().Int64("unused_bytes", unused).Int64("threshold_bytes", thr).
				Msg("automatic gc does not run: " + why)
		}
		return
	}
	a.mu.Lock()
	a.stats.Blocked = ""
	a.mu.Unlock()

	rate := a.opts.Rate
	if rate == 0 {
		rate = f.opts.Tuning.Rate
	}
	why := unusedNote(unused, u.UniqueBytes)
	s, err := f.ctl.startAutoRun(ctx, why, rate)
	if errors.Is(err, dual.ErrBusy) || ctx.Err() != nil {
		return // an action started since the check above: it goes first
	}
	a.mu.Lock()
	a.lastTry = now
	a.mu.Unlock()
	if err != nil {
		f.log.Warn().Err(err).Dur("retry_in", a.opts.Interval).Msg("automatic gc did not start")
		return
	}
	a.mu.Lock()
	a.stats.Runs++
	a.stats.LastStart = now.UTC().Format(time.RFC3339)
	a.stats.LastState, a.stats.LastRemovedBytes = "running", 0
	a.mu.Unlock()
	f.log.Info().Str("why", why).Int64("unused_bytes", unused).Int64("live_bytes", u.UniqueBytes).
		Int64("threshold_bytes", thr).Int64("rate", rate).Msg("automatic gc started")
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		r := s.Wait()
		a.mu.Lock()
		a.stats.LastState, a.stats.LastRemovedBytes = r.State, r.RemovedBytes
		a.mu.Unlock()
		ev := f.log.Info()
		if r.State == "failed" || r.Errors > 0 {
			ev = f.log.Warn().Str("error", r.Error).Int64("errors", r.Errors)
		}
		ev.Str("state", r.State).Int64("removed", r.Removed).Int64("removed_bytes", r.RemovedBytes).
			Float64("seconds", r.ElapsedSeconds).Msg("automatic gc finished")
	}()
}

// unusedNote says why an automatic run started, for ctl's status.
func unusedNote(unused, live int64) string {
	if live <= 0 {
		return fmt.Sprintf("unused %.1f MiB, no live data", float64(unused)/(1<<20))
	}
	return fmt.Sprintf("unused %.1f%% of live data", 100*float64(unused)/float64(live))
}

// unreferencedFunc is dual.GCOptions.Unreferenced.
type unreferencedFunc = func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error)

// throttle makes a gc's page source hand out at most rate bytes of chunks
// per second (rate <= 0: unchanged). Each page is cut to about one
// second's worth (at least one chunk), and returned once the bytes of the
// pages before it are due. A page is where gc runs its durability point,
// so a throttled run syncs about once a second, no more. Chunks that only
// the sweep finds (in a store, unknown to the index: left by a crash) are
// not throttled; they are few.
func throttle(next unreferencedFunc, rate int64) unreferencedFunc {
	if rate <= 0 {
		return next
	}
	var (
		mu    sync.Mutex
		start time.Time
		sent  int64
	)
	return func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		page, err := next(ctx, after, limit)
		if err != nil || len(page) == 0 {
			return page, err
		}
		var n int
		var b int64
		for n < len(page) && (n == 0 || b+page[n].Size <= rate) {
			b += max(page[n].Size, 0)
			n++
		}
		page = page[:n]
		mu.Lock()
		if start.IsZero() {
			start = time.Now()
		}
		due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
		sent += b
		mu.Unlock()
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return page, nil
	}
}
