package vfs

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// noLoop turns the background durability points off: the test decides
// when points happen.
func noLoop(o *Options) { o.SyncInterval = -1 }

// writeFile creates name with data and closes it (committed, not synced).
func (m *testFS) writeFile(t *testing.T, name string, data []byte) uint64 {
	t.Helper()
	h := m.createOpen(t, name)
	writeSeq(t, h, data, 0, 1<<20)
	flush(t, h)
	ino := h.Ino()
	release(t, h)
	return ino
}

// overwrite writes data at off in an existing file and closes it.
func (m *testFS) overwrite(t *testing.T, ino uint64, data []byte, off int64) {
	t.Helper()
	h := m.open(t, ino)
	write(t, h, data, off)
	flush(t, h)
	release(t, h)
}

func (m *testFS) unsettled(t *testing.T) []uint64 {
	t.Helper()
	u, err := m.db.Unsettled(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newChunks returns the chunks ino references now that it did not in old.
func (m *testFS) newChunks(t *testing.T, ino uint64, old []index.Chunk) []stores.ID {
	t.Helper()
	was := map[stores.ID]bool{}
	for _, c := range old {
		was[c.ID] = true
	}
	cur, err := m.db.Chunks(context.Background(), ino)
	if err != nil {
		t.Fatal(err)
	}
	var out []stores.ID
	for _, c := range cur {
		if !was[c.ID] {
			out = append(out, c.ID)
		}
	}
	return out
}

// TestSyncSettles: a close leaves an undo record; fsync (Sync) settles it.
func TestSyncSettles(t *testing.T) {
	m := newTestFS(t, noLoop)
	rng := rand.New(rand.NewPCG(1, 1))
	ino := m.writeFile(t, "f", randBytes(rng, 300<<10))
	if u := m.unsettled(t); len(u) != 1 || u[0] != ino {
		t.Fatalf("unsettled after close = %v, want [%d]", u, ino)
	}
	if err := m.fs.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := m.unsettled(t); len(u) != 0 {
		t.Fatalf("unsettled after Sync = %v", u)
	}
	if s := m.fs.Stats(); s.Syncs != 1 {
		t.Errorf("syncs = %d, want 1", s.Syncs)
	}
}

// TestBackgroundSync: without any fsync, a closed file is settled within
// the sync interval.
func TestBackgroundSync(t *testing.T) {
	m := newTestFS(t, func(o *Options) { o.SyncInterval = 20 * time.Millisecond })
	m.writeFile(t, "f", []byte("closed, never fsync'd"))
	deadline := time.Now().Add(10 * time.Second)
	for len(m.unsettled(t)) > 0 || m.fs.Stats().Syncs == 0 { // settled, and the point counted
		if time.Now().After(deadline) {
			t.Fatal("the background durability point never settled a closed file")
		}
		time.Sleep(10 * time.Millisecond) // polling for the condition, with a deadline
	}
	// Idle intervals run no point.
	n := m.fs.Stats().Syncs
	time.Sleep(100 * time.Millisecond) // five idle intervals: nothing may happen in them
	if got := m.fs.Stats().Syncs; got != n {
		t.Errorf("idle intervals ran %d points", got-n)
	}
}

// TestRecoverRevertsLostOverwrite: the power took the chunks of an
// overwrite in both tiers; the file comes back with its fsync'd content,
// never as a file that reads EIO.
func TestRecoverRevertsLostOverwrite(t *testing.T) {
	ctx := context.Background()
	m := newTestFS(t, noLoop)
	rng := rand.New(rand.NewPCG(2, 2))
	old := randBytes(rng, 600<<10)
	ino := m.writeFile(t, "f", old)
	if err := m.fs.Sync(ctx); err != nil { // fsync'd: durable
		t.Fatal(err)
	}
	before, _ := m.db.Chunks(ctx, ino)
	m.overwrite(t, ino, randBytes(rng, 5000), 300<<10)
	other := m.writeFile(t, "other", []byte("unrelated, new"))
	lost := m.newChunks(t, ino, before)
	if len(lost) == 0 {
		t.Fatal("the overwrite made no new chunk")
	}
	m.crash(t, func() {
		for _, id := range lost {
			m.primary.Delete(ctx, id)
			m.safety.Delete(ctx, id)
		}
	})
	h := m.open(t, ino)
	if d := diff(old, readAll(t, h)); d != "" {
		t.Fatalf("after the power loss: %s; want the fsync'd content", d)
	}
	release(t, h)
	if s := m.fs.Stats(); s.RecoveryReverted != 1 || s.RecoveryChecked != 2 {
		t.Errorf("recovery stats %+v, want 2 files checked, 1 reverted", s)
	}
	if got := m.committed(t, other); string(got) != "unrelated, new" {
		t.Errorf("the unrelated file, whose chunk survived: %q", got)
	}
	if u := m.unsettled(t); len(u) != 0 {
		t.Errorf("records left after recovery: %v", u)
	}
	if err := m.db.Check(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverNewFileLost: a new file whose only chunk the power took
// comes back empty, not unreadable.
func TestRecoverNewFileLost(t *testing.T) {
	ctx := context.Background()
	m := newTestFS(t, noLoop)
	ino := m.writeFile(t, "new", []byte("never fsync'd"))
	lost := m.newChunks(t, ino, nil)
	m.crash(t, func() {
		for _, id := range lost {
			m.primary.Delete(ctx, id)
			m.safety.Delete(ctx, id)
		}
	})
	a, err := m.db.GetAttr(ctx, ino)
	if err != nil || a.Size != 0 {
		t.Fatalf("lost new file: %+v, %v; want it empty", a, err)
	}
}

// TestRecoverHealsOneTier: the power took a chunk from one tier only: it
// is copied back from the other, and the file keeps its new content.
func TestRecoverHealsOneTier(t *testing.T) {
	ctx := context.Background()
	m := newTestFS(t, noLoop)
	rng := rand.New(rand.NewPCG(3, 3))
	data := randBytes(rng, 200<<10)
	ino := m.writeFile(t, "f", data)
	ids := m.newChunks(t, ino, nil)
	m.crash(t, func() {
		for _, id := range ids {
			m.safety.Delete(ctx, id)
		}
	})
	if d := diff(data, m.committed(t, ino)); d != "" { // committed checks both tiers
		t.Fatalf("after healing: %s", d)
	}
	if s := m.fs.Stats(); s.RecoveryHealed != int64(len(ids)) || s.RecoveryReverted != 0 {
		t.Errorf("recovery stats %+v, want %d healed, none reverted", s, len(ids))
	}
}

// TestCleanCloseLeavesNothing: Close runs a last point, so a reopen has
// nothing to recover.
func TestCleanCloseLeavesNothing(t *testing.T) {
	m := newTestFS(t, noLoop)
	m.writeFile(t, "f", []byte("x"))
	if err := m.fs.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := m.unsettled(t); len(u) != 0 {
		t.Fatalf("unsettled after Close: %v", u)
	}
}

// TestSyncOneSided: with require: primary, a safety tier that cannot sync
// does not fail fsync (the chunks are durable where a write needs them),
// but the undo records stay until it can, so a power loss meanwhile is
// still checked in both tiers.
func TestSyncOneSided(t *testing.T) {
	ctx := context.Background()
	m := newTestFS(t, noLoop)
	m.writeFile(t, "f", []byte("one tier cannot sync"))
	m.sfault.Set(stores.OpSync, stores.Rule{})
	if err := m.fs.Sync(ctx); err != nil {
		t.Fatalf("Sync with the safety tier failing to sync: %v, want nil (require: primary)", err)
	}
	if len(m.unsettled(t)) != 1 {
		t.Fatal("a point whose safety sync failed settled the undo records")
	}
	m.sfault.Clear()
	if err := m.fs.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u := m.unsettled(t); len(u) != 0 {
		t.Fatalf("unsettled after the safety tier synced again: %v", u)
	}
	m.pfault.Set(stores.OpSync, stores.Rule{})
	if err := m.fs.Sync(ctx); err == nil {
		t.Fatal("Sync with the primary tier failing to sync succeeded")
	}
	m.pfault.Clear() // for the last point at cleanup
}
