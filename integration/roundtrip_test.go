package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/chunker"
)

// expectedCuts returns the chunk sizes the chunker gives a prefix of
// length n of a stream whose chunk boundaries (cumulative ends) are cuts:
// a cut depends only on the bytes before it, so the prefix keeps every cut
// at or before n and ends with the rest.
func expectedCuts(cuts []int, n int) []int {
	var sizes []int
	prev := 0
	for _, c := range cuts {
		if c > n {
			break
		}
		sizes = append(sizes, c-prev)
		prev = c
	}
	if n > prev {
		sizes = append(sizes, n-prev)
	}
	return sizes
}

func refSizes(refs []ChunkRef) []int {
	out := make([]int, len(refs))
	for i, r := range refs {
		out[i] = r.Size
	}
	return out
}

// TestRoundTripSizes writes files of 0 and 1 bytes, MinSize and MaxSize
// ±1, and ±1 around real chunk boundaries, and checks the bytes read back
// and the exact chunks each tier holds for them.
func TestRoundTripSizes(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	p := chunker.DefaultParams()
	minSize, maxSize := int(p.MinSize), int(p.MaxSize)

	// A random stream longer than twice MaxSize (so it has at least three
	// chunks): its boundaries on disk are the real cut points of this
	// filesystem's chunker (its polynomial is random).
	base := randBytes(1, 2*maxSize+(1<<20)+777)
	writeFile(t, filepath.Join(src, "base"), base)
	runTool(t, "cp", filepath.Join(src, "base"), m.Path("base"))
	cmpFiles(t, filepath.Join(src, "base"), m.Path("base"))
	baseRefs := m.FileChunks(primary, base)
	if len(baseRefs) < 3 {
		t.Fatalf("a %d-byte random file has %d chunks; want >= 3 with MinSize %d, AvgSize %d", len(base), len(baseRefs), p.MinSize, p.AvgSize)
	}
	var cuts []int
	for _, r := range baseRefs {
		if r.Size > maxSize || (r.Size < minSize && r.Off+r.Size != len(base)) {
			t.Errorf("chunk at %d has %d bytes, outside [MinSize %d, MaxSize %d]", r.Off, r.Size, minSize, maxSize)
		}
		cuts = append(cuts, r.Off+r.Size)
	}
	t.Logf("base chunks: %v", refSizes(baseRefs))
	c1, c2 := cuts[0], cuts[1]

	cases := []struct {
		name string
		size int
	}{
		{"empty", 0}, {"one", 1},
		{"min-1", minSize - 1}, {"min", minSize}, {"min+1", minSize + 1},
		{"cut1-1", c1 - 1}, {"cut1", c1}, {"cut1+1", c1 + 1},
		{"cut2-1", c2 - 1}, {"cut2", c2}, {"cut2+1", c2 + 1},
		{"max-1", maxSize - 1}, {"max", maxSize}, {"max+1", maxSize + 1},
	}
	if err := os.Mkdir(m.Path("sizes"), 0o755); err != nil {
		t.Fatal(err)
	}
	logical := int64(len(base))
	for _, c := range cases {
		sp := filepath.Join(src, c.name)
		writeFile(t, sp, base[:c.size])
		runTool(t, "cp", sp, m.Path("sizes", c.name))
		logical += int64(c.size)
	}
	check := func(when string) {
		t.Helper()
		for _, c := range cases {
			cmpFiles(t, filepath.Join(src, c.name), m.Path("sizes", c.name))
			st, err := os.Stat(m.Path("sizes", c.name))
			if err != nil || st.Size() != int64(c.size) {
				t.Errorf("%s: %s: stat size %v (%v), want %d", when, c.name, st.Size(), err, c.size)
			}
			want := expectedCuts(cuts, c.size)
			for _, tier := range tiers {
				refs := m.FileChunks(tier, base[:c.size])
				if got := refSizes(refs); !slices.Equal(got, want) {
					t.Errorf("%s: %s (%d bytes): %s chunk sizes %v, want %v", when, c.name, c.size, tier, got, want)
				}
				// Whole chunks of the base are shared, not stored again.
				for i, r := range refs {
					if i < len(baseRefs) && r.Size == baseRefs[i].Size && r.ID != baseRefs[i].ID {
						t.Errorf("%s: %s: chunk %d is %s, the base's is %s", when, c.name, i, r.ID, baseRefs[i].ID)
					}
				}
			}
		}
		st := m.Stats()
		if st.Files != int64(len(cases)+1) || st.LogicalBytes != logical {
			t.Errorf("%s: stats files %d logical_bytes %d, want %d and %d", when, st.Files, st.LogicalBytes, len(cases)+1, logical)
		}
		m.checkTiersAgree()
		m.checkChunkIDs(primary)
		m.checkChunkIDs(safety)
	}
	check("after writing")
	m.Remount()
	check("after remount")
}

