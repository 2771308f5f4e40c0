package dual_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// fastBackfill makes the background backfill quick enough to watch.
func fastBackfill(o *dual.Options) {
	o.BackfillInterval = 10 * time.Millisecond
	o.BackfillMaxBackoff = 80 * time.Millisecond
}

// writeChunks puts n distinct chunks through the manager and returns them.
func writeChunks(t testing.TB, m *dual.Manager, seed uint64, n, size int) map[stores.ID][]byte {
	t.Helper()
	out := make(map[stores.ID][]byte, n)
	for i := range n {
		data, id := chunk(seed+uint64(i), size+i)
		if err := m.Put(t.Context(), id, data); err != nil {
			t.Fatalf("Put #%d: %v", i, err)
		}
		out[id] = data
	}
	return out
}

// TestBackfillDrains takes the safety store down while chunks are written,
// brings it back and lets the running backfill copy every chunk over.
func TestBackfillDrains(t *testing.T) {
	r := newRig(t, rigConfig{opts: fastBackfill})
	if err := r.m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	r.s.Set(stores.OpPut, stores.Rule{Fail: errors.New("safety store down")})
	const n = 20
	chunks := writeChunks(t, r.m, 100, n, 1000)
	if got := r.m.PendingCount(); got != n {
		t.Fatalf("PendingCount = %d, want %d", got, n)
	}
	if ids := r.pending.ids(dual.TierSafety); len(ids) != n {
		t.Fatalf("pending safety holds %d ids, want %d", len(ids), n)
	}
	// The writes kicked the backfill while the store was still down: it
	// failed, and the chunks stay pending.
	waitFor(t, 5*time.Second, "a failed backfill round", func() bool {
		return statNum(t, r.m, "backfill_errors") > 0
	})
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok": n, "chunk_writes.errors": 0, "one_sided_writes": n,
		"pending_backfill": n, "backfilled": 0,
		"tiers.safety.writes.ok": 0, "tiers.primary.writes.ok": n,
	})

	r.s.Clear()
	r.m.KickBackfill()
	waitFor(t, 10*time.Second, "the pending list to drain", func() bool { return r.m.PendingCount() == 0 })
	for id, data := range chunks {
		if !holds(t, r.s, id, data) {
			t.Fatalf("safety lacks %s after the backfill", id)
		}
	}
	if ids := r.pending.ids(dual.TierSafety); len(ids) != 0 {
		t.Fatalf("pending safety still holds %v", ids)
	}
	wantStats(t, r.m, map[string]float64{
		"pending_backfill": 0, "backfilled": n, "tiers.safety.writes.ok": n,
	})
}

// TestBackfillIntoPrimary backfills the primary after writes that only the
// safety tier took (require any).
func TestBackfillIntoPrimary(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.Require = dual.RequireAny }})
	r.p.Set(stores.OpPut, stores.Rule{})
	chunks := writeChunks(t, r.m, 200, 5, 500)
	if ids := r.pending.ids(dual.TierPrimary); len(ids) != 5 {
		t.Fatalf("pending primary = %d ids, want 5", len(ids))
	}
	// Readable through the safety tier meanwhile (the self-heals into the
	// primary fail: it is still down).
	for id, data := range chunks {
		if got, err := r.m.Get(t.Context(), id); err != nil || string(got) != string(data) {
			t.Fatalf("Get(%s) = %d bytes, %v", id, len(got), err)
		}
	}
	for id := range chunks {
		if has(t, r.p, id) {
			t.Fatalf("the primary holds %s while down", id)
		}
	}
	r.p.Clear()
	n, err := r.m.BackfillOnce(t.Context())
	if err != nil || n != 5 {
		t.Fatalf("BackfillOnce = %d, %v; want 5, nil", n, err)
	}
	for id, data := range chunks {
		if !holds(t, r.p, id, data) {
			t.Fatalf("primary lacks %s", id)
		}
	}
	wantStats(t, r.m, map[string]float64{
		"pending_backfill": 0, "one_sided_writes": 5, "fallbacks": 5, "self_heals": 0, "self_heal_errors": 5,
		"backfilled": 5, "backfill_errors": 0, "tiers.primary.writes.ok": 5,
	})
}

