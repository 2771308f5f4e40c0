package stores_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

func TestTierConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		tier := stores.NewTier("primary",
			[]stores.Store{stores.NewMem("primary-0"), stores.NewMem("primary-1")},
			storetest.Verify)
		t.Cleanup(func() { tier.Close() })
		return tier
	})
}

// TestTierConformanceFailover runs the suite with the first member refusing
// writes, so every chunk and meta object lands in the second and every read
// fails over. (A member failing reads too would rightly turn "not found"
// into an error: the tier cannot tell that the chunk is missing.)
func TestTierConformanceFailover(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		down := stores.NewFault(stores.NewMem("primary-0"))
		down.Set(stores.OpPut, stores.Rule{})
		down.Set(stores.OpPutMeta, stores.Rule{})
		tier := stores.NewTier("primary", []stores.Store{down, stores.NewMem("primary-1")}, storetest.Verify)
		t.Cleanup(func() { tier.Close() })
		return tier
	})
}

// noMetaStore hides Mem's meta calls but not its List.
type noMetaStore struct {
	stores.Store
	stores.Lister
}

func newNoMeta(name string) stores.Store {
	m := stores.NewMem(name)
	return noMetaStore{m, m}
}

// TestTierConformancePartlyMeta runs the suite on a tier whose first
// member keeps no meta objects (a Fault over such a store says so with
// ErrNoMeta): chunks go to the first member, meta calls to the second.
func TestTierConformancePartlyMeta(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		tier := stores.NewTier("safety", []stores.Store{
			stores.NewFault(newNoMeta("safety-0")), stores.NewMem("safety-1"),
		}, storetest.Verify)
		t.Cleanup(func() { tier.Close() })
		return tier
	})
}

// newTier returns a tier of two Faults over Mems, checked with storetest's
// ids.
func newTier(t *testing.T) (*stores.Tier, [2]*stores.Fault, [2]*stores.Mem) {
	t.Helper()
	ms := [2]*stores.Mem{stores.NewMem("s0"), stores.NewMem("s1")}
	fs := [2]*stores.Fault{stores.NewFault(ms[0]), stores.NewFault(ms[1])}
	tier := stores.NewTier("safety", []stores.Store{fs[0], fs[1]}, storetest.Verify)
	t.Cleanup(func() { tier.Close() })
	return tier, fs, ms
}

func TestTierPutFailover(t *testing.T) {
	ctx := t.Context()
	tier, fs, ms := newTier(t)
	data := []byte("hello")
	a := id("hello")

	fs[0].Set(stores.OpPut, stores.Rule{})
	if err := tier.Put(ctx, a, data); err != nil {
		t.Fatalf("Put with the first member down: %v", err)
	}
	if ms[0].Len() != 0 || ms[1].Len() != 1 {
		t.Fatalf("chunks per member = %d, %d; want 0, 1", ms[0].Len(), ms[1].Len())
	}
	if got, err := tier.Get(ctx, a); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after failover Put = %q, %v", got, err)
	}

	s := tier.Stats()
	if s.Writes != (stores.OpStats{OK: 1, Bytes: 5}) {
		t.Errorf("tier writes = %+v", s.Writes)
	}
	if s.Stores[0].Writes != (stores.OpStats{Errors: 1}) {
		t.Errorf("member 0 writes = %+v", s.Stores[0].Writes)
	}
	if s.Stores[1].Writes != (stores.OpStats{OK: 1, Bytes: 5}) {
		t.Errorf("member 1 writes = %+v", s.Stores[1].Writes)
	}
	if s.Stores[0].Name != "s0" || s.Stores[0].Type != "mem" {
		t.Errorf("member 0 is %q of type %q", s.Stores[0].Name, s.Stores[0].Type)
	}

	// Both down: the error names both members and the tier counts it.
	custom := errors.New("bucket gone")
	fs[1].Set(stores.OpPut, stores.Rule{Fail: custom})
	b := id("b")
	err := tier.Put(ctx, b, []byte("b"))
	if !errors.Is(err, stores.ErrInjected) || !errors.Is(err, custom) {
		t.Fatalf("Put with both members down = %v, want both members' errors", err)
	}
	if s := tier.Stats(); s.Writes.Errors != 1 || s.Writes.OK != 1 {
		t.Errorf("tier writes = %+v, want 1 ok and 1 error", s.Writes)
	}
}

