package replica

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/index"
)

// TestReplicateAndRestore: after rounds of changes and durability points,
// either tier alone restores the index byte for byte, and an earlier
// point in time restores the index as it was then.
func TestReplicateAndRestore(t *testing.T) {
	e := newEnv(t)
	r := e.start(e.opts())
	var images [][]byte
	var times []time.Time
	for round := range 4 {
		addFiles(t, e.db, index.RootIno, string(rune('a'+round)), 30)
		point(t, e.db)
		wait(t, r)
		images = append(images, image(t, e.db))
		times = append(times, time.Now())
		time.Sleep(5 * time.Millisecond) // distinct milliseconds per point
	}
	st := r.Stats()
	for _, ts := range st.Tiers {
		if ts.Seq != st.Seq || ts.Behind != 0 || ts.LagSeconds != 0 || ts.Generation != st.Generation {
			t.Errorf("tier %s: %+v, want caught up with %s/%d", ts.Name, ts, st.Generation, st.Seq)
		}
	}
	if st.Seq < 5 {
		t.Errorf("seq %d after a snapshot and 4 points", st.Seq)
	}
	for _, tg := range [][]Target{e.targets()[:1], e.targets()[1:]} {
		got, res, err := e.restore(RestoreOptions{Targets: tg})
		if err != nil {
			t.Fatalf("restore from %s: %v", tg[0].Name, err)
		}
		if !bytes.Equal(got, images[3]) {
			t.Errorf("restore from %s: the index differs from the source (%d vs %d bytes)", tg[0].Name, len(got), len(images[3]))
		}
		if res.FSID != e.fsid || res.Seq != st.Seq || len(res.Fallbacks) != 0 {
			t.Errorf("restore from %s: %+v", tg[0].Name, res)
		}
	}
	// Point in time: as of round 2.
	got, res, err := e.restore(RestoreOptions{Targets: e.targets(), At: times[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, images[1]) {
		t.Errorf("restore --at round 2 gave another index (seq %d, %s)", res.Seq, res.Time)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFallsBack: a corrupt or missing object in the preferred tier
// comes from the other; with no good copy anywhere, the error names it.
func TestRestoreFallsBack(t *testing.T) {
	e := newEnv(t)
	r := e.start(e.opts())
	for round := range 3 {
		addFiles(t, e.db, index.RootIno, string(rune('a'+round)), 20)
		point(t, e.db)
	}
	wait(t, r)
	want := image(t, e.db)
	names := e.primary.names(Root + "/")
	newest := names[len(names)-1]
	e.primary.mutate(newest, func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0xff; return b })
	e.primary.DeleteMeta(context.Background(), names[1])

	got, res, err := e.restore(RestoreOptions{Targets: e.targets()})
	if err != nil {
		t.Fatalf("auto restore: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("auto restore differs from the source")
	}
	if len(res.Fallbacks) != 1 || !strings.Contains(res.Fallbacks[0], "BLAKE3") {
		t.Errorf("fallbacks %q, want the corrupt newest object", res.Fallbacks)
	}
	// Only the damaged tier: the corrupt object stops the restore.
	_, _, err = e.restore(RestoreOptions{Targets: e.targets()[:1]})
	if err == nil || !strings.Contains(err.Error(), "object 2 is in no tier") && !strings.Contains(err.Error(), "no tier holds a good copy") {
		t.Fatalf("restore from the damaged tier alone: %v", err)
	}
	// A tier that refuses reads: auto takes everything from the other;
	// alone, the error says why.
	back, _ := e.safety.GetMeta(context.Background(), names[1], 1<<30)
	e.primary.PutMeta(context.Background(), names[1], back)
	e.primary.failGet = errors.New("permission denied")
	if got, _, err := e.restore(RestoreOptions{Targets: e.targets()}); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("auto restore with primary refusing reads: %v", err)
	}
	if _, _, err = e.restore(RestoreOptions{Targets: e.targets()[:1]}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("restore from a tier refusing reads: %v", err)
	}
	e.primary.failGet = nil
	// Both copies of a middle segment lost: a gap, named.
	e.safety.DeleteMeta(context.Background(), names[1])
	e.primary.DeleteMeta(context.Background(), names[1])
	_, _, err = e.restore(RestoreOptions{Targets: e.targets()})
	if err == nil || !strings.Contains(err.Error(), "is in no tier, but later ones are") {
		t.Fatalf("restore over a gap: %v", err)
	}
	r.Close(context.Background())
}

// TestContinueAfterCleanClose: a clean stop records the position and the
// next start continues the generation; a change while stopped (or no
// state file) starts a new one.
func TestContinueAfterCleanClose(t *testing.T) {
	e := newEnv(t)
	r := e.start(e.opts())
	addFiles(t, e.db, index.RootIno, "a", 10)
	point(t, e.db)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	gen := r.Stats().Generation
	r = e.start(e.opts())
	if st := r.Stats(); st.Generation != gen || st.Snapshots != 0 {
		t.Fatalf("after a clean close: generation %s (snapshots %d), want %s continued", st.Generation, st.Snapshots, gen)
	}
	addFiles(t, e.db, index.RootIno, "b", 10)
	point(t, e.db)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := image(t, e.db)
	got, _, err := e.restore(RestoreOptions{Targets: e.targets()[1:]})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restore after a continued generation: %v (equal %v)", err, bytes.Equal(got, want))
	}
	// A change without the replicator: the next start cannot continue.
	addFiles(t, e.db, index.RootIno, "c", 1)
	r = e.start(e.opts())
	if st := r.Stats(); st.Generation == gen {
		t.Fatalf("continued generation %s over a changed index", gen)
	}
	r.Close(context.Background())
}

// TestTierDownCatchesUp: a tier refusing objects lags and counts errors,
// the other goes on; Wait names the failing tier; once the tier is back
// it catches up.
func TestTierDownCatchesUp(t *testing.T) {
	e := newEnv(t)
	e.safety.setFail(errors.New("disk on fire"))
	r := e.start(e.opts())
	addFiles(t, e.db, index.RootIno, "a", 10)
	point(t, e.db)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := r.Wait(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "tier safety: disk on fire") {
		t.Fatalf("Wait with a failing tier: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	st := r.Stats()
	if st.Tiers[0].Behind != 0 || st.Tiers[1].Behind == 0 || st.Tiers[1].Errors == 0 || st.Tiers[1].LagSeconds <= 0 {
		t.Fatalf("stats with the safety tier down: %+v", st.Tiers)
	}
	e.safety.setFail(nil)
	wait(t, r)
	if st := r.Stats(); st.Tiers[1].Behind != 0 || st.Tiers[1].Seq != st.Seq {
		t.Fatalf("safety did not catch up: %+v", st.Tiers[1])
	}
	// Down again at unmount: Close does not wait out its deadline for a
	// tier that fails, and the next start begins a new generation.
	e.safety.setFail(errors.New("gone"))
	addFiles(t, e.db, index.RootIno, "b", 3)
	point(t, e.db)
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	err = r.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "new generation") || time.Since(t0) > 10*time.Second {
		t.Fatalf("Close with a tier down: %v after %s", err, time.Since(t0))
	}
	e.safety.setFail(nil)
	gen := r.Stats().Generation
	r = e.start(e.opts())
	if r.Stats().Generation == gen {
		t.Fatalf("continued generation %s although a tier missed its end", gen)
	}
	r.Close(context.Background())
}

// TestNewGenerationAndRetention: a snapshot interval starts new
// generations; generations older than the retention window go, the
// newest stays, and restore takes the newest.
func TestNewGenerationAndRetention(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.SnapshotInterval = time.Millisecond
	o.Retention = time.Millisecond
	r := e.start(o)
	gens := map[string]bool{}
	for round := range 4 {
		addFiles(t, e.db, index.RootIno, string(rune('a'+round)), 5)
		time.Sleep(5 * time.Millisecond)
		point(t, e.db)
		deadline := time.Now().Add(5 * time.Second)
		for r.Stats().Pending != "" && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		wait(t, r)
		gens[r.Stats().Generation] = true
	}
	if len(gens) < 3 {
		t.Fatalf("%d generations, want a new one per point", len(gens))
	}
	time.Sleep(50 * time.Millisecond)
	want := image(t, e.db)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ls, _, err := List(context.Background(), e.targets(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) > 2 {
		t.Errorf("%d generations kept with a 1 ms retention, want at most 2", len(ls))
	}
	got, _, err := e.restore(RestoreOptions{Targets: e.targets()})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restore: %v", err)
	}
}

// TestRestoreRefusesAmbiguousFSID: backups of two filesystems in one tier
// need --fsid.
func TestRestoreRefusesAmbiguousFSID(t *testing.T) {
	e1 := newEnv(t)
	e2 := newEnv(t)
	e2.primary, e2.safety = e1.primary, e1.safety
	for _, e := range []*env{e1, e2} {
		r := e.start(e.opts())
		addFiles(t, e.db, index.RootIno, "a", 3)
		point(t, e.db)
		wait(t, r)
		r.Close(context.Background())
	}
	_, _, err := e1.restore(RestoreOptions{Targets: e1.targets()})
	if err == nil || !strings.Contains(err.Error(), "2 filesystems") {
		t.Fatalf("restore with two filesystems: %v", err)
	}
	if _, res, err := e1.restore(RestoreOptions{Targets: e1.targets(), FSID: e2.fsid}); err != nil || res.FSID != e2.fsid {
		t.Fatalf("restore --fsid: %v", err)
	}
}
