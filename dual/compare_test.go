package dual_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// Kinds of damage a test population can carry, each chunk one of them.
const (
	kMatch        = "match"         // both tiers hold a good copy
	kSizeMismatch = "size_mismatch" // the safety file has another length
	kByteMismatch = "byte_mismatch" // the safety file has other bytes, same length
	kPrimaryBad   = "primary_bad"   // the primary file has other bytes
	kPrimaryOnly  = "primary_only"  // the safety tier lost it
	kSafetyOnly   = "safety_only"   // the primary lost it
	kMissing      = "missing"       // never stored
	kBothBad      = "both_bad"      // both files hold other bytes
	kError        = "error"         // the safety store fails every call for it
	kPending      = "pending"       // a one-sided write: safety missed it
)

// expectClass is the class a comparison must give a kind.
func expectClass(kind string, deep bool) dual.Class {
	switch kind {
	case kMatch:
		return dual.ClassMatch
	case kSizeMismatch:
		return dual.ClassMismatch
	case kByteMismatch, kPrimaryBad:
		if deep {
			return dual.ClassMismatch
		}
		return dual.ClassMatch // same size: only reading the bytes shows it
	case kPrimaryOnly, kPending:
		return dual.ClassPrimaryOnly
	case kSafetyOnly:
		return dual.ClassSafetyOnly
	case kMissing:
		return dual.ClassMissing
	case kBothBad:
		if deep {
			return dual.ClassMissing // no good copy anywhere
		}
		return dual.ClassMatch
	case kError:
		return dual.ClassError
	}
	panic("unknown kind " + kind)
}

// pop is a population of chunks over a local rig, each with known damage,
// and the ScrubOptions callbacks that page through it like the index does.
type pop struct {
	r      *rig
	seed   uint64
	infos  []dual.ChunkInfo
	kind   map[stores.ID]string
	data   map[stores.ID][]byte
	errIDs []stores.ID
	// sourceCalls counts Source calls (paging).
	sourceCalls atomic.Int64
}

func newPop(r *rig, seed uint64) *pop {
	return &pop{r: r, seed: seed, kind: map[stores.ID]string{}, data: map[stores.ID][]byte{}}
}