func TestTierGetFailover(t *testing.T) {
	ctx := t.Context()
	data := []byte("chunk")
	a := id("chunk")
	tests := []struct {
		name   string
		rule   stores.Rule
		member stores.ReadStats // member 0's reads after one Get
		tier   stores.ReadStats
	}{
		{"missing", stores.Rule{Drop: true},
			stores.ReadStats{Errors: 1, NotFound: 1},
			stores.ReadStats{OK: 1, Bytes: 5}},
		{"corrupt data", stores.Rule{Corrupt: true},
			stores.ReadStats{ChecksumErrors: 1},
			stores.ReadStats{OK: 1, Bytes: 5, ChecksumErrors: 1}},
		{"store reports corrupt", stores.Rule{Fail: stores.ErrCorrupt},
			stores.ReadStats{ChecksumErrors: 1},
			stores.ReadStats{OK: 1, Bytes: 5, ChecksumErrors: 1}},
		{"error", stores.Rule{},
			stores.ReadStats{Errors: 1},
			stores.ReadStats{OK: 1, Bytes: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tier, fs, ms := newTier(t)
			for _, m := range ms {
				if err := m.Put(ctx, a, data); err != nil {
					t.Fatal(err)
				}
			}
			fs[0].Set(stores.OpGet, tt.rule)
			got, err := tier.Get(ctx, a)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Get = %q, %v; want the second member's copy", got, err)
			}
			s := tier.Stats()
			if s.Stores[0].Reads != tt.member {
				t.Errorf("member 0 reads = %+v, want %+v", s.Stores[0].Reads, tt.member)
			}
			if want := (stores.ReadStats{OK: 1, Bytes: 5}); s.Stores[1].Reads != want {
				t.Errorf("member 1 reads = %+v, want %+v", s.Stores[1].Reads, want)
			}
			if s.Reads != tt.tier {
				t.Errorf("tier reads = %+v, want %+v", s.Reads, tt.tier)
			}
			if s.ReadP50 <= 0 || s.Stores[0].ReadP50 <= 0 {
				t.Errorf("read latency not recorded: tier p50 %v, member p50 %v", s.ReadP50, s.Stores[0].ReadP50)
			}
			tier.ResetStats()
			if s := tier.Stats(); s.Reads != (stores.ReadStats{}) || s.Stores[0].Reads != (stores.ReadStats{}) || s.ReadP99 != 0 {
				t.Errorf("after ResetStats: %+v", s)
			}
		})
	}
}

// TestTierGetErrors checks which sentinel a read no member can serve wraps:
// ErrNotFound only when the chunk is missing everywhere, since a caller
// takes it for "gone".
func TestTierGetErrors(t *testing.T) {
	ctx := t.Context()
	a := id("chunk")
	tests := []struct {
		name         string
		r0, r1       stores.Rule
		notFound     bool
		corrupt      bool
		tierNotFound int64
	}{
		{"all missing", stores.Rule{Drop: true}, stores.Rule{Drop: true}, true, false, 1},
		{"missing and down", stores.Rule{Drop: true}, stores.Rule{}, false, false, 0},
		{"missing and corrupt", stores.Rule{Drop: true}, stores.Rule{Corrupt: true}, false, true, 0},
		{"down and corrupt", stores.Rule{}, stores.Rule{Corrupt: true}, false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tier, fs, ms := newTier(t)
			for _, m := range ms {
				if err := m.Put(ctx, a, []byte("chunk")); err != nil {
					t.Fatal(err)
				}
			}
			fs[0].Set(stores.OpGet, tt.r0)
			fs[1].Set(stores.OpGet, tt.r1)
			_, err := tier.Get(ctx, a)
			if err == nil {
				t.Fatal("Get succeeded")
			}
			if got := errors.Is(err, stores.ErrNotFound); got != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v", err, got)
			}
			if got := errors.Is(err, stores.ErrCorrupt); got != tt.corrupt {
				t.Errorf("errors.Is(%v, ErrCorrupt) = %v", err, got)
			}
			s := tier.Stats()
			if s.Reads.Errors != 1 || s.Reads.OK != 0 || s.Reads.NotFound != tt.tierNotFound {
				t.Errorf("tier reads = %+v", s.Reads)
			}
		})
	}
}

