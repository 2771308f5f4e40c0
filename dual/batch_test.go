package dual_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// TestBatchConcurrency checks that the manager's write pool bounds the
// chunk writes in flight across all batches.
func TestBatchConcurrency(t *testing.T) {
	const limit = 3
	pg, sg := newGauge(nil), newGauge(nil)
	r := newRig(t, rigConfig{
		opts:  func(o *dual.Options) { o.WriteConcurrency = limit },
		wrapP: func(s stores.Store) stores.Store { pg.Store = s; return pg },
		wrapS: func(s stores.Store) stores.Store { sg.Store = s; return sg },
	})
	r.p.Set(stores.OpPut, stores.Rule{Delay: 10 * time.Millisecond})
	var doneOK atomic.Int64
	var wg sync.WaitGroup
	for bi := range 2 {
		wg.Go(func() {
			b := r.m.NewBatch(t.Context(), func(id stores.ID, err error) {
				if err == nil {
					doneOK.Add(1)
				}
			})
			for i := range 15 {
				data, id := chunk(uint64(800+bi*100+i), 500)
				if err := b.Put(id, data); err != nil {
					t.Errorf("Batch.Put: %v", err)
				}
			}
			if err := b.Wait(); err != nil {
				t.Errorf("Batch.Wait: %v", err)
			}
		})
	}
	wg.Wait()
	if doneOK.Load() != 30 {
		t.Errorf("done called with success %d times, want 30", doneOK.Load())
	}
	// The slow primary store shows the pool filling up; the instant safety
	// store only that it never overflows.
	if got := pg.maxPuts.Load(); got > limit || got < 2 {
		t.Errorf("primary: at most %d puts at once, want 2..%d", got, limit)
	}
	if got := sg.maxPuts.Load(); got > limit {
		t.Errorf("safety: at most %d puts at once, want at most %d", got, limit)
	}
	wantStats(t, r.m, map[string]float64{
		"chunk_writes.ok": 30, "chunk_writes.errors": 0,
		"tiers.primary.writes.ok": 30, "tiers.safety.writes.ok": 30,
	})
}

// TestBatchFirstError checks that Wait returns the first failure and the
// other writes still happen.
func TestBatchFirstError(t *testing.T) {
	// One write at a time, so "first" is queue order.
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.WriteConcurrency = 1 }})
	var ids []stores.ID
	var datas [][]byte
	for i := range 10 {
		data, id := chunk(uint64(900+i), 300)
		ids, datas = append(ids, id), append(datas, data)
	}
	r.p.Set(stores.OpPut, stores.Rule{IDs: []stores.ID{ids[3], ids[7]}})
	var mu sync.Mutex
	failed := map[stores.ID]error{}
	b := r.m.NewBatch(t.Context(), func(id stores.ID, err error) {
		if err != nil {
			mu.Lock()
			failed[id] = err
			mu.Unlock()
		}
	})
	for i := range ids {
		if err := b.Put(ids[i], datas[i]); err != nil {
			t.Fatalf("Batch.Put: %v", err)
		}
	}
	err := b.Wait()
	if !errors.Is(err, dual.ErrWrite) || !strings.Contains(err.Error(), ids[3].String()) || strings.Contains(err.Error(), ids[7].String()) {
		t.Fatalf("Wait = %v, want the first failure (chunk %s)", err, ids[3])
	}
	if b.Err() != err {
		t.Errorf("Err() = %v, want Wait's error", b.Err())
	}
	if len(failed) != 2 || failed[ids[3]] == nil || failed[ids[7]] == nil {
		t.Errorf("done reported failures for %v", failed)
	}
	for i, id := range ids {
		if want := i != 3 && i != 7; holds(t, r.p, id, datas[i]) != want {
			t.Errorf("chunk %d in primary: %v, want %v", i, !want, want)
		}
	}
	wantStats(t, r.m, map[string]float64{"chunk_writes.ok": 8, "chunk_writes.errors": 2, "tiers.primary.writes.errors": 2})
}

// A full pool blocks Batch.Put until a slot frees or the context ends.
func TestBatchCancelledWhileFull(t *testing.T) {
	// The first write holds the only slot until released, whatever its
	// context says, so the second Put can only end by cancellation.
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	defer free()
	held := &heldPuts{release: release, entered: make(chan struct{})}
	r := newRig(t, rigConfig{
		opts:  func(o *dual.Options) { o.WriteConcurrency = 1 },
		wrapP: func(s stores.Store) stores.Store { held.Store = s; return held },
	})
	ctx, cancel := context.WithCancel(t.Context())
	b := r.m.NewBatch(ctx, nil)
	first, firstID := chunk(950, 100)
	if err := b.Put(firstID, first); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	<-held.entered // the slot is taken for good
	blocked := make(chan error, 1)
	go func() {
		second, secondID := chunk(951, 100)
		blocked <- b.Put(secondID, second)
	}()
	cancel()
	select {
	case err := <-blocked:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked Put = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Batch.Put stayed blocked after its context was cancelled")
	}
	free()
	if err := b.Wait(); !errors.Is(err, dual.ErrWrite) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want the cancelled write's error", err)
	}
	wantStats(t, r.m, map[string]float64{"chunk_writes.errors": 1, "chunk_writes.ok": 0})
}

// heldPuts is a Store whose Puts wait until release is closed; entered is
// closed when the first one arrives.
type heldPuts struct {
	stores.Store
	release, entered chan struct{}
	once             sync.Once
}

func (h *heldPuts) Put(ctx context.Context, id stores.ID, data []byte) error {
	h.once.Do(func() { close(h.entered) })
	<-h.release
	return h.Store.Put(ctx, id, data)
}

// TestInlineBatch checks that an inline batch writes each chunk to both
// tiers before Put returns, and reports a failure through Err and Wait
// like a concurrent batch.
func TestInlineBatch(t *testing.T) {
	r := newRig(t, rigConfig{opts: func(o *dual.Options) { o.Require = dual.RequireBoth }})
	b := r.m.NewInlineBatch(t.Context())
	data, id := chunk(1200, 700)
	if err := b.Put(id, data); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !holds(t, r.p, id, data) || !holds(t, r.s, id, data) {
		t.Fatal("the chunk is not in both tiers when Put returns")
	}
	boom := errors.New("safety disk full")
	r.s.Set(stores.OpPut, stores.Rule{Fail: boom})
	data2, id2 := chunk(1201, 700)
	if err := b.Put(id2, data2); err != nil {
		t.Fatalf("Put: %v (a write error belongs to Err and Wait)", err)
	}
	if err := b.Err(); !errors.Is(err, boom) {
		t.Fatalf("Err after a failed inline put = %v, want %v", err, boom)
	}
	if err := b.Wait(); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want %v", err, boom)
	}
	skipped := false
	data3, id3 := chunk(1202, 700)
	if err := b.PutUnlessStored(id3, data3, func() bool { skipped = true; return true }); err != nil {
		t.Fatal(err)
	}
	if !skipped || has(t, r.p, id3) {
		t.Fatalf("PutUnlessStored: skip asked %v, chunk written %v; want the skip to win", skipped, has(t, r.p, id3))
	}
}
