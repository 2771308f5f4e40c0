package dual_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestWriteMatrix drives every row of the write outcome matrix (DESIGN.md
// section 4) for every require policy, with write_to_both on and off.
func TestWriteMatrix(t *testing.T) {
	rows := []struct {
		name         string
		pFail, sFail bool
	}{
		{"both ok", false, false},
		{"primary ok, safety failed", false, true},
		{"primary failed, safety ok", true, false},
		{"both failed", true, true},
	}
	for _, wtb := range []bool{true, false} {
		for _, req := range []dual.Require{dual.RequirePrimary, dual.RequireBoth, dual.RequireAny} {
			name := fmt.Sprintf("write_to_both=%v/require=%s", wtb, req)
			if !wtb && req != dual.RequirePrimary {
				t.Run(name, func(t *testing.T) {
					o := baseOptions()
					o.WriteToBoth, o.Require = false, req
					if err := o.Validate(); err == nil {
						t.Fatal("Validate accepts a require policy that needs the safety tier without writing it")
					}
				})
				continue
			}
			for _, row := range rows {
				t.Run(name+"/"+row.name, func(t *testing.T) {
					t.Parallel()
					testWriteOutcome(t, wtb, req, row.pFail, row.sFail)
				})
			}
		}
	}
}

func testWriteOutcome(t *testing.T, wtb bool, req dual.Require, pFail, sFail bool) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.WriteToBoth, o.Require = wtb, req }})
	if pFail {
		r.p.Set(stores.OpPut, stores.Rule{})
	}
	if sFail {
		r.s.Set(stores.OpPut, stores.Rule{})
	}
	data, id := chunk(1, 3000)
	err := r.m.Put(t.Context(), id, data)

	// What the matrix says.
	var wantOK bool
	var pendingTier string
	switch {
	case !wtb:
		wantOK = !pFail // the safety tier is not written at all
	case !pFail && !sFail:
		wantOK = true
	case !pFail && sFail:
		wantOK = req != dual.RequireBoth
		pendingTier = dual.TierSafety
	case pFail && !sFail:
		wantOK = req == dual.RequireAny
		pendingTier = dual.TierPrimary
	}
	if !wantOK {
		pendingTier = ""
	}
	pWritten := !pFail
	sWritten := wtb && !sFail

	if wantOK && err != nil {
		t.Fatalf("Put = %v, want success", err)
	}
	if !wantOK {
		if !errors.Is(err, dual.ErrWrite) {
			t.Fatalf("Put = %v, want an error wrapping dual.ErrWrite", err)
		}
		if !errors.Is(err, stores.ErrInjected) {
			t.Errorf("Put = %v, want it to wrap the store's error", err)
		}
	}
	if got := holds(t, r.p, id, data); got != pWritten {
		t.Errorf("primary holds the chunk: %v, want %v", got, pWritten)
	}
	if got := holds(t, r.s, id, data); got != sWritten {
		t.Errorf("safety holds the chunk: %v, want %v", got, sWritten)
	}
	if !wtb && r.s.Calls(stores.OpPut) != 0 {
		t.Errorf("write_to_both off: the safety store saw %d puts", r.s.Calls(stores.OpPut))
	}
	for _, tier := range []string{dual.TierPrimary, dual.TierSafety} {
		ids := r.pending.ids(tier)
		if tier == pendingTier {
			if len(ids) != 1 || ids[0] != id {
				t.Errorf("pending %s = %v, want [%s]", tier, ids, id)
			}
		} else if len(ids) != 0 {
			t.Errorf("pending %s = %v, want none", tier, ids)
		}
	}
	n := float64(len(data))
	sCalled := wtb
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok":                      b2f(wantOK),
		"chunk_writes.errors":                  b2f(!wantOK),
		"chunk_writes.bytes":                   b2f(wantOK) * n,
		"one_sided_writes":                     b2f(pendingTier != ""),
		"pending_backfill":                     b2f(pendingTier != ""),
		"success_rate":                         b2f(wantOK),
		"error_rate":                           b2f(!wantOK),
		"tiers.primary.writes.ok":              b2f(pWritten),
		"tiers.primary.writes.errors":          b2f(pFail),
		"tiers.primary.writes.bytes":           b2f(pWritten) * n,
		"tiers.primary.stores.0.writes.ok":     b2f(pWritten),
		"tiers.primary.stores.0.writes.errors": b2f(pFail),
		"tiers.primary.stores.0.writes.bytes":  b2f(pWritten) * n,
		"tiers.safety.writes.ok":               b2f(sWritten),
		"tiers.safety.writes.errors":           b2f(sCalled && sFail),
		"tiers.safety.writes.bytes":            b2f(sWritten) * n,
		"tiers.safety.stores.0.writes.ok":      b2f(sWritten),
		"tiers.safety.stores.0.writes.errors":  b2f(sCalled && sFail),
		"verify_failures":                      0,
		"chunk_reads.ok":                       0,
	})
}

