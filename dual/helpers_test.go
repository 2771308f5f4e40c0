package dual_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
)

// hashID is the filesystem's chunk id hash in these tests: BLAKE3-256.
func hashID(data []byte) stores.ID { return stores.ID(blake3.Sum256(data)) }

// chunk returns n pseudo-random bytes derived from seed, and their id.
func chunk(seed uint64, n int) ([]byte, stores.ID) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	key[31] = 0x5a // keep seed 0 away from the all-zero key
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b, hashID(b)
}

// testLog is the logger every test manager gets.
func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t))
}

// memPending is an in-memory dual.Pending: the durable list, minus the
// durability. failAdd, when set, makes AddPending fail (the index is down).
type memPending struct {
	mu      sync.Mutex
	tiers   map[string]map[stores.ID]struct{}
	failAdd error
	// countHook, if set, runs inside CountPending after the count is
	// taken, before it is returned.
	countHook atomic.Pointer[func()]
}

var _ dual.Pending = (*memPending)(nil)

func newMemPending() *memPending {
	return &memPending{tiers: map[string]map[stores.ID]struct{}{}}
}

func (p *memPending) AddPending(ctx context.Context, tier string, ids []stores.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failAdd != nil {
		return fmt.Errorf("mem pending: add %s: %w", tier, p.failAdd)
	}
	set := p.tiers[tier]
	if set == nil {
		set = map[stores.ID]struct{}{}
		p.tiers[tier] = set
	}
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return nil
}

func (p *memPending) RemovePending(ctx context.Context, tier string, id stores.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tiers[tier], id)
	return nil
}

func (p *memPending) ListPending(ctx context.Context, tier string, limit int) ([]stores.ID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := p.ids(tier)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

func (p *memPending) CountPending(ctx context.Context) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	out := map[string]int64{}
	for tier, set := range p.tiers {
		if len(set) > 0 {
			out[tier] = int64(len(set))
		}
	}
	p.mu.Unlock()
	if hook := p.countHook.Load(); hook != nil {
		(*hook)()
	}
	return out, nil
}

// ids returns tier's pending ids in id order, as the index lists them.
func (p *memPending) ids(tier string) []stores.ID {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]stores.ID, 0, len(p.tiers[tier]))
	for id := range p.tiers[tier] {
		out = append(out, id)
	}
	sortIDs(out)
	return out
}

func (p *memPending) setFailAdd(err error) {
	p.mu.Lock()
	p.failAdd = err
	p.mu.Unlock()
}

func sortIDs(ids []stores.ID) {
	slices.SortFunc(ids, func(a, b stores.ID) int { return bytes.Compare(a[:], b[:]) })
}

// rig is a manager over one store per tier, each wrapped in a Fault.
type rig struct {
	m       *dual.Manager
	pending *memPending
	p, s    *stores.Fault
	// pLocal and sLocal are the local stores under the faults, when the
	// rig is built with local stores.
	pLocal, sLocal *local.Local
}

type rigConfig struct {
	local bool                // local stores in t.TempDir() instead of Mem
	opts  func(*dual.Options) // adjusts DefaultOptions
	// noPending builds the manager with a nil Pending.
	noPending bool
	// wrapP and wrapS, if set, wrap each fault before it joins its tier.
	wrapP, wrapS func(stores.Store) stores.Store
}

// baseOptions are DefaultOptions with the test hash and a backfill that
// only runs when a test asks for it.
func baseOptions() dual.Options {
	o := dual.DefaultOptions()
	o.Hash = hashID
	o.BackfillInterval = time.Hour
	o.BackfillMaxBackoff = time.Hour
	o.StoreTimeout = 30 * time.Second
	return o
}

