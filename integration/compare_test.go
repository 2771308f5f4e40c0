package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// wantDetail is what a comparison must say about one damaged chunk.
type wantDetail struct {
	class string
	file  string
	good  string
}

// checkDetails checks that the report's details are exactly want (chunk
// id → class and file).
func checkDetails(t *testing.T, what string, r Report, want map[string]wantDetail) {
	t.Helper()
	got := map[string]Detail{}
	for _, d := range r.Details {
		if _, dup := got[d.Chunk]; dup {
			t.Errorf("%s: chunk %s reported twice", what, d.Chunk)
		}
		got[d.Chunk] = d
	}
	for id, w := range want {
		d, ok := got[id]
		if !ok {
			t.Errorf("%s: no detail for the %s chunk %s of %s", what, w.class, id, w.file)
			continue
		}
		if d.Class != w.class || !slices.Equal(d.Files, []string{w.file}) {
			t.Errorf("%s: chunk %s: class %q files %q, want %q and [%q]", what, id, d.Class, d.Files, w.class, w.file)
		}
		if w.good != "" && d.Good != w.good {
			t.Errorf("%s: chunk %s: good %q, want %q", what, id, d.Good, w.good)
		}
	}
	for id, d := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: unexpected detail %+v", what, d)
		}
	}
}