// A pending chunk whose source copy is gone too stays pending (and counts
// an error) unless the target has it after all.
func TestBackfillSourceLost(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.s.Set(stores.OpPut, stores.Rule{})
	lostData, lost := chunk(300, 700)
	laterData, later := chunk(301, 700)
	r.put(t, lostData)
	r.put(t, laterData)
	r.s.Clear()
	// lost: gone from the primary as well. later: the safety tier got it
	// some other way, then the primary lost it.
	if err := r.p.Inner().Delete(t.Context(), lost); err != nil {
		t.Fatal(err)
	}
	if err := r.s.Inner().Put(t.Context(), later, laterData); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Inner().Delete(t.Context(), later); err != nil {
		t.Fatal(err)
	}
	_, err := r.m.BackfillOnce(t.Context())
	if err == nil || !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("BackfillOnce = %v, want the lost chunk's not-found", err)
	}
	if ids := r.pending.ids(dual.TierSafety); len(ids) != 1 || ids[0] != lost {
		t.Fatalf("pending safety = %v, want only the lost chunk", ids)
	}
	wantStats(t, r.m, map[string]float64{"pending_backfill": 1, "backfill_errors": 1, "backfilled": 0})
}

// TestBackfillBackoff checks that while the target keeps failing the
// background loop keeps retrying, but backs off instead of spinning.
func TestBackfillBackoff(t *testing.T) {
	const (
		interval   = 10 * time.Millisecond
		maxBackoff = 80 * time.Millisecond
		pending    = 5
		window     = 500 * time.Millisecond
	)
	r := newRig(t, rigConfig{opts: func(o *dual.Options) {
		o.BackfillInterval, o.BackfillMaxBackoff = interval, maxBackoff
	}})
	r.s.Set(stores.OpPut, stores.Rule{})
	chunks := writeChunks(t, r.m, 400, pending, 100)
	writes := r.s.Calls(stores.OpPut)
	if err := r.m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first backfill round", func() bool {
		return r.s.Calls(stores.OpPut) >= writes+pending
	})
	// Measure the retry rate over a window.
	before := r.s.Calls(stores.OpPut)
	time.Sleep(window) // the window measured: not synchronisation
	tries := r.s.Calls(stores.OpPut) - before
	// Polling every interval would be window/interval rounds of `pending`
	// puts (250); backing off up to maxBackoff gives about 7 rounds (35).
	fixed := int64(window/interval) * pending
	if tries >= fixed/2 {
		t.Errorf("%d backfill puts in %s: the loop does not back off (fixed-interval polling would make %d)", tries, window, fixed)
	}
	if tries < pending {
		t.Errorf("%d backfill puts in %s: the loop stopped retrying", tries, window)
	}
	t.Logf("%d backfill puts in %s (fixed-interval polling: %d)", tries, window, fixed)
	if got := statNum(t, r.m, "backfill_errors"); got < float64(pending) {
		t.Errorf("backfill_errors = %v, want at least %d", got, pending)
	}
	// Back up: the loop finds out by itself within the maximum backoff.
	r.s.Clear()
	waitFor(t, 10*time.Second, "the pending list to drain", func() bool { return r.m.PendingCount() == 0 })
	for id, data := range chunks {
		if !holds(t, r.s, id, data) {
			t.Fatalf("safety lacks %s", id)
		}
	}
	wantStats(t, r.m, map[string]float64{"backfilled": pending, "pending_backfill": 0})
}

// TestBackfillAfterStart loads a pending list left by an earlier run.
func TestBackfillAfterStart(t *testing.T) {
	r := newRig(t, rigConfig{opts: fastBackfill})
	data, id := chunk(500, 900)
	if err := r.p.Inner().Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	if err := r.pending.AddPending(t.Context(), dual.TierSafety, []stores.ID{id}); err != nil {
		t.Fatal(err)
	}
	if r.m.PendingCount() != 0 {
		t.Fatal("the pending count is loaded before Start")
	}
	if err := r.m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the pending list to drain", func() bool { return r.m.PendingCount() == 0 })
	if !holds(t, r.s, id, data) {
		t.Fatal("safety lacks the chunk")
	}
	wantStats(t, r.m, map[string]float64{"backfilled": 1, "pending_backfill": 0, "one_sided_writes": 0})
}