// A one-sided write is only acceptable once its pending record is durable:
// when recording it fails, so does the write.
func TestWritePendingRecordFails(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.s.Set(stores.OpPut, stores.Rule{})
	indexDown := errors.New("index down")
	r.pending.setFailAdd(indexDown)
	data, id := chunk(2, 1000)
	err := r.m.Put(t.Context(), id, data)
	if !errors.Is(err, dual.ErrWrite) || !errors.Is(err, indexDown) || !errors.Is(err, stores.ErrInjected) {
		t.Fatalf("Put = %v, want ErrWrite wrapping the pending failure and the store failure", err)
	}
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok": 0, "chunk_writes.errors": 1, "one_sided_writes": 1, "pending_backfill": 0,
		"tiers.primary.writes.ok": 1, "tiers.safety.writes.errors": 1,
	})
	// The index is back: the same write goes through and is recorded.
	r.pending.setFailAdd(nil)
	if err := r.m.Put(t.Context(), id, data); err != nil {
		t.Fatalf("Put after the index recovered: %v", err)
	}
	if ids := r.pending.ids(dual.TierSafety); len(ids) != 1 || ids[0] != id {
		t.Fatalf("pending safety = %v, want [%s]", ids, id)
	}
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok": 1, "chunk_writes.errors": 1, "one_sided_writes": 2, "pending_backfill": 1,
		"success_rate": 0.5, "error_rate": 0.5,
	})
}

// Without a pending list only policies that never accept a one-sided write
// can run, and they never need it.
func TestWriteNoPendingList(t *testing.T) {
	r := newRig(t, rigConfig{noPending: true, opts: func(o *dual.Options) { o.Require = dual.RequireBoth }})
	r.s.Set(stores.OpPut, stores.Rule{})
	data, id := chunk(3, 100)
	if err := r.m.Put(t.Context(), id, data); !errors.Is(err, dual.ErrWrite) {
		t.Fatalf("Put = %v, want ErrWrite", err)
	}
	r.s.Clear()
	if err := r.m.Put(t.Context(), id, data); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if n, err := r.m.BackfillOnce(t.Context()); n != 0 || err != nil {
		t.Errorf("BackfillOnce without a pending list = %d, %v", n, err)
	}
	wantStats(t, r.m, map[string]float64{"chunk_writes.ok": 1, "chunk_writes.errors": 1, "one_sided_writes": 0})
}