// TestCompareAndRepair injects known damage into the stores and checks
// that comparisons report exactly it, with the files affected, and that
// repair fixes everything except the chunk no tier holds.
func TestCompareAndRepair(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	if err := os.Mkdir(m.Path("cmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	refs := map[string][]ChunkRef{}
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("f%d", i)
		data[name] = randBytes(uint64(60+i), (1<<20)+i*(300<<10))
		writeFile(t, filepath.Join(src, name), data[name])
		runTool(t, "cp", filepath.Join(src, name), m.Path("cmp", name))
		refs[name] = m.FileChunks(primary, data[name])
	}
	n := int64(m.checkTiersAgree())

	// Clean: everything matches, and the CLI says so with exit 0.
	if r := m.Compare(true); r.Total != n || r.Done != n || r.Matches != n || r.Differences() != 0 || len(r.Details) != 0 {
		t.Errorf("deep compare of clean tiers: %s, %d details; want %d matches", r.counts(), len(r.Details), n)
	}
	if out, errOut, code := CLI(t, "compare", "--deep", "--wait", m.Dir); code != 0 {
		t.Errorf("dualstore compare --deep --wait of clean tiers: exit %d, want 0\n%s%s", code, out, errOut)
	}
	out, errOut, code := CLI(t, "stats", m.Dir)
	if code != 0 || !strings.Contains(out, "primary-0") || !strings.Contains(out, "safety-0") || !strings.Contains(out, "STORE") {
		t.Errorf("dualstore stats: exit %d, want 0 and a table naming both stores:\n%s%s", code, out, errOut)
	}
	out, errOut, code = CLI(t, "stats", "--json", m.Dir)
	var js Stats
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || js.Files != 6 || js.UniqueChunks != n {
		t.Errorf("dualstore stats --json: exit %d, %v, files %d unique_chunks %d; want 0, JSON, 6, %d\n%s%s", code, err, js.Files, js.UniqueChunks, n, out, errOut)
	}

	// The damage: 2 chunks deleted from primary, 1 from safety, 1 corrupt
	// in primary, 1 deleted from both.
	c1, c2, c3, c4, c5 := refs["f1"][0].ID, refs["f2"][0].ID, refs["f3"][0].ID, refs["f4"][0].ID, refs["f5"][0].ID
	removeChunk(t, m.ChunkPath(primary, c1))
	removeChunk(t, m.ChunkPath(primary, c2))
	removeChunk(t, m.ChunkPath(safety, c3))
	corruptChunk(t, m.ChunkPath(primary, c4))
	removeChunk(t, m.ChunkPath(primary, c5))
	removeChunk(t, m.ChunkPath(safety, c5))
	damage := map[string]wantDetail{
		c1: {"safety_only", "/cmp/f1", "safety"},
		c2: {"safety_only", "/cmp/f2", "safety"},
		c3: {"primary_only", "/cmp/f3", "primary"},
		c4: {"mismatch", "/cmp/f4", "safety"},
		c5: {"missing", "/cmp/f5", ""},
	}

	r := m.Compare(true)
	if r.Total != n || r.Done != n || r.SafetyOnly != 2 || r.PrimaryOnly != 1 || r.Mismatches != 1 || r.Missing != 1 || r.Errors != 0 || r.Matches != n-5 {
		t.Errorf("deep compare: %s; want total %d: safety_only 2, primary_only 1, mismatch 1, missing 1, matches %d", r.counts(), n, n-5)
	}
	checkDetails(t, "deep compare", r, damage)
	st := m.Stats()
	if st.ConsistencyRate == nil || math.Abs(*st.ConsistencyRate-float64(n-5)/float64(n)) > 1e-9 || st.LastCompare == nil {
		t.Errorf("stats after deep compare: consistency_rate %v last_compare %v, want %v", st.ConsistencyRate, st.LastCompare, float64(n-5)/float64(n))
	}

	// Shallow: existence and size. The corrupt copy has the right size.
	r = m.Compare(false)
	if r.Total != n || r.SafetyOnly != 2 || r.PrimaryOnly != 1 || r.Missing != 1 || r.Errors != 0 || r.Mismatches > 1 || r.Matches+r.Mismatches != n-4 {
		t.Errorf("shallow compare: %s; want safety_only 2, primary_only 1, missing 1, the rest match (the corrupt one may)", r.counts())
	}
	shallow := map[string]wantDetail{c1: damage[c1], c2: damage[c2], c3: damage[c3], c5: damage[c5]}
	if r.Mismatches == 1 {
		shallow[c4] = wantDetail{"mismatch", "/cmp/f4", ""}
	}
	checkDetails(t, "shallow compare", r, shallow)

	// A subtree: only that file's chunks.
	r = m.Action("compare deep /cmp/f1")
	if k := int64(len(refs["f1"])); r.State != "done" || r.Total != k || r.Done != k || r.SafetyOnly != 1 || r.Matches != k-1 || r.Differences() != 1 {
		t.Errorf("compare deep /cmp/f1: state %s %s; want total %d, safety_only 1", r.State, r.counts(), k)
	}
	checkDetails(t, "compare deep /cmp/f1", r, map[string]wantDetail{c1: damage[c1]})

	out, errOut, code = CLI(t, "compare", "--deep", "--wait", m.Dir)
	if code != 3 {
		t.Errorf("dualstore compare --deep --wait with differences: exit %d, want 3\n%s%s", code, out, errOut)
	}
	for id := range damage {
		if !strings.Contains(out, id) {
			t.Errorf("dualstore compare --deep --wait does not list chunk %s:\n%s", id, out)
		}
	}

	// Repair: everything but the chunk in neither tier.
	r = m.Action("repair")
	if r.State != "done" || r.Action != "repair" || r.Repaired != 4 || r.Unrecoverable != 1 || r.Errors != 0 || r.Done != n {
		t.Errorf("repair: state %s action %s %s; want done, repaired 4, unrecoverable 1", r.State, r.Action, r.counts())
	}
	checkDetails(t, "repair", r, damage)
	for _, d := range r.Details {
		if d.Repaired != (d.Chunk != c5) {
			t.Errorf("repair: chunk %s (%s) repaired=%v", d.Chunk, d.Class, d.Repaired)
		}
	}
	for _, fix := range []struct {
		tier, file string
		ref        ChunkRef
	}{{primary, "f1", refs["f1"][0]}, {primary, "f2", refs["f2"][0]}, {safety, "f3", refs["f3"][0]}, {primary, "f4", refs["f4"][0]}} {
		if !chunkOK(m.ChunkPath(fix.tier, fix.ref.ID), fix.ref.ID, data[fix.file][:fix.ref.Size]) {
			t.Errorf("after repair, %s does not hold chunk %s of %s correctly", fix.tier, fix.ref.ID, fix.file)
		}
	}
	r = m.Compare(true)
	if r.Matches != n-1 || r.Missing != 1 || r.Differences() != 1 {
		t.Errorf("deep compare after repair: %s; want %d matches and 1 missing", r.counts(), n-1)
	}
	checkDetails(t, "deep compare after repair", r, map[string]wantDetail{c5: damage[c5]})
	out, errOut, code = CLI(t, "repair", m.Dir)
	if code != 3 || !strings.Contains(out+errOut, "unrecoverable") {
		t.Errorf("dualstore repair with a chunk in neither tier: exit %d, want 3 and the word unrecoverable\n%s%s", code, out, errOut)
	}
	for _, f := range []string{"f1", "f2", "f3", "f4", "f6"} {
		cmpFiles(t, filepath.Join(src, f), m.Path("cmp", f))
	}

	// A copy of the wrong size is a mismatch even for a shallow compare.
	c6 := refs["f6"][0]
	if err := os.Truncate(m.ChunkPath(safety, c6.ID), int64(c6.Size/2)); err != nil {
		t.Fatal(err)
	}
	for _, deep := range []bool{false, true} {
		r = m.Compare(deep)
		if r.Mismatches != 1 || r.Missing != 1 || r.Matches != n-2 || r.Differences() != 2 {
			t.Errorf("compare (deep %v) with a truncated safety copy: %s; want 1 mismatch, 1 missing, %d matches", deep, r.counts(), n-2)
		}
		good := ""
		if deep {
			good = "primary"
		}
		checkDetails(t, fmt.Sprintf("compare (deep %v) with a truncated safety copy", deep), r,
			map[string]wantDetail{c5: damage[c5], c6.ID: {"mismatch", "/cmp/f6", good}})
	}
}

// TestComparePathNames: `dualstore compare MNT PATH` online takes any
// path: with a space and a "=" in it, or a top-level directory named
// like the word "deep".
func TestComparePathNames(t *testing.T) {
	t.Parallel()
	m := mount(t)
	writeFile(t, m.Path("my dir", "a=b", "f"), randBytes(2501, 1<<20))
	writeFile(t, m.Path("deep", "g"), randBytes(2502, 1<<20))
	writeFile(t, m.Path("other"), randBytes(2503, 1<<20))
	for _, tc := range []struct {
		args []string
		path string
		deep bool
	}{
		{[]string{"my dir/a=b"}, "/my dir/a=b", false},
		{[]string{"--deep", "/my dir/a=b"}, "/my dir/a=b", true},
		{[]string{"deep"}, "/deep", false},
	} {
		var r map[string]any
		args := append([]string{"compare", "--wait", m.Dir}, tc.args...)
		if code, errOut := maintJSON(t, &r, args...); code != 0 {
			t.Errorf("dualstore %q: exit %d\n%s", args, code, errOut)
			continue
		}
		if r["path"] != tc.path || r["deep"] != tc.deep || r["state"] != "done" || r["total"].(float64) < 1 || r["matches"] != r["total"] {
			t.Errorf("dualstore %q: path %v deep %v state %v total %v matches %v; want %q, %v, done, every chunk of the subtree matching",
				args, r["path"], r["deep"], r["state"], r["total"], r["matches"], tc.path, tc.deep)
		}
	}
}

// TestLastCompareKept: what the last comparison found outlives a
// remount (the stats' last_compare, the health, `.dualstore/compare`,
// also once a background gc has run), and an offline repair's result
// reaches the next mount.
func TestLastCompareKept(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("gc:\n  max_unused: 1%\n  min_unused: 1MiB\n  interval: 1s\n  check_interval: 100ms\n"))
	data := randBytes(2601, 3<<20)
	writeFile(t, m.Path("f"), data)
	refs := m.FileChunks(primary, data)
	m.Unmount()
	removeChunk(t, m.ChunkPath(primary, refs[0].ID))
	m.start()
	if r := m.Compare(false); r.Differences() != 1 {
		t.Fatalf("compare after deleting a primary chunk: %s, want 1 difference", r.counts())
	}

	m.Remount()
	st := m.StatsRaw()
	lc, _ := st["last_compare"].(map[string]any)
	if lc == nil || lc["safety_only"] != float64(1) {
		t.Errorf("after a remount: last_compare %v, want the compare's safety_only 1", lc)
	}
	health, _ := st["health"].(map[string]any)
	if health["state"] != "degraded" || !strings.Contains(fmt.Sprint(health["problems"]), "compare_differences") {
		t.Errorf("after a remount: health %v, want degraded by the compare's differences", health)
	}
	if r := m.Report(); r.Action != "compare" || r.State != "done" || r.Differences() != 1 || len(r.Details) != 1 {
		t.Errorf("after a remount: .dualstore/compare %s %s %s, %d details; want the compare's 1 difference", r.Action, r.State, r.counts(), len(r.Details))
	}
	m.makeGarbage("g", 2602, 3, 1<<20)
	m.waitAutoGC(actionDeadline, "an automatic gc", func(d autoGCDoc) bool { return d.AutoGC.Runs == 1 && d.AutoGC.LastState == "done" })
	if r := m.Report(); r.Action != "compare" || r.Differences() != 1 {
		t.Errorf("after an automatic gc: .dualstore/compare %s %s %s; want the kept compare's 1 difference", r.Action, r.State, r.counts())
	}

	m.Unmount()
	if out, errOut, code := CLI(t, "repair", "--data-dir", m.Data); code != 0 {
		t.Fatalf("offline repair: exit %d\n%s%s", code, out, errOut)
	}
	m.start()
	st = m.StatsRaw()
	lc, _ = st["last_compare"].(map[string]any)
	health, _ = st["health"].(map[string]any)
	if lc == nil || lc["action"] != "repair" || health["state"] != "healthy" {
		t.Errorf("after an offline repair: last_compare %v, health %v; want the repair's, and healthy", lc, health)
	}
}
