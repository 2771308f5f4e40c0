package dual_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
)

// readFault is what is wrong with the preferred tier's copy.
type readFault string

const (
	faultMissing readFault = "missing" // the store does not hold the chunk
	faultCorrupt readFault = "corrupt" // its file on disk holds other bytes
	faultError   readFault = "error"   // the store fails the read
	faultSlow    readFault = "slow"    // the store hangs
)

// orderedTimeout bounds a store call in the slow cases of the ordered
// preferences, where only the timeout ends the hanging read.
const orderedTimeout = 300 * time.Millisecond

// TestReadPaths reads a chunk whose preferred copy is missing, corrupt on
// disk, failing or slow, for every preference, with fallback on and off.
func TestReadPaths(t *testing.T) {
	for _, pref := range []dual.Preference{dual.PreferPrimary, dual.PreferSafety, dual.PreferFastest} {
		for _, fault := range []readFault{faultMissing, faultCorrupt, faultError, faultSlow} {
			for _, fallback := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/fallback=%v", pref, fault, fallback)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					testReadPath(t, pref, fault, fallback)
				})
			}
		}
	}
}

func testReadPath(t *testing.T, pref dual.Preference, fault readFault, fallback bool) {
	fastest := pref == dual.PreferFastest
	// For fastest, the tier that answers first holds its answer until the
	// other tier's read is in flight, so the race has a known winner and a
	// loser that is really cancelled (not just never started).
	pGate, sGate := newGate(), newGate()
	cfg := rigConfig{local: true, opts: func(o *dual.Options) {
		o.ReadPreference = pref
		o.FallbackEnabled = fallback
		if fault == faultSlow && !fastest {
			o.StoreTimeout = orderedTimeout
		}
	}}
	if fastest {
		cfg.wrapP = func(s stores.Store) stores.Store { pGate.Store = s; return pGate }
		cfg.wrapS = func(s stores.Store) stores.Store { sGate.Store = s; return sGate }
		if fault == faultSlow {
			sGate.wait = pGate.entered
		} else {
			pGate.wait = sGate.entered
		}
	}
	r := newRig(t, cfg)
	data, id := chunk(10, 8000)
	r.put(t, data)

	// bad is the tier whose copy is disturbed: the preferred one, or for
	// fastest the primary, with the safety tier answering 200ms late so the
	// bad answer comes first.
	bad, good := dual.TierPrimary, dual.TierSafety
	badF, goodF, badL := r.p, r.s, r.pLocal
	if pref == dual.PreferSafety {
		bad, good = good, bad
		badF, goodF, badL = r.s, r.p, r.sLocal
	}
	if fastest && fault != faultSlow {
		goodF.Set(stores.OpGet, stores.Rule{Delay: 200 * time.Millisecond})
	}
	pGate.arm()
	sGate.arm()
	switch fault {
	case faultMissing:
		if err := badL.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	case faultCorrupt:
		corruptOnDisk(t, badL, id, -1)
	case faultError:
		badF.Set(stores.OpGet, stores.Rule{})
	case faultSlow:
		badF.Set(stores.OpGet, stores.Rule{Delay: time.Minute})
	}
	r.m.ResetStats()

	start := time.Now()
	got, err := r.m.Get(t.Context(), id)
	elapsed := time.Since(start)

	// The one case where the good tier simply wins the race.
	goodWins := fastest && fault == faultSlow
	wantData := fallback || goodWins
	if goodWins {
		// It answered without waiting for the hanging primary.
		if elapsed > 5*time.Second {
			t.Errorf("fastest read took %s with a hanging primary", elapsed)
		}
		// The loser is cancelled, and a cancelled read is not an error.
		// Wait until it has returned before looking at its counters.
		pGate.waitExited(t)
		waitFor(t, 5*time.Second, "the cancelled read to be accounted", func() bool {
			return statNum(t, r.m, "tiers.primary.latency_ms.read_p50") > 0
		})
	}
	if fastest && fault != faultSlow && !fallback {
		sGate.waitExited(t)
		waitFor(t, 5*time.Second, "the cancelled read to be accounted", func() bool {
			return statNum(t, r.m, "tiers.safety.latency_ms.read_p50") > 0
		})
	}

	if wantData {
		if err != nil {
			t.Fatalf("Get = %v, want the data", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d other bytes", len(got))
		}
	} else {
		if err == nil {
			t.Fatal("Get succeeded, want an error")
		}
		if got != nil {
			t.Errorf("Get returned %d bytes with its error", len(got))
		}
		checkReadErr(t, err, fault)
		if fault == faultSlow && elapsed < orderedTimeout {
			t.Errorf("Get failed after %s, before the %s store timeout", elapsed, orderedTimeout)
		}
	}

	usedFallback := fallback && !goodWins
	healed := usedFallback
	want := map[string]float64{
		"chunk_reads.ok":     b2f(wantData),
		"chunk_reads.errors": b2f(!wantData),
		"chunk_reads.bytes":  b2f(wantData) * float64(len(data)),
		"fallbacks":          b2f(usedFallback),
		"self_heals":         b2f(healed),
		"self_heal_errors":   0,
		// The good tier answered only when it was asked and not cancelled.
		"tiers." + good + ".reads.ok":          b2f(wantData),
		"tiers." + good + ".reads.errors":      0,
		"tiers." + good + ".stores.0.reads.ok": b2f(wantData),
		"tiers." + bad + ".reads.ok":           0,
		// A self-heal is a write into the tier that failed.
		"tiers." + bad + ".writes.ok": b2f(healed),
	}
	switch fault {
	case faultMissing:
		want["tiers."+bad+".reads.errors"] = 1
		want["tiers."+bad+".reads.not_found"] = 1
		want["tiers."+bad+".stores.0.reads.not_found"] = 1
	case faultCorrupt:
		// At tier level a read no member served is an error; the store
		// itself answered, with bad data: a checksum error, not an error.
		want["tiers."+bad+".reads.errors"] = 1
		want["tiers."+bad+".stores.0.reads.errors"] = 0
		want["tiers."+bad+".reads.checksum_errors"] = 1
		want["tiers."+bad+".stores.0.reads.checksum_errors"] = 1
	case faultError:
		want["tiers."+bad+".reads.errors"] = 1
		want["tiers."+bad+".reads.not_found"] = 0
		want["tiers."+bad+".stores.0.reads.errors"] = 1
		want["tiers."+bad+".stores.0.reads.checksum_errors"] = 0
	case faultSlow:
		if goodWins {
			want["tiers."+bad+".reads.errors"] = 0
			want["tiers."+bad+".stores.0.reads.errors"] = 0
		}
	}
	if fastest && fault != faultSlow && !fallback {
		// The good tier's read lost to the bad answer and was cancelled.
		want["tiers."+good+".reads.errors"] = 0
		want["tiers."+good+".stores.0.reads.errors"] = 0
	}
	wantStats(t, r.m, want)

	// The tier that failed holds the right bytes again after a self-heal,
	// and is left alone otherwise.
	badF.Clear()
	switch {
	case healed:
		if !holds(t, badF, id, data) {
			t.Errorf("the %s tier was not healed", bad)
		}
		if fault == faultCorrupt && !bytes.Equal(onDisk(t, badL, id), data) {
			t.Errorf("the corrupt file on disk still holds bad bytes after the self-heal")
		}
	case fault == faultMissing:
		if has(t, badF, id) {
			t.Errorf("the %s tier was written without a self-heal", bad)
		}
	case fault == faultCorrupt:
		if bytes.Equal(onDisk(t, badL, id), data) {
			t.Errorf("the corrupt file was rewritten without a self-heal")
		}
	}
	if healed && !fastest {
		// Healed: the next read is served by the preferred tier.
		r.m.ResetStats()
		if got, err := r.m.Get(t.Context(), id); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after the heal = %d bytes, %v", len(got), err)
		}
		wantStats(t, r.m, map[string]float64{"fallbacks": 0, "tiers." + bad + ".reads.ok": 1, "tiers." + good + ".reads.ok": 0})
	}
}