func newRig(t testing.TB, cfg rigConfig) *rig {
	t.Helper()
	r := &rig{}
	var pInner, sInner stores.Store
	if cfg.local {
		r.pLocal = newLocal(t, t.TempDir(), "p0")
		r.sLocal = newLocal(t, t.TempDir(), "s0")
		pInner, sInner = r.pLocal, r.sLocal
	} else {
		pInner, sInner = stores.NewMem("p0"), stores.NewMem("s0")
	}
	r.p, r.s = stores.NewFault(pInner), stores.NewFault(sInner)
	var pm, sm stores.Store = r.p, r.s
	if cfg.wrapP != nil {
		pm = cfg.wrapP(pm)
	}
	if cfg.wrapS != nil {
		sm = cfg.wrapS(sm)
	}
	opts := baseOptions()
	if cfg.opts != nil {
		cfg.opts(&opts)
	}
	var pending dual.Pending
	if !cfg.noPending {
		r.pending = newMemPending()
		pending = r.pending
	}
	m, err := dual.New(dual.NewTier(dual.TierPrimary, []stores.Store{pm}, hashID),
		dual.NewTier(dual.TierSafety, []stores.Store{sm}, hashID), pending, opts, testLog(t))
	if err != nil {
		t.Fatalf("dual.New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	r.m = m
	return r
}

func newLocal(t testing.TB, root, name string) *local.Local {
	t.Helper()
	l, err := local.New(local.Options{Root: root, Name: name})
	if err != nil {
		t.Fatalf("local.New(%s): %v", root, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// localNew opens a local store at root, creating it if needed.
func localNew(root, name string) (*local.Local, error) {
	return local.New(local.Options{Root: root, Name: name, CreateRoot: true})
}

// put writes a chunk through the manager and fails the test on error.
func (r *rig) put(t testing.TB, data []byte) stores.ID {
	t.Helper()
	id := hashID(data)
	if err := r.m.Put(t.Context(), id, data); err != nil {
		t.Fatalf("Put(%s): %v", id, err)
	}
	return id
}

// holds reports whether the store under a fault holds exactly data for id.
func holds(t testing.TB, f *stores.Fault, id stores.ID, data []byte) bool {
	t.Helper()
	got, err := f.Inner().Get(context.Background(), id)
	if errors.Is(err, stores.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("%s: get %s: %v", f.Name(), id, err)
	}
	return bytes.Equal(got, data)
}

// has reports whether the store under a fault holds any copy of id.
func has(t testing.TB, f *stores.Fault, id stores.ID) bool {
	t.Helper()
	ok, err := stores.Has(context.Background(), f.Inner(), id)
	if err != nil {
		t.Fatalf("%s: stat %s: %v", f.Name(), id, err)
	}
	return ok
}

// chunkFile is where a local store keeps id on disk.
func chunkFile(l *local.Local, id stores.ID) string {
	h := id.String()
	return filepath.Join(l.Root(), h[:4], h+".chunk")
}

// corruptOnDisk overwrites id's chunk file with different bytes of the same
// length (a real on-disk fault: bit rot the store cannot see), or with
// n bytes when n >= 0.
func corruptOnDisk(t testing.TB, l *local.Local, id stores.ID, n int) {
	t.Helper()
	p := chunkFile(l, id)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read chunk file: %v", err)
	}
	bad := bytes.Clone(data)
	if n >= 0 {
		bad = make([]byte, n)
		copy(bad, data)
	}
	if len(bad) == 0 {
		bad = []byte{1}
	}
	bad[len(bad)/2] ^= 0x55
	if len(bad) > 1 {
		bad[len(bad)-1] ^= 0xaa
	}
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatalf("corrupt chunk file: %v", err)
	}
}

// onDisk returns the bytes of id's chunk file.
func onDisk(t testing.TB, l *local.Local, id stores.ID) []byte {
	t.Helper()
	data, err := os.ReadFile(chunkFile(l, id))
	if err != nil {
		t.Fatalf("read chunk file: %v", err)
	}
	return data
}

// flatStats marshals m.Stats() and flattens the JSON into dotted paths
// ("tiers.primary.stores.0.writes.ok"), so tests check the JSON contract
// and the values at once.
func flatStats(t testing.TB, m *dual.Manager) map[string]any {
	t.Helper()
	b, err := json.Marshal(m.Stats())
	if err != nil {
		t.Fatalf("marshal stats: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal stats: %v", err)
	}
	out := map[string]any{}
	flatten("", v, out)
	return out
}

func flatten(prefix string, v any, out map[string]any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		if prefix != "" {
			out[prefix] = x
		}
		for k, e := range x {
			flatten(join(k), e, out)
		}
	case []any:
		out[prefix] = x
		for i, e := range x {
			flatten(join(strconv.Itoa(i)), e, out)
		}
	default:
		out[prefix] = x
	}
}

// wantStats checks numeric stats by their JSON path; every key must exist.
func wantStats(t testing.TB, m *dual.Manager, want map[string]float64) {
	t.Helper()
	got := flatStats(t, m)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := got[k]
		if !ok {
			t.Errorf("stats: no key %q", k)
			continue
		}
		f, ok := v.(float64)
		if !ok {
			t.Errorf("stats %s = %v (%T), want a number", k, v, v)
			continue
		}
		if f != want[k] {
			t.Errorf("stats %s = %v, want %v", k, f, want[k])
		}
	}
}

// statNum returns one numeric stat by its JSON path.
func statNum(t testing.TB, m *dual.Manager, path string) float64 {
	t.Helper()
	v, ok := flatStats(t, m)[path]
	if !ok {
		t.Fatalf("stats: no key %q", path)
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("stats %s = %v (%T), want a number", path, v, v)
	}
	return f
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // the poll interval
	}
}

// gauge is a Store wrapper that tracks how many calls of each kind are in
// flight at once, and the most ever seen.
type gauge struct {
	stores.Store
	puts, gets       atomic.Int64
	maxPuts, maxGets atomic.Int64
}

func newGauge(s stores.Store) *gauge { return &gauge{Store: s} }

func raise(max *atomic.Int64, n int64) {
	for {
		m := max.Load()
		if n <= m || max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (g *gauge) Put(ctx context.Context, id stores.ID, data []byte) error {
	raise(&g.maxPuts, g.puts.Add(1))
	defer g.puts.Add(-1)
	return g.Store.Put(ctx, id, data)
}

func (g *gauge) Get(ctx context.Context, id stores.ID) ([]byte, error) {
	raise(&g.maxGets, g.gets.Add(1))
	defer g.gets.Add(-1)
	return g.Store.Get(ctx, id)
}