// add stores n chunks of kind, of size bytes and up.
func (p *pop) add(t testing.TB, kind string, n, size int) {
	t.Helper()
	ctx := t.Context()
	for range n {
		p.seed++
		data, id := chunk(p.seed, size+int(p.seed%97))
		p.kind[id], p.data[id] = kind, data
		p.infos = append(p.infos, dual.ChunkInfo{ID: id, Size: int64(len(data))})
		switch kind {
		case kMissing:
			continue
		case kPending:
			p.r.s.Set(stores.OpPut, stores.Rule{Count: 1})
		}
		p.r.put(t, data)
		var err error
		switch kind {
		case kSizeMismatch:
			corruptOnDisk(t, p.r.sLocal, id, len(data)-7)
		case kByteMismatch:
			corruptOnDisk(t, p.r.sLocal, id, -1)
		case kPrimaryBad:
			corruptOnDisk(t, p.r.pLocal, id, -1)
		case kBothBad:
			corruptOnDisk(t, p.r.pLocal, id, -1)
			corruptOnDisk(t, p.r.sLocal, id, -1)
		case kPrimaryOnly:
			err = p.r.sLocal.Delete(ctx, id)
		case kSafetyOnly:
			err = p.r.pLocal.Delete(ctx, id)
		case kError:
			p.errIDs = append(p.errIDs, id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// finish sorts the chunks in id order and arms the failing store.
func (p *pop) finish() {
	sort.Slice(p.infos, func(i, j int) bool { return bytes.Compare(p.infos[i].ID[:], p.infos[j].ID[:]) < 0 })
	if len(p.errIDs) > 0 {
		p.r.s.Set(stores.OpStat, stores.Rule{IDs: p.errIDs})
		p.r.s.Set(stores.OpGet, stores.Rule{IDs: p.errIDs})
	}
}

func filesOf(id stores.ID) []string {
	return []string{"/data/" + id.String()[:8], "/copy/" + id.String()[:8]}
}

// options returns o with Source, Count and FilesOf over the population.
func (p *pop) options(o dual.ScrubOptions) dual.ScrubOptions {
	o.Source = func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		p.sourceCalls.Add(1)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		i := sort.Search(len(p.infos), func(i int) bool { return bytes.Compare(p.infos[i].ID[:], after[:]) > 0 })
		return p.infos[i:min(i+limit, len(p.infos))], nil
	}
	o.Count = func(context.Context) (int64, int64, error) {
		var b int64
		for _, c := range p.infos {
			b += c.Size
		}
		return int64(len(p.infos)), b, nil
	}
	o.FilesOf = func(_ context.Context, id stores.ID) ([]string, error) { return filesOf(id), nil }
	return o
}

func (p *pop) count(kind string) int {
	n := 0
	for _, k := range p.kind {
		if k == kind {
			n++
		}
	}
	return n
}

// expected returns the per-class counts a comparison must report.
func (p *pop) expected(deep bool) map[dual.Class]int64 {
	out := map[dual.Class]int64{}
	for _, k := range p.kind {
		out[expectClass(k, deep)]++
	}
	return out
}

func checkCounts(t *testing.T, r dual.Report, want map[dual.Class]int64) {
	t.Helper()
	got := map[dual.Class]int64{
		dual.ClassMatch: r.Matches, dual.ClassMismatch: r.Mismatches, dual.ClassPrimaryOnly: r.PrimaryOnly,
		dual.ClassSafetyOnly: r.SafetyOnly, dual.ClassMissing: r.Missing, dual.ClassError: r.Errors,
	}
	for c, n := range got {
		if n != want[c] {
			t.Errorf("report %s = %d, want %d", c, n, want[c])
		}
	}
}

// TestCompareChunk compares one chunk in every state, shallow and deep.
func TestCompareChunk(t *testing.T) {
	kinds := []string{kMatch, kSizeMismatch, kByteMismatch, kPrimaryBad, kPrimaryOnly, kSafetyOnly, kMissing, kBothBad, kError}
	for _, kind := range kinds {
		for _, deep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/deep=%v", kind, deep), func(t *testing.T) {
				t.Parallel()
				r := newRig(t, rigConfig{local: true})
				p := newPop(r, 1000)
				p.add(t, kind, 1, 3000)
				p.finish()
				c := p.infos[0]
				r.m.ResetStats()
				v := r.m.CompareChunk(t.Context(), c, deep)
				if want := expectClass(kind, deep); v.Class != want {
					t.Fatalf("CompareChunk = %+v, want class %s", v, want)
				}
				if v.Note == "" {
					t.Error("the verdict has no note")
				}
				wantGood := map[string]string{
					kPrimaryOnly: dual.TierPrimary, kSafetyOnly: dual.TierSafety, kMissing: "none",
				}[kind]
				if deep {
					switch kind {
					case kSizeMismatch, kByteMismatch:
						wantGood = dual.TierPrimary
					case kPrimaryBad:
						wantGood = dual.TierSafety
					case kBothBad:
						wantGood = "none"
					}
				}
				if v.Good != wantGood {
					t.Errorf("Good = %q, want %q", v.Good, wantGood)
				}
				if kind == kError {
					if !errors.Is(v.Err, stores.ErrInjected) {
						t.Errorf("Err = %v, want the store's error", v.Err)
					}
				} else if v.Err != nil {
					t.Errorf("Err = %v, want nil", v.Err)
				}
				if kind == kSizeMismatch && !deep && !strings.Contains(v.Note, "sizes differ") {
					t.Errorf("Note = %q, want it to say the sizes differ", v.Note)
				}
				// A comparison reads through the tiers (their counters see
				// it) but is not a client read: nothing falls back, nothing
				// is healed.
				bad := func(k ...string) float64 {
					for _, x := range k {
						if x == kind {
							return b2f(deep)
						}
					}
					return 0
				}
				wantStats(t, r.m, map[string]float64{
					"chunk_reads.ok": 0, "chunk_reads.errors": 0, "fallbacks": 0, "self_heals": 0,
					"tiers.primary.writes.ok": 0, "tiers.safety.writes.ok": 0,
					"tiers.primary.reads.checksum_errors":          bad(kPrimaryBad, kBothBad),
					"tiers.safety.reads.checksum_errors":           bad(kByteMismatch, kSizeMismatch, kBothBad),
					"tiers.safety.stores.0.reads.checksum_errors":  bad(kByteMismatch, kSizeMismatch, kBothBad),
					"tiers.primary.stores.0.reads.checksum_errors": bad(kPrimaryBad, kBothBad),
				})
			})
		}
	}
}