func TestTierStatDeleteList(t *testing.T) {
	ctx := t.Context()
	tier, fs, ms := newTier(t)
	a, b := id("a"), id("bb")
	if err := ms[0].Put(ctx, a, []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := m.Put(ctx, b, []byte("bb")); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms[1].Put(ctx, id("c"), []byte("c")); err != nil {
		t.Fatal(err)
	}

	// Stat finds a chunk in the second member, and does not count misses.
	fs[0].Set(stores.OpStat, stores.Rule{Drop: true})
	if size, err := tier.Stat(ctx, b); err != nil || size != 2 {
		t.Fatalf("Stat = %d, %v", size, err)
	}
	fs[0].Clear()
	if s := tier.Stats(); s.Reads != (stores.ReadStats{}) || s.Stores[0].Reads != (stores.ReadStats{}) {
		t.Errorf("Stat changed read counters: %+v", s)
	}
	if ok, err := stores.Has(ctx, tier, id("nope")); ok || err != nil {
		t.Errorf("Has of a missing chunk = %v, %v", ok, err)
	}
	if ok, err := stores.Has(ctx, tier, a); !ok || err != nil {
		t.Errorf("Has of a chunk = %v, %v", ok, err)
	}

	// List reports each id once.
	seen := map[stores.ID]int{}
	if err := tier.List(ctx, func(id stores.ID) error { seen[id]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[a] != 1 || seen[b] != 1 || seen[id("c")] != 1 {
		t.Errorf("List saw %v", seen)
	}

	// Delete removes the chunk from every member.
	if err := tier.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if ms[0].Len() != 1 || ms[1].Len() != 1 {
		t.Errorf("after Delete members hold %d, %d chunks; want 1, 1", ms[0].Len(), ms[1].Len())
	}
	fs[1].Set(stores.OpDelete, stores.Rule{})
	if err := tier.Delete(ctx, a); !errors.Is(err, stores.ErrInjected) {
		t.Errorf("Delete with a member failing = %v", err)
	}
	if ms[0].Len() != 0 {
		t.Error("a failing member stopped Delete from reaching the others")
	}
}

func TestTierListUnsupported(t *testing.T) {
	tier := stores.NewTier("t", []stores.Store{notLister{stores.NewMem("a")}}, nil)
	err := tier.List(t.Context(), func(stores.ID) error { return nil })
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("List of a tier with no lister = %v, want ErrUnsupported", err)
	}
}

func TestTierNoMembers(t *testing.T) {
	tier := stores.NewTier("empty", nil, nil)
	ctx := t.Context()
	if err := tier.Put(ctx, id("a"), []byte("a")); err == nil {
		t.Error("Put to a tier with no stores succeeded")
	}
	if _, err := tier.Get(ctx, id("a")); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get from a tier with no stores = %v", err)
	}
}

// TestTierCancelledNotCounted checks that a read the caller abandons (a lost
// `fastest` race) is not charged to the store.
func TestTierCancelledNotCounted(t *testing.T) {
	tier, fs, ms := newTier(t)
	a := id("chunk")
	if err := ms[0].Put(t.Context(), a, []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	fs[0].Set(stores.OpGet, stores.Rule{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := tier.Get(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want DeadlineExceeded", err)
	}
	if s := tier.Stats(); s.Reads.Errors != 0 || s.Stores[0].Reads.Errors != 0 {
		t.Errorf("abandoned read counted as an error: %+v", s)
	}
}

// TestTierMeta: meta puts go to the first member that takes them and gets
// fail over; a failing meta call counts as a store error, a success or a
// missing object does not count (the stats' writes and reads are chunks);
// listings merge; deletes reach every member.
func TestTierMeta(t *testing.T) {
	ctx := t.Context()
	tier, fs, ms := newTier(t)
	data := []byte("backup")

	fs[0].Set(stores.OpPutMeta, stores.Rule{})
	if err := tier.PutMeta(ctx, "b/1", data); err != nil {
		t.Fatalf("PutMeta with the first member down: %v", err)
	}
	if _, err := ms[1].GetMeta(ctx, "b/1", 100); err != nil {
		t.Fatalf("the object is not in the second member: %v", err)
	}
	fs[0].Clear()
	if got, err := tier.GetMeta(ctx, "b/1", 100); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetMeta after a failover PutMeta = %q, %v", got, err)
	}
	s := tier.Stats()
	if s.Writes != (stores.OpStats{}) || s.Stores[0].Writes != (stores.OpStats{Errors: 1}) ||
		s.Stores[1].Writes != (stores.OpStats{}) {
		t.Errorf("writes after a failover PutMeta: tier %+v, members %+v, %+v", s.Writes, s.Stores[0].Writes, s.Stores[1].Writes)
	}
	if s.Reads != (stores.ReadStats{}) || s.Stores[0].Reads != (stores.ReadStats{}) ||
		s.Stores[1].Reads != (stores.ReadStats{}) {
		t.Errorf("reads after a failover GetMeta: tier %+v, members %+v, %+v", s.Reads, s.Stores[0].Reads, s.Stores[1].Reads)
	}

	// Missing everywhere is ErrNotFound; missing in one, failing in the
	// other is not; over max is ErrCorrupt, counted as a checksum error.
	tier.ResetStats()
	if _, err := tier.GetMeta(ctx, "nope", 100); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("GetMeta of a missing object = %v, want ErrNotFound", err)
	}
	fs[1].Set(stores.OpGetMeta, stores.Rule{})
	if _, err := tier.GetMeta(ctx, "nope", 100); errors.Is(err, stores.ErrNotFound) || !errors.Is(err, stores.ErrInjected) {
		t.Errorf("GetMeta with a member failing = %v, want its error and not ErrNotFound", err)
	}
	fs[1].Clear()
	if _, err := tier.GetMeta(ctx, "b/1", 5); !errors.Is(err, stores.ErrCorrupt) {
		t.Errorf("GetMeta over max = %v, want ErrCorrupt", err)
	}
	if s := tier.Stats(); s.Reads.ChecksumErrors != 1 || s.Reads.NotFound != 0 || s.Reads.Errors != 2 {
		t.Errorf("tier reads = %+v, want 1 checksum error and 2 errors (the failing member's and the corrupt read's), none for not found", s.Reads)
	}

	// ListMeta merges, each name once, with the first member's size.
	if err := ms[0].PutMeta(ctx, "b/1", []byte("older")); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].PutMeta(ctx, "a", nil); err != nil {
		t.Fatal(err)
	}
	want := []stores.MetaInfo{{Name: "a", Size: 0}, {Name: "b/1", Size: 5}}
	if got, err := tier.ListMeta(ctx, ""); err != nil || !slices.Equal(got, want) {
		t.Errorf("ListMeta = %v, %v; want %v", got, err, want)
	}
	// The older copy in the first member wins a GetMeta (see PutMeta).
	if got, _ := tier.GetMeta(ctx, "b/1", 100); string(got) != "older" {
		t.Errorf("GetMeta = %q, want the first member's copy", got)
	}
	fs[1].Set(stores.OpListMeta, stores.Rule{})
	if _, err := tier.ListMeta(ctx, ""); !errors.Is(err, stores.ErrInjected) {
		t.Errorf("ListMeta with a member failing = %v, want its error", err)
	}
	fs[1].Clear()

	// DeleteMeta reaches every member, also past one that fails.
	fs[1].Set(stores.OpDeleteMeta, stores.Rule{})
	if err := tier.DeleteMeta(ctx, "b/1"); !errors.Is(err, stores.ErrInjected) {
		t.Errorf("DeleteMeta with a member failing = %v", err)
	}
	if _, err := ms[0].GetMeta(ctx, "b/1", 100); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("a failing member stopped DeleteMeta from reaching the others: %v", err)
	}
	fs[1].Clear()
	if err := tier.DeleteMeta(ctx, "b/1"); err != nil {
		t.Fatal(err)
	}
	if got, err := tier.ListMeta(ctx, ""); err != nil || !slices.Equal(got, want[:1]) {
		t.Errorf("ListMeta after DeleteMeta = %v, %v", got, err)
	}
}