func TestVerifyBoth(t *testing.T) {
	tests := []struct {
		name        string
		req         dual.Require
		corruptP    bool
		corruptS    bool
		wantOK      bool
		pendingTier string
	}{
		{"both verify", dual.RequirePrimary, false, false, true, ""},
		{"safety corrupts, require primary", dual.RequirePrimary, false, true, true, dual.TierSafety},
		{"safety corrupts, require any", dual.RequireAny, false, true, true, dual.TierSafety},
		{"safety corrupts, require both", dual.RequireBoth, false, true, false, ""},
		{"primary corrupts, require primary", dual.RequirePrimary, true, false, false, ""},
		{"primary corrupts, require any", dual.RequireAny, true, false, true, dual.TierPrimary},
		{"both corrupt, require any", dual.RequireAny, true, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.VerifyBoth, o.Require = true, tt.req }})
			if tt.corruptP {
				r.p.Set(stores.OpPut, stores.Rule{Corrupt: true})
			}
			if tt.corruptS {
				r.s.Set(stores.OpPut, stores.Rule{Corrupt: true})
			}
			data, id := chunk(4, 5000)
			err := r.m.Put(t.Context(), id, data)
			if tt.wantOK && err != nil {
				t.Fatalf("Put = %v, want success", err)
			}
			if !tt.wantOK && (!errors.Is(err, dual.ErrWrite) || !errors.Is(err, stores.ErrCorrupt)) {
				t.Fatalf("Put = %v, want ErrWrite wrapping ErrCorrupt", err)
			}
			// The bad copy is gone, so a retry or backfill rewrites it.
			if tt.corruptP && has(t, r.p, id) {
				t.Error("the primary kept its bad copy")
			}
			if tt.corruptS && has(t, r.s, id) {
				t.Error("the safety tier kept its bad copy")
			}
			if !tt.corruptP && !holds(t, r.p, id, data) {
				t.Error("the primary lost its good copy")
			}
			if !tt.corruptS && !holds(t, r.s, id, data) {
				t.Error("the safety tier lost its good copy")
			}
			for _, tier := range []string{dual.TierPrimary, dual.TierSafety} {
				ids := r.pending.ids(tier)
				if want := tier == tt.pendingTier; want != (len(ids) == 1) || len(ids) > 1 {
					t.Errorf("pending %s = %v, want pending: %v", tier, ids, want)
				}
			}
			wantStats(t, r.m, map[string]float64{
				"verify_failures":                              b2f(tt.corruptP) + b2f(tt.corruptS),
				"chunk_writes.ok":                              b2f(tt.wantOK),
				"chunk_writes.errors":                          b2f(!tt.wantOK),
				"one_sided_writes":                             b2f(tt.pendingTier != ""),
				"tiers.primary.writes.ok":                      1, // the store took it; the check after failed
				"tiers.primary.reads.ok":                       b2f(!tt.corruptP),
				"tiers.primary.reads.checksum_errors":          b2f(tt.corruptP),
				"tiers.primary.stores.0.reads.checksum_errors": b2f(tt.corruptP),
				"tiers.safety.writes.ok":                       1,
				"tiers.safety.reads.ok":                        b2f(!tt.corruptS),
				"tiers.safety.reads.checksum_errors":           b2f(tt.corruptS),
				"tiers.safety.stores.0.reads.checksum_errors":  b2f(tt.corruptS),
			})
			if tt.pendingTier == "" {
				return
			}
			// The store is healthy again: the backfill writes a good copy.
			r.p.Clear()
			r.s.Clear()
			if n, err := r.m.BackfillOnce(t.Context()); n != 1 || err != nil {
				t.Fatalf("BackfillOnce = %d, %v; want 1, nil", n, err)
			}
			if !holds(t, r.p, id, data) || !holds(t, r.s, id, data) {
				t.Error("after backfill a tier still lacks the good copy")
			}
			wantStats(t, r.m, map[string]float64{"backfilled": 1, "pending_backfill": 0})
		})
	}
}

func TestClosedManager(t *testing.T) {
	r := newRig(t, rigConfig{})
	data, id := chunk(5, 100)
	r.put(t, data)
	if err := r.m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.m.Put(t.Context(), id, data); !errors.Is(err, stores.ErrClosed) || errors.Is(err, dual.ErrWrite) {
		t.Errorf("Put after Close = %v, want ErrClosed (not a write failure)", err)
	}
	if _, err := r.m.Get(t.Context(), id); !errors.Is(err, stores.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	wantStats(t, r.m, map[string]float64{"chunk_writes.ok": 1, "chunk_writes.errors": 0, "chunk_reads.errors": 0})
}

// A copy that cannot be read back at all counts as a failed verify too.
func TestVerifyReadBackFails(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.VerifyBoth = true }})
	r.s.Set(stores.OpGet, stores.Rule{})
	data, id := chunk(6, 700)
	if err := r.m.Put(t.Context(), id, data); err != nil {
		t.Fatalf("Put = %v, want success with safety pending", err)
	}
	if has(t, r.s, id) {
		t.Error("the unverifiable copy was kept")
	}
	if ids := r.pending.ids(dual.TierSafety); len(ids) != 1 {
		t.Errorf("pending safety = %v", ids)
	}
	wantStats(t, r.m, map[string]float64{"verify_failures": 1, "one_sided_writes": 1, "tiers.safety.reads.errors": 1})
}