// TestRepairChunk repairs one chunk in every state: only verified data is
// copied, a chunk with no good copy is reported and not written, and a
// deep comparison afterwards matches.
func TestRepairChunk(t *testing.T) {
	tests := []struct {
		kind      string
		repaired  bool
		wantErr   bool
		fixedTier string // the tier that is written
	}{
		{kMatch, false, false, ""},
		{kSizeMismatch, true, false, dual.TierSafety},
		{kByteMismatch, true, false, dual.TierSafety},
		{kPrimaryBad, true, false, dual.TierPrimary},
		{kPrimaryOnly, true, false, dual.TierSafety},
		{kSafetyOnly, true, false, dual.TierPrimary},
		{kMissing, false, true, ""},
		{kBothBad, false, true, ""},
		{kError, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigConfig{local: true})
			p := newPop(r, 2000)
			p.add(t, tt.kind, 1, 3000)
			p.finish()
			c := p.infos[0]
			data := p.data[c.ID]
			var pBefore, sBefore []byte
			if tt.kind == kBothBad {
				pBefore, sBefore = onDisk(t, r.pLocal, c.ID), onDisk(t, r.sLocal, c.ID)
			}
			r.m.ResetStats()
			v, repaired, err := r.m.RepairChunk(t.Context(), c)
			if want := expectClass(tt.kind, true); v.Class != want {
				t.Errorf("verdict class = %s, want %s (from a deep comparison)", v.Class, want)
			}
			if repaired != tt.repaired || (err != nil) != tt.wantErr {
				t.Fatalf("RepairChunk = %v, %v; want repaired %v, error %v", repaired, err, tt.repaired, tt.wantErr)
			}
			wantStats(t, r.m, map[string]float64{
				"tiers.primary.writes.ok": b2f(tt.fixedTier == dual.TierPrimary),
				"tiers.safety.writes.ok":  b2f(tt.fixedTier == dual.TierSafety),
				"self_heals":              0,
			})
			switch tt.kind {
			case kBothBad:
				// Nothing good to copy: both files are left as they were.
				if !bytes.Equal(onDisk(t, r.pLocal, c.ID), pBefore) || !bytes.Equal(onDisk(t, r.sLocal, c.ID), sBefore) {
					t.Fatal("a repair with no good copy wrote a tier")
				}
				return
			case kMissing:
				if has(t, r.p, c.ID) || has(t, r.s, c.ID) {
					t.Fatal("a repair of a missing chunk wrote something")
				}
				return
			case kError:
				r.s.Clear()
			}
			if tt.fixedTier != "" {
				l := r.pLocal
				if tt.fixedTier == dual.TierSafety {
					l = r.sLocal
				}
				if !bytes.Equal(onDisk(t, l, c.ID), data) {
					t.Fatalf("the %s file does not hold the good bytes after the repair", tt.fixedTier)
				}
			}
			if v := r.m.CompareChunk(t.Context(), c, true); v.Class != dual.ClassMatch {
				t.Fatalf("deep compare after the repair = %+v, want match", v)
			}
		})
	}
}

// A corrupt primary copy and no safety copy: the only bytes there are bad,
// so the repair must not spread them.
func TestRepairNeverCopiesBadData(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	data, id := chunk(2100, 5000)
	r.put(t, data)
	corruptOnDisk(t, r.pLocal, id, -1)
	if err := r.sLocal.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	v, repaired, err := r.m.RepairChunk(t.Context(), dual.ChunkInfo{ID: id, Size: int64(len(data))})
	if v.Class != dual.ClassMissing || repaired || err == nil {
		t.Fatalf("RepairChunk = %+v, %v, %v; want class missing, not repaired, an error", v, repaired, err)
	}
	if has(t, r.s, id) {
		t.Fatal("the repair copied the corrupt primary copy into the safety tier")
	}
	// The shallow view sees only a primary copy; the deep one knows better.
	if v := r.m.CompareChunk(t.Context(), dual.ChunkInfo{ID: id, Size: int64(len(data))}, false); v.Class != dual.ClassPrimaryOnly {
		t.Fatalf("shallow compare = %s, want primary_only", v.Class)
	}
	wantStats(t, r.m, map[string]float64{"tiers.safety.writes.ok": 1, "tiers.primary.reads.checksum_errors": 1})
}