// gate is a Store wrapper for racing reads: once armed, its first Get
// closes entered on the way in and exited on the way out, and waits for
// wait (if set) before reading.
type gate struct {
	stores.Store
	wait            <-chan struct{}
	entered, exited chan struct{}
	armed           atomic.Bool
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), exited: make(chan struct{})}
}

// arm makes the next Get the one that is gated.
func (g *gate) arm() { g.armed.Store(true) }

func (g *gate) Get(ctx context.Context, id stores.ID) ([]byte, error) {
	if !g.armed.Swap(false) {
		return g.Store.Get(ctx, id)
	}
	close(g.entered)
	defer close(g.exited)
	if g.wait != nil {
		select {
		case <-g.wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.Get(ctx, id)
}

func (g *gate) waitExited(t *testing.T) {
	t.Helper()
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the losing read never returned")
	}
}

// checkReadErr checks that err says what went wrong with the one copy read.
func checkReadErr(t *testing.T, err error, fault readFault) {
	t.Helper()
	is := func(target error) bool { return errors.Is(err, target) }
	switch fault {
	case faultMissing:
		if !is(stores.ErrNotFound) {
			t.Errorf("Get = %v, want ErrNotFound", err)
		}
	case faultCorrupt:
		if !is(stores.ErrCorrupt) || is(stores.ErrNotFound) {
			t.Errorf("Get = %v, want ErrCorrupt and not ErrNotFound", err)
		}
	case faultError:
		if !is(stores.ErrInjected) || is(stores.ErrNotFound) || is(stores.ErrCorrupt) {
			t.Errorf("Get = %v, want the store's error, neither ErrNotFound nor ErrCorrupt", err)
		}
	case faultSlow:
		if !is(context.DeadlineExceeded) || is(stores.ErrNotFound) {
			t.Errorf("Get = %v, want DeadlineExceeded", err)
		}
	}
}

// TestReadNoGoodCopy checks the error of a read that no tier can serve:
// ErrNotFound only when no tier has the chunk, ErrCorrupt when a bad copy
// existed, and no self-heal from nothing.
func TestReadNoGoodCopy(t *testing.T) {
	type side string
	const (
		absent  side = "absent"
		corrupt side = "corrupt"
		failing side = "failing"
	)
	tests := []struct {
		p, s         side
		wantNotFound bool
		wantCorrupt  bool
	}{
		{absent, absent, true, false},
		{corrupt, absent, false, true},
		{absent, corrupt, false, true},
		{corrupt, corrupt, false, true},
		{absent, failing, false, false},
		{failing, absent, false, false},
		{corrupt, failing, false, true},
		{failing, failing, false, false},
	}
	for _, pref := range []dual.Preference{dual.PreferPrimary, dual.PreferSafety, dual.PreferFastest} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/primary_%s/safety_%s", pref, tt.p, tt.s), func(t *testing.T) {
				t.Parallel()
				r := newRig(t, rigConfig{local: true, opts: func(o *dual.Options) { o.ReadPreference = pref }})
				data, id := chunk(11, 4000)
				r.put(t, data)
				apply := func(sd side, f *stores.Fault, l *local.Local) {
					switch sd {
					case absent:
						if err := l.Delete(t.Context(), id); err != nil {
							t.Fatal(err)
						}
					case corrupt:
						corruptOnDisk(t, l, id, -1)
					case failing:
						f.Set(stores.OpGet, stores.Rule{})
					}
				}
				apply(tt.p, r.p, r.pLocal)
				apply(tt.s, r.s, r.sLocal)
				r.m.ResetStats()
				got, err := r.m.Get(t.Context(), id)
				if err == nil || got != nil {
					t.Fatalf("Get = %d bytes, %v; want an error", len(got), err)
				}
				if errors.Is(err, stores.ErrNotFound) != tt.wantNotFound {
					t.Errorf("Get = %v: wraps ErrNotFound %v, want %v", err, !tt.wantNotFound, tt.wantNotFound)
				}
				if errors.Is(err, stores.ErrCorrupt) != tt.wantCorrupt {
					t.Errorf("Get = %v: wraps ErrCorrupt %v, want %v", err, !tt.wantCorrupt, tt.wantCorrupt)
				}
				// Ordered reads count the attempt on the other tier as a
				// fallback; fastest asked both at once and counts a
				// fallback only when the second answer served the read.
				wantStats(t, r.m, map[string]float64{
					"chunk_reads.ok": 0, "chunk_reads.errors": 1, "self_heals": 0,
					"fallbacks":                           b2f(pref != dual.PreferFastest),
					"tiers.primary.reads.checksum_errors": b2f(tt.p == corrupt),
					"tiers.safety.reads.checksum_errors":  b2f(tt.s == corrupt),
					"tiers.primary.writes.ok":             0, // no self-heal write
					"tiers.safety.writes.ok":              0,
				})
				// Nothing was "healed" from bad data.
				if tt.p == corrupt && bytes.Equal(onDisk(t, r.pLocal, id), data) {
					t.Error("the corrupt primary copy was rewritten")
				}
				if tt.s == absent && has(t, r.s, id) {
					t.Error("an absent safety copy was written")
				}
			})
		}
	}
}