// TestTierNoMeta: a tier none of whose members keeps meta objects says
// so, and counts nothing against its members.
func TestTierNoMeta(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		members []stores.Store
	}{
		{"no members", nil},
		{"not MetaStores", []stores.Store{newNoMeta("a"), notLister{stores.NewMem("b")}}},
		{"Faults over them", []stores.Store{stores.NewFault(newNoMeta("a"))}},
		{"a tier of them", []stores.Store{stores.NewTier("inner", []stores.Store{newNoMeta("a")}, nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier := stores.NewTier("t", tc.members, nil)
			t.Cleanup(func() { tier.Close() })
			if err := tier.PutMeta(ctx, "x", []byte("x")); !errors.Is(err, stores.ErrNoMeta) {
				t.Errorf("PutMeta = %v, want ErrNoMeta", err)
			}
			if _, err := tier.GetMeta(ctx, "x", 10); !errors.Is(err, stores.ErrNoMeta) || errors.Is(err, stores.ErrNotFound) {
				t.Errorf("GetMeta = %v, want ErrNoMeta and not ErrNotFound", err)
			}
			if _, err := tier.ListMeta(ctx, ""); !errors.Is(err, stores.ErrNoMeta) {
				t.Errorf("ListMeta = %v, want ErrNoMeta", err)
			}
			if err := tier.DeleteMeta(ctx, "x"); !errors.Is(err, stores.ErrNoMeta) {
				t.Errorf("DeleteMeta = %v, want ErrNoMeta", err)
			}
			s := tier.Stats()
			if s.Writes != (stores.OpStats{}) || s.Reads != (stores.ReadStats{}) {
				t.Errorf("a tier with no meta store counted %+v, %+v", s.Writes, s.Reads)
			}
			for _, m := range s.Stores {
				if m.Writes != (stores.OpStats{}) || m.Reads != (stores.ReadStats{}) {
					t.Errorf("member %s counted %+v, %+v", m.Name, m.Writes, m.Reads)
				}
			}
		})
	}
}