// TestScrubRun compares a population with every kind of damage, deep and
// shallow, and checks counts, details and the last-compare stats.
func TestScrubRun(t *testing.T) {
	r := newRig(t, rigConfig{local: true, opts: func(o *dual.Options) { o.ComparisonLogging = true }})
	p := newPop(r, 3000)
	p.add(t, kMatch, 40, 1000)
	p.add(t, kSizeMismatch, 5, 1000)
	p.add(t, kByteMismatch, 3, 1000)
	p.add(t, kPrimaryOnly, 5, 1000)
	p.add(t, kSafetyOnly, 4, 1000)
	p.add(t, kMissing, 3, 1000)
	p.add(t, kError, 3, 1000)
	p.finish()
	total := len(p.infos)

	if flatStats(t, r.m)["consistency_rate"] != nil || flatStats(t, r.m)["last_compare"] != nil {
		t.Fatal("consistency_rate or last_compare set before any comparison")
	}
	for _, deep := range []bool{false, true} {
		t.Run(fmt.Sprintf("deep=%v", deep), func(t *testing.T) {
			var onDetail atomic.Int64
			opts := p.options(dual.ScrubOptions{Deep: deep, BatchSize: 7, Concurrency: 3, Path: "/data"})
			opts.OnDetail = func(dual.Detail) { onDetail.Add(1) }
			p.sourceCalls.Store(0)
			rep, err := r.m.Run(t.Context(), opts)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := p.expected(deep)
			checkCounts(t, rep, want)
			if rep.State != "done" || rep.Deep != deep || rep.Action != "compare" || rep.Path != "/data" {
				t.Errorf("report state %q deep %v action %q path %q", rep.State, rep.Deep, rep.Action, rep.Path)
			}
			if rep.Total != int64(total) || rep.Done != int64(total) {
				t.Errorf("total %d done %d, want %d", rep.Total, rep.Done, total)
			}
			// Pages of 7, and one empty page to end.
			if got, wantCalls := p.sourceCalls.Load(), int64((total+6)/7+1); got != wantCalls {
				t.Errorf("Source called %d times, want %d", got, wantCalls)
			}
			diffs := int64(total) - want[dual.ClassMatch]
			if rep.Differences() != diffs || int64(len(rep.Details)) != diffs || rep.DetailsTruncated {
				t.Errorf("differences %d, %d details (truncated %v), want %d", rep.Differences(), len(rep.Details), rep.DetailsTruncated, diffs)
			}
			if onDetail.Load() != diffs {
				t.Errorf("OnDetail called %d times, want %d", onDetail.Load(), diffs)
			}
			for _, d := range rep.Details {
				id, err := stores.ParseID(d.Chunk)
				if err != nil {
					t.Fatalf("detail chunk %q: %v", d.Chunk, err)
				}
				if want := expectClass(p.kind[id], deep); d.Class != want {
					t.Errorf("detail %s: class %s, want %s (%s)", d.Chunk, d.Class, want, p.kind[id])
				}
				if strings.Join(d.Files, ",") != strings.Join(filesOf(id), ",") {
					t.Errorf("detail %s: files %v, want %v", d.Chunk, d.Files, filesOf(id))
				}
				if (d.Class == dual.ClassError) != (d.Error != "") {
					t.Errorf("detail %s: class %s with error %q", d.Chunk, d.Class, d.Error)
				}
			}
			rate := float64(want[dual.ClassMatch]) / float64(total)
			if got := rep.ConsistencyRate(); got != rate {
				t.Errorf("ConsistencyRate = %v, want %v", got, rate)
			}
			last := r.m.LastCompare()
			if last == nil || last.Matches != want[dual.ClassMatch] || last.Deep != deep {
				t.Fatalf("LastCompare = %+v", last)
			}
			s := r.m.Stats()
			if s.ConsistencyRate == nil || *s.ConsistencyRate != rate {
				t.Errorf("stats consistency_rate = %v, want %v", s.ConsistencyRate, rate)
			}
			if s.LastCompare == nil || s.LastCompare.Details != nil || s.LastCompare.Mismatches != want[dual.ClassMismatch] {
				t.Errorf("stats last_compare = %+v: want the summary without details", s.LastCompare)
			}
			flat := flatStats(t, r.m)
			if flat["consistency_rate"] != rate || flat["last_compare.matches"] != float64(want[dual.ClassMatch]) ||
				flat["last_compare.state"] != "done" || flat["last_compare.details"] != nil {
				t.Errorf("stats JSON: consistency_rate %v, last_compare %v", flat["consistency_rate"], flat["last_compare"])
			}
		})
	}

	t.Run("max details", func(t *testing.T) {
		rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Deep: true, MaxDetails: 5}))
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, rep, p.expected(true))
		if len(rep.Details) != 5 || !rep.DetailsTruncated {
			t.Fatalf("%d details, truncated %v; want 5, true", len(rep.Details), rep.DetailsTruncated)
		}
	})

	t.Run("report json", func(t *testing.T) {
		rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Deep: true}))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"state", "deep", "started_at", "finished_at", "total", "done", "bytes_per_second",
			"matches", "mismatches", "primary_only", "safety_only", "missing", "errors", "details"} {
			if _, ok := m[k]; !ok {
				t.Errorf("report JSON has no %q: %s", k, b)
			}
		}
		if m["state"] != "done" || m["deep"] != true || m["total"] != float64(total) || m["missing"] != float64(p.count(kMissing)) {
			t.Errorf("report JSON values: %s", b)
		}
		details, _ := m["details"].([]any)
		if len(details) == 0 {
			t.Fatalf("report JSON details: %v", m["details"])
		}
		for _, d := range details {
			d := d.(map[string]any)
			files, ok := d["files"].([]any)
			if _, ok1 := d["chunk"].(string); !ok1 || d["class"] == nil || !ok || len(files) != 2 {
				t.Errorf("detail JSON %v: want chunk, class and files", d)
			}
		}
	})
}