func TestStartCountFails(t *testing.T) {
	r := newRig(t, rigConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.m.Start(ctx); err == nil {
		t.Fatal("Start with a pending list that cannot be counted succeeded")
	}
}

// TestBackfillSurvivesRestart uses the real SQLite index as the pending
// list: one-sided writes are recorded, the manager and index are closed
// (a restart), and the backfill of the next run finishes the job.
func TestBackfillSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "index.db")
	pRoot, sRoot := filepath.Join(dir, "primary"), filepath.Join(dir, "safety")
	hdr := index.Header{Hash: index.HashBLAKE3, Polynomial: 0x3DA3358B4DC173, MinSize: 512 << 10, AvgSize: 1 << 20, MaxSize: 8 << 20}
	open := func() *index.DB {
		t.Helper()
		db, err := index.Open(t.Context(), index.Options{Path: dbPath, NewHeader: hdr})
		if err != nil {
			t.Fatalf("index.Open: %v", err)
		}
		return db
	}
	build := func(db *index.DB) (*dual.Manager, *stores.Fault, *stores.Fault) {
		t.Helper()
		p := stores.NewFault(newLocalCreate(t, pRoot, "p0"))
		s := stores.NewFault(newLocalCreate(t, sRoot, "s0"))
		o := baseOptions()
		fastBackfill(&o)
		m, err := dual.New(dual.NewTier(dual.TierPrimary, []stores.Store{p}, hashID),
			dual.NewTier(dual.TierSafety, []stores.Store{s}, hashID), db, o, testLog(t))
		if err != nil {
			t.Fatalf("dual.New: %v", err)
		}
		return m, p, s
	}

	// First run: the safety store is down for every write.
	db := open()
	m, _, s := build(db)
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Set(stores.OpPut, stores.Rule{})
	const n = 12
	chunks := writeChunks(t, m, 600, n, 2000)
	counts, err := db.CountPending(t.Context())
	if err != nil || counts[dual.TierSafety] != n || len(counts) != 1 {
		t.Fatalf("CountPending = %v, %v; want safety: %d", counts, err, n)
	}
	wantStats(t, m, map[string]float64{"pending_backfill": n, "one_sided_writes": n, "backfilled": 0})
	if err := m.Close(); err != nil {
		t.Fatalf("close manager: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close index: %v", err)
	}

	// Second run: the store is back; Start finds the records and drains.
	db = open()
	t.Cleanup(func() { _ = db.Close() })
	m, _, s = build(db)
	t.Cleanup(func() { _ = m.Close() })
	if got := m.PendingCount(); got != 0 {
		t.Fatalf("PendingCount before Start = %d", got)
	}
	for id := range chunks {
		if has(t, s, id) {
			t.Fatalf("the safety store holds %s before the backfill", id)
		}
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the pending list to drain after the restart", func() bool { return m.PendingCount() == 0 })
	for id, data := range chunks {
		if !holds(t, s, id, data) {
			t.Fatalf("safety lacks %s after the backfill", id)
		}
	}
	counts, err = db.CountPending(t.Context())
	if err != nil || len(counts) != 0 {
		t.Fatalf("CountPending after the backfill = %v, %v; want none", counts, err)
	}
	wantStats(t, m, map[string]float64{"pending_backfill": 0, "backfilled": n, "tiers.safety.writes.ok": n})
}