// TestRoundTripLarge copies a 100 MiB random file in and compares it out,
// before and after a remount.
func TestRoundTripLarge(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	data := randBytes(2, 100<<20)
	sp := filepath.Join(src, "big")
	writeFile(t, sp, data)
	runTool(t, "cp", sp, m.Path("big"))
	cmpFiles(t, sp, m.Path("big"))
	for _, tier := range tiers {
		refs := m.FileChunks(tier, data)
		t.Logf("%s: %d chunks", tier, len(refs))
	}
	n := m.checkTiersAgree()
	st := m.Stats()
	if st.Files != 1 || st.LogicalBytes != int64(len(data)) || st.UniqueBytes != int64(len(data)) {
		t.Errorf("stats files %d logical_bytes %d unique_bytes %d, want 1, %d, %d", st.Files, st.LogicalBytes, st.UniqueBytes, len(data), len(data))
	}
	for _, tier := range tiers {
		if w := st.Tiers[tier].Writes; w.OK != int64(n) || w.Bytes != int64(len(data)) || w.Errors != 0 {
			t.Errorf("stats %s writes %+v, want ok %d, bytes %d, no errors", tier, w, n, len(data))
		}
	}
	m.Remount()
	cmpFiles(t, sp, m.Path("big"))
}

// TestRoundTripManySmall copies a tree of 2000 small files with cp -r and
// compares it with diff -r; every non-empty file is one chunk in both
// tiers.
func TestRoundTripManySmall(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := filepath.Join(t.TempDir(), "tree")
	wantIDs := map[string]bool{}
	var logical, unique int64
	// One flat directory of 1100 entries (more than one readdir page of
	// the filesystem, 1024) and 9 with two levels of 50.
	var paths []string
	for f := range 1100 {
		paths = append(paths, filepath.Join("flat", fmt.Sprintf("f%04d", f)))
	}
	for d := range 9 {
		for e := range 2 {
			for f := range 50 {
				paths = append(paths, filepath.Join(fmt.Sprintf("d%02d", d), fmt.Sprintf("e%d", e), fmt.Sprintf("f%03d", f)))
			}
		}
	}
	for n, rel := range paths {
		seed := uint64(1000 + n)
		size := int(randBytes(seed, 2)[0])<<5 | int(randBytes(seed, 2)[1])&31 // 0..8191
		if n%97 == 0 {
			size = 0
		}
		data := randBytes(seed, size)
		if n%50 == 1 {
			data = randBytes(7, 3000) // duplicates: one chunk for all
		}
		writeFile(t, filepath.Join(src, rel), data)
		logical += int64(len(data))
		if len(data) > 0 {
			sum := blake3.Sum256(data)
			id := hex.EncodeToString(sum[:])
			if !wantIDs[id] {
				unique += int64(len(data))
			}
			wantIDs[id] = true
		}
	}
	n := len(paths)
	runTool(t, "cp", "-r", src, m.Path("tree"))
	diffTrees(t, src, m.Path("tree"))
	check := func(when string) {
		t.Helper()
		for _, tier := range tiers {
			got := m.ChunkFiles(tier)
			if len(got) != len(wantIDs) {
				t.Errorf("%s: %s holds %d chunk files, want %d (one per distinct non-empty file)", when, tier, len(got), len(wantIDs))
			}
			for id := range wantIDs {
				if _, ok := got[id]; !ok {
					t.Errorf("%s: %s lacks chunk %s", when, tier, id)
				}
			}
		}
		m.checkTiersAgree()
		st := m.Stats()
		if st.Files != int64(n) || st.LogicalBytes != logical || st.UniqueBytes != unique || st.UniqueChunks != int64(len(wantIDs)) {
			t.Errorf("%s: stats files %d logical %d unique_bytes %d unique_chunks %d; want %d, %d, %d, %d",
				when, st.Files, st.LogicalBytes, st.UniqueBytes, st.UniqueChunks, n, logical, unique, len(wantIDs))
		}
	}
	check("after cp -r")
	m.Remount()
	diffTrees(t, src, m.Path("tree"))
	check("after remount")
}