// An empty source compares nothing and is fully consistent.
func TestScrubEmpty(t *testing.T) {
	r := newRig(t, rigConfig{})
	rep, err := r.m.Run(t.Context(), dual.ScrubOptions{Source: func(context.Context, stores.ID, int) ([]dual.ChunkInfo, error) {
		return nil, nil
	}})
	if err != nil || rep.State != "done" || rep.Done != 0 || rep.Details == nil {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	if rep.ConsistencyRate() != 1 || !strings.HasPrefix(rep.Progress(), "compare 100%") {
		t.Errorf("ConsistencyRate %v, Progress %q", rep.ConsistencyRate(), rep.Progress())
	}
	wantStats(t, r.m, map[string]float64{"consistency_rate": 1, "last_compare.total": 0})
	if cr := (dual.Report{State: "running"}).ConsistencyRate(); cr != -1 {
		t.Errorf("ConsistencyRate of a run that compared nothing yet = %v, want -1", cr)
	}
}

func TestScrubOptionsRejected(t *testing.T) {
	r := newRig(t, rigConfig{})
	if _, err := r.m.Run(t.Context(), dual.ScrubOptions{}); err == nil {
		t.Error("Run without a Source succeeded")
	}
	if _, err := r.m.StartScrub(dual.ScrubOptions{}); err == nil {
		t.Error("StartScrub without a Source succeeded")
	}
	src := func(context.Context, stores.ID, int) ([]dual.ChunkInfo, error) { return nil, nil }
	if _, err := r.m.Run(t.Context(), dual.ScrubOptions{Source: src, Rate: -1}); err == nil {
		t.Error("Run with a negative rate succeeded")
	}
	// A rejected run leaves the manager free.
	if _, err := r.m.Run(t.Context(), dual.ScrubOptions{Source: src}); err != nil {
		t.Errorf("Run after rejected runs: %v", err)
	}
}

func TestScrubSourceFails(t *testing.T) {
	r := newRig(t, rigConfig{})
	data, id := chunk(3100, 100)
	r.put(t, data)
	boom := errors.New("index unreadable")
	calls := 0
	rep, err := r.m.Run(t.Context(), dual.ScrubOptions{Source: func(context.Context, stores.ID, int) ([]dual.ChunkInfo, error) {
		calls++
		if calls > 1 {
			return nil, boom
		}
		return []dual.ChunkInfo{{ID: id, Size: 100}}, nil
	}})
	if !errors.Is(err, boom) || rep.State != "failed" || !strings.Contains(rep.Error, boom.Error()) || rep.Matches != 1 {
		t.Fatalf("Run = %+v, %v; want state failed with the source's error", rep, err)
	}
	if r.m.LastCompare() != nil {
		t.Error("a failed run became the last comparison")
	}
}

// throttled returns a population of n chunks of about size bytes, all
// matching, and options whose rate makes a deep run last long.
func throttled(t *testing.T, r *rig, n, size int) *pop {
	p := newPop(r, 4000)
	p.add(t, kMatch, n, size)
	p.finish()
	return p
}

// TestScrubStop stops a background run part way: state stopped, progress
// reported, and the last comparison left alone.
func TestScrubStop(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	p := throttled(t, r, 60, 4000)
	// About 8 KiB per chunk at 64 KiB/s: 8 chunks a second, 7s in all.
	s, err := r.m.StartScrub(p.options(dual.ScrubOptions{Deep: true, Rate: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "progress", func() bool { return s.Report().Done >= 2 })
	mid := s.Report()
	if mid.State != "running" || !s.Running() || mid.Total != 60 || mid.TotalBytes == 0 || mid.FinishedAt != "" {
		t.Errorf("mid-run report %+v", mid)
	}
	if !strings.HasPrefix(mid.Progress(), "compare deep ") || !strings.Contains(mid.Progress(), "/60 chunks") {
		t.Errorf("Progress() = %q", mid.Progress())
	}
	// One action at a time.
	if _, err := r.m.StartScrub(p.options(dual.ScrubOptions{})); !errors.Is(err, dual.ErrBusy) {
		t.Errorf("second StartScrub = %v, want ErrBusy", err)
	}
	if _, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{})); !errors.Is(err, dual.ErrBusy) {
		t.Errorf("Run during a scrub = %v, want ErrBusy", err)
	}
	s.Stop()
	rep := s.Wait()
	if s.Running() {
		t.Error("Running() after Wait")
	}
	if rep.State != "stopped" || rep.Done == 0 || rep.Done >= 60 || rep.FinishedAt == "" || rep.Matches != rep.Done {
		t.Fatalf("report after Stop: state %q done %d matches %d finished %q", rep.State, rep.Done, rep.Matches, rep.FinishedAt)
	}
	if rep.Errors != 0 {
		t.Errorf("stopping counted %d errors", rep.Errors)
	}
	if r.m.LastCompare() != nil || flatStats(t, r.m)["consistency_rate"] != nil {
		t.Error("a stopped run became the last comparison")
	}
	// The manager is free again.
	s2, err := r.m.StartScrub(p.options(dual.ScrubOptions{}))
	if err != nil {
		t.Fatalf("StartScrub after the stop: %v", err)
	}
	if rep := s2.Wait(); rep.State != "done" || rep.Matches != 60 {
		t.Fatalf("shallow run: %+v", rep)
	}
	wantStats(t, r.m, map[string]float64{"consistency_rate": 1, "last_compare.matches": 60})
}

// Cancelling Run's context stops it the same way.
func TestScrubRunCancelled(t *testing.T) {
	r := newRig(t, rigConfig{})
	p := throttled(t, r, 30, 4000)
	ctx, cancel := context.WithCancel(t.Context())
	opts := p.options(dual.ScrubOptions{Deep: true, Rate: 64 << 10})
	var seen atomic.Int64
	opts.FilesOf = nil
	src := opts.Source
	opts.Source = func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		if seen.Add(1) == 1 {
			time.AfterFunc(100*time.Millisecond, cancel)
		}
		return src(ctx, after, limit)
	}
	rep, err := r.m.Run(ctx, opts)
	if err != nil || rep.State != "stopped" || rep.Done >= 30 {
		t.Fatalf("Run = state %q done %d, %v; want stopped part way", rep.State, rep.Done, err)
	}
}

