package maint_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// tree makes /d/f (chunks 1, 2), /d/g (2, 3), /h (4, 5), /e (empty) and
// an unreferenced chunk row (6, overwritten in /h's history). Chunks 1..5
// are referenced.
func tree(t *testing.T, e *env) {
	t.Helper()
	d := e.mkdir(t, index.RootIno, "d")
	e.file(t, d, "f", 1, 2)
	e.file(t, d, "g", 2, 3)
	h := e.file(t, index.RootIno, "h", 6)
	e.commit(t, h, 4, 5)
	e.file(t, index.RootIno, "e")
}

func referencedBytes() int64 {
	var n int64
	for s := 1; s <= 5; s++ {
		n += size(s)
	}
	return n
}

// TestFsckJSON pins the field names `dualstore fsck --json` prints:
// scripts read them.
func TestFsckJSON(t *testing.T) {
	b, err := json.Marshal(maint.FsckReport{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"bytes", "chunks", "clean", "details", "details_truncated", "errors", "fixed", "index_clean",
		"index_problems", "one_sided", "unrecoverable", "unrecoverable_files", "unreferenced"}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
		t.Errorf("FsckReport JSON fields:\n got %q\nwant %q", got, want)
	}
}

func TestFsckClean(t *testing.T) {
	for _, deep := range []bool{false, true} {
		t.Run(map[bool]string{false: "shallow", true: "deep"}[deep], func(t *testing.T) {
			e := newEnv(t)
			tree(t, e)
			var mu sync.Mutex
			var last dual.Report
			calls := 0
			r, err := e.x.Fsck(context.Background(), maint.FsckOptions{Deep: deep, Progress: func(p dual.Report) {
				mu.Lock()
				defer mu.Unlock()
				last = p
				calls++
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Clean || !r.IndexClean || r.Chunks != 5 || r.Bytes != referencedBytes() || r.OneSided != 0 ||
				r.Unrecoverable != 0 || r.Errors != 0 || r.Fixed != 0 || r.Unreferenced != 1 {
				t.Errorf("fsck of a clean filesystem: %+v; want clean, 5 chunks, 1 unreferenced", r)
			}
			// Empty lists, not null, in the JSON.
			if r.IndexProblems == nil || r.UnrecoverableFiles == nil || r.Details == nil || len(r.Details) != 0 {
				t.Errorf("lists of a clean fsck: %+v", r)
			}
			if calls == 0 || last.Done != 5 || last.Total != 5 || last.State != "done" || last.Deep != deep {
				t.Errorf("progress: %d calls, last %+v; want the final report of 5 chunks", calls, last)
			}
		})
	}
}

// TestFsckDamage removes chunks from one or both tiers and breaks a store:
// fsck reports each kind as the scrub classes it.
func TestFsckDamage(t *testing.T) {
	for _, deep := range []bool{false, true} {
		t.Run(map[bool]string{false: "shallow", true: "deep"}[deep], func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			tree(t, e)
			// 2 (in /d/f and /d/g) is lost from both tiers, 1 from the
			// primary, 4 from the safety tier, and the primary fails for 5.
			for _, m := range []*stores.Mem{e.Primary, e.Safety} {
				if err := m.Delete(ctx, id(2)); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Primary.Delete(ctx, id(1)); err != nil {
				t.Fatal(err)
			}
			if err := e.Safety.Delete(ctx, id(4)); err != nil {
				t.Fatal(err)
			}
			for _, op := range []stores.Op{stores.OpStat, stores.OpGet} {
				e.PrimaryFault.Set(op, stores.Rule{IDs: []stores.ID{id(5)}})
			}
			r, err := e.x.Fsck(ctx, maint.FsckOptions{Deep: deep})
			if err != nil {
				t.Fatal(err)
			}
			if r.Clean || !r.IndexClean || r.Chunks != 5 || r.OneSided != 2 || r.Unrecoverable != 1 || r.Errors != 1 {
				t.Errorf("fsck: %+v; want not clean, 2 one-sided, 1 unrecoverable, 1 error", r)
			}
			if !slices.Equal(r.UnrecoverableFiles, []string{"/d/f", "/d/g"}) {
				t.Errorf("unrecoverable files %q, want /d/f and /d/g", r.UnrecoverableFiles)
			}
			want := map[string]dual.Class{
				id(2).String(): dual.ClassMissing, id(1).String(): dual.ClassSafetyOnly,
				id(4).String(): dual.ClassPrimaryOnly, id(5).String(): dual.ClassError,
			}
			got := map[string]dual.Class{}
			for _, d := range r.Details {
				got[d.Chunk] = d.Class
				// Only a lost chunk names its files, as fsck always has.
				wantFiles := []string{}
				if d.Class == dual.ClassMissing {
					wantFiles = []string{"/d/f", "/d/g"}
				}
				if !slices.Equal(d.Files, wantFiles) || d.Files == nil {
					t.Errorf("detail %s %s: files %q, want %q", d.Chunk, d.Class, d.Files, wantFiles)
				}
			}
			if !maps.Equal(got, want) || r.DetailsTruncated {
				t.Errorf("details %v (truncated %v), want %v", got, r.DetailsTruncated, want)
			}

			// A bound on the details keeps the counts and the files.
			r, err = e.x.Fsck(ctx, maint.FsckOptions{Deep: deep, Tuning: maint.Tuning{MaxDetails: 1}})
			if err != nil || len(r.Details) != 1 || !r.DetailsTruncated || r.Unrecoverable != 1 ||
				!slices.Equal(r.UnrecoverableFiles, []string{"/d/f", "/d/g"}) {
				t.Errorf("fsck with max details 1: %+v, %v", r, err)
			}
		})
	}
}

// TestFsckRepair damages the index's counts: fsck finds them, fsck
// --repair fixes them and says what it found, and nothing is lost.
func TestFsckRepair(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tree(t, e)
	e.rawExec(t, "UPDATE chunks SET refs = 7 WHERE refs > 0", "UPDATE counters SET files = 99")

	r, err := e.x.Fsck(ctx, maint.FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Clean || r.IndexClean || len(r.IndexProblems) == 0 || r.Fixed != 0 || r.Chunks != 5 {
		t.Fatalf("fsck of a damaged index: %+v; want index problems, nothing fixed", r)
	}
	problems := r.IndexProblems

	r, err = e.x.Fsck(ctx, maint.FsckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean || !r.IndexClean || r.Fixed == 0 || !slices.Equal(r.IndexProblems, problems) || r.Chunks != 5 || r.Unrecoverable != 0 {
		t.Fatalf("fsck --repair: %+v; want clean, rows fixed, the problems it found listed", r)
	}
	if err := e.DB.Check(ctx, 0); err != nil {
		t.Fatalf("index after repair: %v", err)
	}
	if _, refs, err := e.DB.ChunkRefs(ctx, id(2)); err != nil || refs != 2 {
		t.Errorf("refs of the shared chunk after repair: %d, %v; want 2", refs, err)
	}
	r, err = e.x.Fsck(ctx, maint.FsckOptions{Repair: true})
	if err != nil || !r.Clean || r.Fixed != 0 || len(r.IndexProblems) != 0 {
		t.Errorf("second fsck --repair: %+v, %v; want clean, nothing to fix", r, err)
	}
}

// TestFsckStop cancels a slow chunk check: Fsck stops it promptly, fails
// with the context's error, and leaves the manager free for the next run.
func TestFsckStop(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tree(t, e)
	e.PrimaryFault.Set(stores.OpStat, stores.Rule{Delay: time.Second})

	t.Run("cancelled during the check", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var once sync.Once
		start := time.Now()
		_, err := e.x.Fsck(cctx, maint.FsckOptions{Tuning: maint.Tuning{Concurrency: 1}, Progress: func(p dual.Report) {
			if p.State == "running" {
				once.Do(cancel)
			}
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fsck cancelled: %v, want context.Canceled", err)
		}
		// Five chunks one at a time, a second each: a check not stopped
		// would take five.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Fsck took %v after its context was cancelled", d)
		}
	})
	t.Run("cancelled before", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := e.x.Fsck(cctx, maint.FsckOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Fsck with a cancelled context: %v, want context.Canceled", err)
		}
	})
	e.PrimaryFault.Clear()
	if r, err := e.x.Fsck(ctx, maint.FsckOptions{}); err != nil || !r.Clean {
		t.Errorf("fsck after the stopped ones: %+v, %v; want clean (the manager is free)", r, err)
	}
}

// TestFsckRate checks a deep fsck obeys the tuning's rate, like a compare.
func TestFsckRate(t *testing.T) {
	e := newEnv(t)
	tree(t, e)
	// A deep check reads both copies: 2 x the bytes, at 4 x the bytes per
	// second, takes half a second at least.
	rate := 4 * referencedBytes()
	start := time.Now()
	r, err := e.x.Fsck(context.Background(), maint.FsckOptions{Deep: true, Tuning: maint.Tuning{Rate: rate}})
	if err != nil || !r.Clean {
		t.Fatalf("fsck: %+v, %v", r, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("deep fsck at %d B/s took %v, want about 500ms", rate, d)
	}
}

// TestFsckBadTuning checks fsck refuses a tuning out of range before it
// touches anything.
func TestFsckBadTuning(t *testing.T) {
	e := newEnv(t)
	if _, err := e.x.Fsck(context.Background(), maint.FsckOptions{Tuning: maint.Tuning{Concurrency: 5000}}); !errors.Is(err, maint.ErrOutOfRange) {
		t.Errorf("fsck with concurrency 5000: %v, want ErrOutOfRange", err)
	}
}