func TestReadSelfHealOff(t *testing.T) {
	r := newRig(t, rigConfig{local: true, opts: func(o *dual.Options) { o.SelfHeal = false }})
	data, id := chunk(12, 2000)
	r.put(t, data)
	corruptOnDisk(t, r.pLocal, id, -1)
	got, err := r.m.Get(t.Context(), id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	wantStats(t, r.m, map[string]float64{"fallbacks": 1, "self_heals": 0, "tiers.primary.reads.checksum_errors": 1})
	if bytes.Equal(onDisk(t, r.pLocal, id), data) {
		t.Error("the corrupt copy was rewritten with self-heal off")
	}
}

func TestReadSelfHealFails(t *testing.T) {
	r := newRig(t, rigConfig{})
	data, id := chunk(13, 2000)
	r.put(t, data)
	if err := r.p.Inner().Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	r.p.Set(stores.OpPut, stores.Rule{})
	got, err := r.m.Get(t.Context(), id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v; a failed self-heal must not fail the read", len(got), err)
	}
	wantStats(t, r.m, map[string]float64{
		"fallbacks": 1, "self_heals": 0, "self_heal_errors": 1, "chunk_reads.ok": 1,
		"tiers.primary.writes.errors": 1,
	})
}

// With write_to_both off the safety tier is filled by migrate, not by reads.
func TestReadNoSafetyHealWhenPrimaryOnly(t *testing.T) {
	r := newRig(t, rigConfig{noPending: true, opts: func(o *dual.Options) {
		o.WriteToBoth = false
		o.ReadPreference = dual.PreferSafety
	}})
	data, id := chunk(14, 2000)
	r.put(t, data)
	got, err := r.m.Get(t.Context(), id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	if has(t, r.s, id) {
		t.Error("a read wrote the safety tier with write_to_both off")
	}
	wantStats(t, r.m, map[string]float64{"fallbacks": 1, "self_heals": 0, "tiers.safety.reads.not_found": 1})
}

func TestSetReadPreference(t *testing.T) {
	r := newRig(t, rigConfig{})
	data, id := chunk(15, 1000)
	r.put(t, data)
	read := func() {
		t.Helper()
		got, err := r.m.Get(t.Context(), id)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get = %d bytes, %v", len(got), err)
		}
	}
	if r.m.ReadPreference() != dual.PreferPrimary || flatStats(t, r.m)["read_preference"] != "primary" {
		t.Fatal("the initial preference is not primary")
	}
	read()
	wantStats(t, r.m, map[string]float64{"tiers.primary.reads.ok": 1, "tiers.safety.reads.ok": 0})

	r.m.SetReadPreference(dual.PreferSafety)
	if r.m.ReadPreference() != dual.PreferSafety || r.m.Options().ReadPreference != dual.PreferSafety {
		t.Fatal("SetReadPreference(safety) did not take")
	}
	if p := flatStats(t, r.m)["read_preference"]; p != "safety" {
		t.Errorf("stats read_preference = %v, want safety", p)
	}
	read()
	wantStats(t, r.m, map[string]float64{"tiers.primary.reads.ok": 1, "tiers.safety.reads.ok": 1})

	// fastest asks both: with a hanging safety store the primary answers.
	r.m.SetReadPreference(dual.PreferFastest)
	r.s.Set(stores.OpGet, stores.Rule{Delay: time.Minute})
	read()
	r.s.Clear()
	if p := flatStats(t, r.m)["read_preference"]; p != "fastest" {
		t.Errorf("stats read_preference = %v, want fastest", p)
	}
	wantStats(t, r.m, map[string]float64{"tiers.primary.reads.ok": 2, "fallbacks": 0})

	r.m.SetReadPreference(dual.PreferPrimary)
	read()
	wantStats(t, r.m, map[string]float64{"tiers.primary.reads.ok": 3, "tiers.safety.reads.ok": 1, "chunk_reads.ok": 4})

	// Switching while reads are in flight is safe (run with -race).
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if g == 0 {
					r.m.SetReadPreference(dual.Preference(i % 3))
					continue
				}
				got, err := r.m.Get(context.Background(), id)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("concurrent Get = %d bytes, %v", len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantStats(t, r.m, map[string]float64{"chunk_reads.ok": 4 + 3*20, "chunk_reads.errors": 0})
}

func TestStat(t *testing.T) {
	r := newRig(t, rigConfig{})
	data, id := chunk(16, 1234)
	r.put(t, data)
	if n, err := r.m.Stat(t.Context(), id); err != nil || n != 1234 {
		t.Fatalf("Stat = %d, %v", n, err)
	}
	// Falls back like Get.
	if err := r.p.Inner().Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if n, err := r.m.Stat(t.Context(), id); err != nil || n != 1234 {
		t.Fatalf("Stat with the primary copy missing = %d, %v", n, err)
	}
	r.m.SetReadPreference(dual.PreferSafety)
	if n, err := r.m.Stat(t.Context(), id); err != nil || n != 1234 {
		t.Fatalf("Stat preferring safety = %d, %v", n, err)
	}
	if err := r.s.Inner().Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Stat(t.Context(), id); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Stat of a chunk no tier has = %v, want ErrNotFound", err)
	}
	r.put(t, data)
	r.s.Set(stores.OpStat, stores.Rule{})
	if err := r.p.Inner().Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Stat(t.Context(), id); err == nil || errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Stat with one tier missing and one failing = %v, want an error that is not ErrNotFound", err)
	}
}

func TestStatNoFallback(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.FallbackEnabled = false }})
	data, id := chunk(17, 100)
	r.put(t, data)
	if err := r.p.Inner().Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Stat(t.Context(), id); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Stat = %v, want the primary's ErrNotFound", err)
	}
}

func TestDeleteAndSync(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	data, id := chunk(18, 100)
	r.put(t, data)
	if err := r.m.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := r.m.Delete(t.Context(), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if has(t, r.p, id) || has(t, r.s, id) {
		t.Fatal("Delete left a copy")
	}
	if _, err := r.m.Get(t.Context(), id); !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	r.s.Set(stores.OpDelete, stores.Rule{})
	r.s.Set(stores.OpSync, stores.Rule{})
	if err := r.m.Delete(t.Context(), id); !errors.Is(err, stores.ErrInjected) {
		t.Errorf("Delete with a failing safety store = %v", err)
	}
	if err := r.m.Sync(t.Context()); !errors.Is(err, stores.ErrInjected) {
		t.Errorf("Sync with a failing safety store = %v", err)
	}
}