// Close stops a background scrub.
func TestScrubStoppedByClose(t *testing.T) {
	r := newRig(t, rigConfig{})
	p := throttled(t, r, 30, 4000)
	s, err := r.m.StartScrub(p.options(dual.ScrubOptions{Deep: true, Rate: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "progress", func() bool { return s.Report().Done >= 1 })
	if err := r.m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s.Running() {
		t.Fatal("the scrub runs on after Close")
	}
	if rep := s.Report(); rep.State != "stopped" {
		t.Fatalf("state after Close = %q", rep.State)
	}
}

// TestScrubRate checks the throttle: 1 MiB of chunks, both copies read, at
// 4 MiB/s cannot take less than half a second.
func TestScrubRate(t *testing.T) {
	r := newRig(t, rigConfig{})
	p := newPop(r, 5000)
	for range 16 {
		p.seed++
		data, _ := chunk(p.seed, 64<<10)
		id := r.put(t, data)
		p.kind[id] = kMatch
		p.infos = append(p.infos, dual.ChunkInfo{ID: id, Size: int64(len(data))})
	}
	p.finish()
	const rate = 4 << 20
	minimum := time.Duration(float64(2*(1<<20)) / rate * float64(time.Second)) // 500ms
	start := time.Now()
	rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Deep: true, Rate: rate, Concurrency: 4}))
	el := time.Since(start)
	if err != nil || rep.Matches != 16 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	if el < minimum*9/10 {
		t.Errorf("a deep run of 1 MiB at 4 MiB/s took %s, want at least %s", el, minimum)
	}
	if rep.BytesPerSecond > 1.1*rate/2 {
		t.Errorf("bytes_per_second %.0f above the rate (chunk bytes, each read twice)", rep.BytesPerSecond)
	}
	// Progress fields of a finished run.
	if rep.Done != rep.Total || rep.DoneBytes != 1<<20 || rep.TotalBytes != 1<<20 || rep.ElapsedSeconds <= 0 ||
		rep.BytesPerSecond <= 0 || rep.ChunksPerSecond <= 0 {
		t.Errorf("progress fields: %+v", rep)
	}
	for _, ts := range []string{string(rep.StartedAt), string(rep.FinishedAt)} {
		if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		}
	}
	if !strings.HasPrefix(rep.Progress(), "compare deep 100% (16/16 chunks") {
		t.Errorf("Progress() = %q", rep.Progress())
	}
	// Shallow runs read no data and are not throttled.
	start = time.Now()
	if _, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Rate: 1})); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("a shallow run took %s under a 1 B/s rate", el)
	}
}

// TestScrubConcurrency checks that no more chunks than Concurrency are
// compared at once.
func TestScrubConcurrency(t *testing.T) {
	g := newGauge(nil)
	r := newRig(t, rigConfig{wrapP: func(s stores.Store) stores.Store { g.Store = s; return g }})
	p := throttled(t, r, 24, 500)
	r.p.Set(stores.OpGet, stores.Rule{Delay: 15 * time.Millisecond})
	const conc = 3
	rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Deep: true, Concurrency: conc}))
	if err != nil || rep.Matches != 24 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	if got := g.maxGets.Load(); got > conc || got < 2 {
		t.Errorf("at most %d reads of the primary at once, want 2..%d", got, conc)
	}
	wantStats(t, r.m, map[string]float64{"tiers.primary.reads.ok": 24, "tiers.safety.reads.ok": 24})
}