// sharedMem is a Mem that says other tools share it.
type sharedMem struct{ *stores.Mem }

func (sharedMem) Shared() bool { return true }

// TestTierDeleteOwned: gc's delete leaves shared members alone.
func TestTierDeleteOwned(t *testing.T) {
	ctx := t.Context()
	own, sh := stores.NewMem("own"), sharedMem{stores.NewMem("shared")}
	tier := stores.NewTier("t", []stores.Store{sh, own}, nil)
	a := id("a")
	for _, s := range []stores.Store{own, sh} {
		if err := s.Put(ctx, a, []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	if got := tier.Owned(); len(got) != 1 || got[0].Name() != "own" {
		t.Fatalf("Owned = %v", got)
	}
	if err := tier.DeleteOwned(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Get(ctx, a); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("owned member still holds the chunk: %v", err)
	}
	if _, err := sh.Get(ctx, a); err != nil {
		t.Errorf("shared member lost the chunk: %v", err)
	}
}

// TestTierWritesFailing: a store (and its tier) whose last write failed is
// failing writes, until a write succeeds again; a member the tier fails
// over from is failing while the tier is not.
func TestTierWritesFailing(t *testing.T) {
	ctx := context.Background()
	first := stores.NewFault(stores.NewMem("s-0"))
	tier := stores.NewTier("safety", []stores.Store{first, stores.NewMem("s-1")}, storetest.Verify)
	t.Cleanup(func() { tier.Close() })
	put := func(seed byte) {
		t.Helper()
		data := []byte{seed, 1, 2, 3}
		if err := tier.Put(ctx, id(string(data)), data); err != nil {
			t.Fatal(err)
		}
	}
	if s := tier.Stats(); s.WritesFailing() || !s.LastWriteOK.IsZero() || !s.LastWriteError.IsZero() {
		t.Fatalf("a fresh tier: failing %v, last ok %v, last error %v", s.WritesFailing(), s.LastWriteOK, s.LastWriteError)
	}
	first.Set(stores.OpPut, stores.Rule{})
	put(1)
	s := tier.Stats()
	if s.WritesFailing() || !s.Stores[0].WritesFailing() || s.Stores[1].WritesFailing() {
		t.Errorf("first member refusing writes: tier failing %v, members %v %v; want false, true, false",
			s.WritesFailing(), s.Stores[0].WritesFailing(), s.Stores[1].WritesFailing())
	}
	if s.WriteLatency.Count != 1 || s.Stores[0].WriteLatency.Count != 1 {
		t.Errorf("write latency counts: tier %d, first member %d; want 1, 1", s.WriteLatency.Count, s.Stores[0].WriteLatency.Count)
	}
	first.Clear(stores.OpPut)
	put(2)
	if s := tier.Stats(); s.Stores[0].WritesFailing() || s.Stores[0].LastWriteError.IsZero() {
		t.Errorf("after a good write: first member failing %v, last error %v; want false and kept", s.Stores[0].WritesFailing(), s.Stores[0].LastWriteError)
	}
	tier.ResetStats()
	if s := tier.Stats(); !s.Stores[0].LastWriteError.IsZero() || s.WriteLatency.Count != 0 {
		t.Errorf("after ResetStats: last error %v, latency count %d", s.Stores[0].LastWriteError, s.WriteLatency.Count)
	}
}