func newLocalCreate(t testing.TB, root, name string) stores.Store {
	t.Helper()
	l, err := localNew(root, name)
	if err != nil {
		t.Fatalf("local store %s: %v", root, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestStoreTimeout checks that a store that hangs fails the call after
// StoreTimeout instead of hanging it, on every path.
func TestStoreTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	const hang = time.Minute
	const bound = 10 * time.Second // far below hang, far above timeout
	newHung := func(t *testing.T, opts func(*dual.Options)) *rig {
		r := newRig(t, rigConfig{opts: func(o *dual.Options) {
			o.StoreTimeout = timeout
			if opts != nil {
				opts(o)
			}
		}})
		return r
	}
	timed := func(t *testing.T, what string, fn func() error) error {
		t.Helper()
		start := time.Now()
		err := fn()
		el := time.Since(start)
		if el < timeout {
			t.Errorf("%s returned after %s, before the timeout", what, el)
		}
		if el > bound {
			t.Errorf("%s took %s: it waited for the hanging store", what, el)
		}
		return err
	}

	t.Run("put", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		r.p.Set(stores.OpPut, stores.Rule{Delay: hang})
		data, id := chunk(700, 100)
		err := timed(t, "Put", func() error { return r.m.Put(t.Context(), id, data) })
		if !errors.Is(err, dual.ErrWrite) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put = %v, want ErrWrite wrapping DeadlineExceeded", err)
		}
		// A store that hangs past store_timeout is a failing store: its
		// tier and store counters show the error, not only the manager's.
		wantStats(t, r.m, map[string]float64{"chunk_writes.errors": 1, "chunk_writes.ok": 0, "tiers.safety.writes.ok": 1,
			"tiers.primary.writes.errors": 1, "tiers.primary.stores.0.writes.errors": 1})
	})
	t.Run("put one-sided", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		r.s.Set(stores.OpPut, stores.Rule{Delay: hang})
		data, id := chunk(701, 100)
		if err := timed(t, "Put", func() error { return r.m.Put(t.Context(), id, data) }); err != nil {
			t.Fatalf("Put with a hanging safety store = %v, want success (require primary)", err)
		}
		wantStats(t, r.m, map[string]float64{"chunk_writes.ok": 1, "one_sided_writes": 1, "pending_backfill": 1})
	})
	t.Run("get without fallback", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, func(o *dual.Options) { o.FallbackEnabled = false })
		data, id := chunk(702, 100)
		r.put(t, data)
		r.p.Set(stores.OpGet, stores.Rule{Delay: hang})
		err := timed(t, "Get", func() error { _, err := r.m.Get(t.Context(), id); return err })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want DeadlineExceeded", err)
		}
		wantStats(t, r.m, map[string]float64{"chunk_reads.errors": 1, "tiers.primary.reads.errors": 1})
	})
	t.Run("get both hang", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		data, id := chunk(703, 100)
		r.put(t, data)
		r.p.Set(stores.OpGet, stores.Rule{Delay: hang})
		r.s.Set(stores.OpGet, stores.Rule{Delay: hang})
		err := timed(t, "Get", func() error { _, err := r.m.Get(t.Context(), id); return err })
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stores.ErrNotFound) {
			t.Fatalf("Get = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("stat", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		data, id := chunk(704, 100)
		r.put(t, data)
		r.p.Set(stores.OpStat, stores.Rule{Delay: hang})
		var size int64
		err := timed(t, "Stat", func() (err error) { size, err = r.m.Stat(t.Context(), id); return err })
		if err != nil || size != 100 {
			t.Fatalf("Stat = %d, %v; want the safety tier's answer", size, err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		data, id := chunk(705, 100)
		r.put(t, data)
		r.s.Set(stores.OpDelete, stores.Rule{Delay: hang})
		err := timed(t, "Delete", func() error { return r.m.Delete(t.Context(), id) })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Delete = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("compare", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		data, id := chunk(706, 100)
		r.put(t, data)
		r.s.Set(stores.OpStat, stores.Rule{Delay: hang})
		r.s.Set(stores.OpGet, stores.Rule{Delay: hang})
		for _, deep := range []bool{false, true} {
			var v dual.Verdict
			timed(t, "CompareChunk", func() error { v = r.m.CompareChunk(t.Context(), dual.ChunkInfo{ID: id, Size: 100}, deep); return nil })
			if v.Class != dual.ClassError || !errors.Is(v.Err, context.DeadlineExceeded) {
				t.Fatalf("CompareChunk(deep=%v) = %+v, want class error from the timeout", deep, v)
			}
		}
	})
	t.Run("backfill", func(t *testing.T) {
		t.Parallel()
		r := newHung(t, nil)
		r.s.Set(stores.OpPut, stores.Rule{})
		data, id := chunk(707, 100)
		r.put(t, data)
		r.s.Set(stores.OpPut, stores.Rule{Delay: hang})
		err := timed(t, "BackfillOnce", func() error { _, err := r.m.BackfillOnce(t.Context()); return err })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("BackfillOnce = %v, want DeadlineExceeded", err)
		}
		if ids := r.pending.ids(dual.TierSafety); len(ids) != 1 || ids[0] != id {
			t.Fatalf("pending = %v: a timed-out backfill must stay pending", ids)
		}
	})
}

// TestPendingCountRace lands a one-sided write between the moment a
// backfill round counts the pending list and the moment it stores that
// count: the gauge must still match the list afterwards. (It used to drop
// the write's increment; at zero, the loop then stopped retrying a chunk
// that was still pending.)
func TestPendingCountRace(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.s.Set(stores.OpPut, stores.Rule{})
	a, _ := chunk(1100, 100)
	r.put(t, a)
	b, bid := chunk(1101, 100)
	written := make(chan error, 1)
	var once sync.Once
	hook := func() {
		once.Do(func() {
			go func() { written <- r.m.Put(context.Background(), bid, b) }()
			// Give the write the chance to finish inside the window. A
			// correct manager makes it wait for the refresh instead, so
			// this bounded wait runs out.
			select {
			case err := <-written:
				written <- err
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
	r.pending.countHook.Store(&hook)
	if _, err := r.m.BackfillOnce(t.Context()); err == nil {
		t.Fatal("BackfillOnce with the safety store down succeeded")
	}
	if err := <-written; err != nil {
		t.Fatalf("Put: %v", err)
	}
	r.pending.countHook.Store(nil)
	if got, want := r.m.PendingCount(), int64(len(r.pending.ids(dual.TierSafety))); got != want || want != 2 {
		t.Fatalf("PendingCount = %d, but the list holds %d (want 2)", got, want)
	}
	wantStats(t, r.m, map[string]float64{"pending_backfill": 2, "one_sided_writes": 2})
}

// A round stops after 17 failures: the target is most likely down, and
// trying every pending chunk against it would only hammer it.
func TestBackfillRoundGivesUp(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.s.Set(stores.OpPut, stores.Rule{})
	writeChunks(t, r.m, 1200, 40, 100)
	before := r.s.Calls(stores.OpPut)
	copied, err := r.m.BackfillOnce(t.Context())
	if copied != 0 || !errors.Is(err, stores.ErrInjected) {
		t.Fatalf("BackfillOnce = %d, %v", copied, err)
	}
	if tries := r.s.Calls(stores.OpPut) - before; tries != 17 {
		t.Errorf("one round tried %d puts against the down store, want 17", tries)
	}
	wantStats(t, r.m, map[string]float64{"backfill_errors": 17, "pending_backfill": 40, "backfilled": 0})
}

// TestBackfillResumesWhenTheTierIsBack: writes during an outage do not
// drive the backoff (they do not kick rounds against a tier that just
// failed), and the first write both tiers accept again ends the backoff,
// so the pending list drains at once instead of after the longest wait.
func TestBackfillResumesWhenTheTierIsBack(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) {
		o.BackfillInterval, o.BackfillMaxBackoff = 20*time.Millisecond, time.Hour
	}})
	if err := r.m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.s.Set(stores.OpPut, stores.Rule{Fail: errors.New("safety store down")})
	writeChunks(t, r.m, 700, 5, 100)
	waitFor(t, 5*time.Second, "failed backfill rounds", func() bool { return statNum(t, r.m, "backfill_errors") >= 10 })
	// The writes of an outage must not kick a round each: the timer may
	// run one or two (a round gives up after 17 failed puts).
	roundsBefore := statNum(t, r.m, "backfill_errors")
	writeChunks(t, r.m, 800, 50, 100)
	time.Sleep(100 * time.Millisecond) // time for wrongly kicked rounds to run and be counted: not synchronisation
	if extra := statNum(t, r.m, "backfill_errors") - roundsBefore; extra > 2*17 {
		t.Errorf("50 writes during the outage ran %v more failing backfill puts", extra)
	}
	r.s.Clear()
	start := time.Now()
	writeChunks(t, r.m, 900, 1, 100) // both tiers take it: the outage is over
	waitFor(t, 5*time.Second, "the pending list to drain", func() bool { return r.m.PendingCount() == 0 })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("pending drained %s after the tier came back; want at once", d)
	}
}