// TestScrubRepair repairs a population: the pending backfill is drained
// first, every difference with a good copy is repaired, chunks without one
// are reported unrecoverable and left alone, and a deep comparison
// afterwards finds only those.
func TestScrubRepair(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	p := newPop(r, 6000)
	p.add(t, kPending, 10, 1500)
	p.add(t, kMatch, 5, 1500)
	p.add(t, kByteMismatch, 3, 1500)
	p.add(t, kPrimaryBad, 2, 1500)
	p.add(t, kPrimaryOnly, 2, 1500)
	p.add(t, kSafetyOnly, 2, 1500)
	p.add(t, kMissing, 2, 1500)
	p.add(t, kBothBad, 1, 1500)
	p.finish()
	total := int64(len(p.infos))
	wantStats(t, r.m, map[string]float64{"pending_backfill": 10, "one_sided_writes": 10})
	var bothBad stores.ID
	for id, k := range p.kind {
		if k == kBothBad {
			bothBad = id
		}
	}
	pBefore, sBefore := onDisk(t, r.pLocal, bothBad), onDisk(t, r.sLocal, bothBad)

	rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Repair: true, Concurrency: 4, BatchSize: 5}))
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	if rep.Action != "repair" || !rep.Deep || rep.State != "done" || rep.Done != total {
		t.Errorf("report action %q deep %v state %q done %d", rep.Action, rep.Deep, rep.State, rep.Done)
	}
	if rep.Backfilled != 10 {
		t.Errorf("backfilled %d, want the 10 pending chunks", rep.Backfilled)
	}
	// The backfilled chunks match by the time they are compared.
	checkCounts(t, rep, map[dual.Class]int64{
		dual.ClassMatch: 15, dual.ClassMismatch: 3 + 2, dual.ClassPrimaryOnly: 2,
		dual.ClassSafetyOnly: 2, dual.ClassMissing: 2 + 1, // no good copy of both_bad: missing
	})
	if rep.Repaired != 3+2+2+2 || rep.Unrecoverable != 2+1 {
		t.Errorf("repaired %d, unrecoverable %d; want 9, 3", rep.Repaired, rep.Unrecoverable)
	}
	for _, d := range rep.Details {
		id, _ := stores.ParseID(d.Chunk)
		k := p.kind[id]
		unrecoverable := k == kMissing || k == kBothBad
		if d.Repaired == unrecoverable || (d.Error != "") != unrecoverable {
			t.Errorf("detail %s (%s): repaired %v, error %q", d.Chunk, k, d.Repaired, d.Error)
		}
	}
	if !bytes.Equal(onDisk(t, r.pLocal, bothBad), pBefore) || !bytes.Equal(onDisk(t, r.sLocal, bothBad), sBefore) {
		t.Error("the repair wrote over a chunk with no good copy")
	}
	// A finished repair is the latest knowledge: all consistent but the
	// unrecoverable.
	wantStats(t, r.m, map[string]float64{
		"pending_backfill": 0, "backfilled": 10,
		"last_compare.matches": float64(total - 3), "consistency_rate": float64(total-3) / float64(total),
	})

	after, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Deep: true}))
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, after, map[dual.Class]int64{dual.ClassMatch: total - 3, dual.ClassMissing: 3})
	for id, k := range p.kind {
		if k == kMissing || k == kBothBad {
			continue
		}
		if !holds(t, r.p, id, p.data[id]) || !holds(t, r.s, id, p.data[id]) {
			t.Errorf("%s (%s): a tier lacks the good copy after the repair", id, k)
		}
	}
}

// A repair whose written copy does not read back verified, or that cannot
// write at all, repairs nothing and says why.
func TestRepairWriteFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		rule stores.Rule
		want string
	}{
		{"store corrupts the copy", stores.Rule{Corrupt: true}, "does not verify"},
		{"store down", stores.Rule{}, "write into safety"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigConfig{local: true})
			p := newPop(r, 2200)
			p.add(t, kPrimaryOnly, 1, 3000)
			p.finish()
			c := p.infos[0]
			r.s.Set(stores.OpPut, tt.rule)
			v, repaired, err := r.m.RepairChunk(t.Context(), c)
			if v.Class != dual.ClassPrimaryOnly || repaired || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RepairChunk = %s, %v, %v; want primary_only, not repaired, an error with %q", v.Class, repaired, err, tt.want)
			}
			r.s.Clear()
			if v := r.m.CompareChunk(t.Context(), c, true); v.Class == dual.ClassMatch {
				t.Fatal("a failed repair left a matching pair behind")
			}
			// In a repair run the chunk is reported, not counted repaired.
			rep, err := r.m.Run(t.Context(), p.options(dual.ScrubOptions{Repair: true}))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Repaired != 1 {
				t.Fatalf("repair run after the store recovered: repaired %d, want 1", rep.Repaired)
			}
			r.s.Set(stores.OpPut, tt.rule)
			if err := r.sLocal.Delete(t.Context(), c.ID); err != nil {
				t.Fatal(err)
			}
			rep, err = r.m.Run(t.Context(), p.options(dual.ScrubOptions{Repair: true}))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Repaired != 0 || len(rep.Details) != 1 || rep.Details[0].Repaired || rep.Details[0].Error == "" {
				t.Fatalf("repair run with the store failing: repaired %d, details %+v", rep.Repaired, rep.Details)
			}
		})
	}
}

// TestReportTimesAlwaysThere: started_at and finished_at are in every
// compare document, null when there is no such time (the document is a
// contract: fields are never dropped), and read back.
func TestReportTimesAlwaysThere(t *testing.T) {
	b, err := json.Marshal(dual.Report{State: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"started_at":null`) || !strings.Contains(string(b), `"finished_at":null`) {
		t.Errorf("an idle report: %s, want started_at and finished_at null", b)
	}
	in := dual.Report{State: "done", StartedAt: "2026-12-02T09:00:00Z", FinishedAt: "2026-12-02T09:01:00Z"}
	b, err = json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out dual.Report
	if err := json.Unmarshal(b, &out); err != nil || out.StartedAt != in.StartedAt || out.FinishedAt != in.FinishedAt {
		t.Errorf("round trip of %s: %+v, %v", b, out, err)
	}
	if err := json.Unmarshal([]byte(`{"started_at":null,"finished_at":null}`), &out); err != nil || out.StartedAt != "" || out.FinishedAt != "" {
		t.Errorf("nulls: %+v, %v", out, err)
	}
}

// blockingRecord is a CompareRecord whose save waits until released.
type blockingRecord struct {
	saving  chan struct{} // closed when the first save begins
	once    sync.Once
	release chan struct{}
	saved   atomic.Pointer[[]byte] // the first save's report
}

func (b *blockingRecord) SaveLastCompare(ctx context.Context, report []byte) error {
	first := false
	b.once.Do(func() { first = true; close(b.saving) })
	if first {
		<-b.release
		b.saved.Store(&report)
	}
	return nil
}

func (b *blockingRecord) LastCompare(context.Context) ([]byte, error) { return nil, nil }

// TestScrubRecordedBeforeDone: a finished comparison is saved to its
// record before its report says "done"; until then the run still holds
// the manager, and once the report says "done" the next run starts
// (`compare --wait && repair` never meets EBUSY). The saved report is the
// final one.
func TestScrubRecordedBeforeDone(t *testing.T) {
	r := newRig(t, rigConfig{})
	p := throttled(t, r, 10, 4000)
	rec := &blockingRecord{saving: make(chan struct{}), release: make(chan struct{})}
	r.m.RecordCompares(t.Context(), rec)
	s, err := r.m.StartScrub(p.options(dual.ScrubOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	<-rec.saving
	if rep := s.Report(); rep.State != "running" || !s.Running() || rep.FinishedAt != "" {
		t.Errorf("while the report is being saved: state %q, running %v, finished %q; want still running", rep.State, s.Running(), rep.FinishedAt)
	}
	if _, err := r.m.StartScrub(p.options(dual.ScrubOptions{})); !errors.Is(err, dual.ErrBusy) {
		t.Errorf("StartScrub while the report is being saved = %v, want ErrBusy", err)
	}
	close(rec.release)
	waitFor(t, 10*time.Second, "the report saying done", func() bool { return s.Report().State == "done" })
	s2, err := r.m.StartScrub(p.options(dual.ScrubOptions{}))
	if err != nil {
		t.Fatalf("StartScrub once the report says done: %v", err)
	}
	s2.Wait()
	var saved dual.Report
	if b := rec.saved.Load(); b == nil || json.Unmarshal(*b, &saved) != nil || saved.State != "done" || saved.Matches != 10 || saved.FinishedAt == "" {
		t.Errorf("the saved report: %+v", saved)
	}
}

// memRecord is a CompareRecord in memory.
type memRecord struct{ b atomic.Pointer[[]byte] }

func (m *memRecord) SaveLastCompare(_ context.Context, b []byte) error { m.b.Store(&b); return nil }
func (m *memRecord) LastCompare(context.Context) ([]byte, error) {
	if b := m.b.Load(); b != nil {
		return *b, nil
	}
	return nil, nil
}

// TestLastCompareRecorded: a finished comparison is saved with at most
// 1000 details (the report in memory keeps them all), and a manager that
// opens the record has it as its last comparison; a stopped run is not
// saved.
func TestLastCompareRecorded(t *testing.T) {
	r := newRig(t, rigConfig{local: true})
	p := newPop(r, 7100)
	p.add(t, kMissing, 1005, 64)
	p.finish()
	rec := &memRecord{}
	r.m.RecordCompares(t.Context(), rec)
	s, err := r.m.StartScrub(p.options(dual.ScrubOptions{MaxDetails: 2000}))
	if err != nil {
		t.Fatal(err)
	}
	if rep := s.Wait(); rep.Missing != 1005 || len(rep.Details) != 1005 {
		t.Fatalf("the run: missing %d, %d details", rep.Missing, len(rep.Details))
	}
	var saved dual.Report
	if b := rec.b.Load(); b == nil || json.Unmarshal(*b, &saved) != nil {
		t.Fatal("nothing saved")
	}
	if saved.Missing != 1005 || len(saved.Details) != 1000 || !saved.DetailsTruncated {
		t.Errorf("saved: missing %d, %d details, truncated %v; want 1005, 1000, true", saved.Missing, len(saved.Details), saved.DetailsTruncated)
	}
	if lc := r.m.LastCompare(); lc == nil || len(lc.Details) != 1005 || lc.DetailsTruncated {
		t.Errorf("in memory: %v", lc != nil && len(lc.Details) == 1005 && !lc.DetailsTruncated)
	}

	r2 := newRig(t, rigConfig{local: true})
	r2.m.RecordCompares(t.Context(), rec)
	if lc := r2.m.LastCompare(); lc == nil || lc.Missing != 1005 || lc.State != "done" {
		t.Errorf("a manager opening the record: %+v", lc)
	}
	bad := &memRecord{}
	_ = bad.SaveLastCompare(t.Context(), []byte("{not json"))
	r3 := newRig(t, rigConfig{local: true})
	r3.m.RecordCompares(t.Context(), bad)
	if lc := r3.m.LastCompare(); lc != nil {
		t.Errorf("a record that does not decode gave %+v", lc)
	}
}
