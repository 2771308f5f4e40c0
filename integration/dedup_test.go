package integration

import (
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// chunkInodes maps a tier's chunk ids to the inode numbers of their files:
// a chunk rewritten (temp file + rename) gets a new inode.
func (m *Mount) chunkInodes(tier string) map[string]uint64 {
	m.t.Helper()
	out := map[string]uint64{}
	for id, p := range m.ChunkFiles(tier) {
		st, err := os.Stat(p)
		if err != nil {
			m.t.Fatal(err)
		}
		out[id] = st.Sys().(*syscall.Stat_t).Ino
	}
	return out
}

// TestDedup copies the same 20 MiB file under three names: the second and
// third copies add no chunk, rewrite no chunk file, and double then triple
// the dedup ratio.
func TestDedup(t *testing.T) {
	t.Parallel()
	m := mount(t)
	const size = 20 << 20
	sp := filepath.Join(t.TempDir(), "src")
	writeFile(t, sp, randBytes(40, size))

	runTool(t, "cp", sp, m.Path("a"))
	first := m.Stats()
	n := m.checkTiersAgree()
	inodes := map[string]map[string]uint64{}
	for _, tier := range tiers {
		inodes[tier] = m.chunkInodes(tier)
	}
	if first.UniqueBytes != size || first.LogicalBytes != size || math.Abs(first.DedupRatio-1) > 1e-9 {
		t.Errorf("one copy: unique_bytes %d logical_bytes %d dedup_ratio %v, want %d, %d, 1", first.UniqueBytes, first.LogicalBytes, first.DedupRatio, size, size)
	}

	copies := []struct {
		name string
		cp   func(dst string)
	}{
		{"b", func(dst string) { runTool(t, "cp", sp, dst) }},
		// Different write sizes, the same bytes.
		{"c", func(dst string) { sh(t, "/", "dd if="+sp+" of="+dst+" bs=77777 status=none") }},
	}
	for i, c := range copies {
		c.cp(m.Path(c.name))
		cmpFiles(t, sp, m.Path(c.name))
		k := int64(i + 2)
		st := m.Stats()
		if st.UniqueChunks != first.UniqueChunks || st.UniqueBytes != size || st.LogicalBytes != k*size {
			t.Errorf("%d copies: unique_chunks %d unique_bytes %d logical_bytes %d, want %d, %d, %d",
				k, st.UniqueChunks, st.UniqueBytes, st.LogicalBytes, first.UniqueChunks, size, k*size)
		}
		if math.Abs(st.DedupRatio-float64(k)) > 1e-9 {
			t.Errorf("%d copies: dedup_ratio %v, want %d", k, st.DedupRatio, k)
		}
		if got := m.checkTiersAgree(); got != n {
			t.Errorf("%d copies: %d chunk files per tier, want %d as after the first", k, got, n)
		}
		for _, tier := range tiers {
			now := m.chunkInodes(tier)
			for id, ino := range inodes[tier] {
				if now[id] != ino {
					t.Errorf("%d copies: %s chunk %s was rewritten (inode %d → %d)", k, tier, id, ino, now[id])
				}
			}
		}
		t.Logf("%d copies: primary writes %+v", k, st.Tiers[primary].Writes)
	}

	// References are counted: removing copies keeps the chunks until the
	// last name goes.
	// (An unlinked inode is purged once the kernel forgets it, a moment
	// after rm returns: the counts follow then.)
	runTool(t, "rm", m.Path("a"), m.Path("b"))
	m.waitStats(5*time.Second, "the counts after removing two copies", func(st Stats) bool { return st.LogicalBytes == size })
	if st := m.Stats(); st.UniqueChunks != first.UniqueChunks || st.LogicalBytes != size {
		t.Errorf("after removing two copies: unique_chunks %d logical_bytes %d, want %d and %d", st.UniqueChunks, st.LogicalBytes, first.UniqueChunks, size)
	}
	m.Remount()
	cmpFiles(t, sp, m.Path("c"))
	runTool(t, "rm", m.Path("c"))
	m.waitStats(5*time.Second, "the counts after removing every copy", func(st Stats) bool { return st.Files == 0 })
	if st := m.Stats(); st.UniqueChunks != 0 || st.LogicalBytes != 0 || st.Files != 0 {
		t.Errorf("after removing every copy: unique_chunks %d logical_bytes %d files %d, want 0", st.UniqueChunks, st.LogicalBytes, st.Files)
	}
}

// TestPredictedCopies copies a file, then the same bytes again, then an
// edited version: the later copies are cut by prediction (the chunks the
// index knows to come next) rather than by the rolling hash, their chunk
// lists are exactly the ones the rolling hash makes (no new chunk for
// the same bytes; for the edited file, new chunks only around the
// edits), and every byte reads back, also after a remount.
func TestPredictedCopies(t *testing.T) {
	t.Parallel()
	m := mount(t)
	const size = 24 << 20
	dir := t.TempDir()
	orig := randBytes(41, size)
	edited := append([]byte(nil), orig...)
	for _, at := range []int{3 << 20, 11<<20 + 12345, 20 << 20} {
		copy(edited[at:], "an edit in the middle of known data")
	}
	src, srcEdit := filepath.Join(dir, "orig"), filepath.Join(dir, "edited")
	writeFile(t, src, orig)
	writeFile(t, srcEdit, edited)
	predicted := func() float64 {
		fs, _ := m.StatsRaw()["fs"].(map[string]any)
		v, ok := fs["chunks_predicted"].(float64)
		if !ok {
			t.Fatalf("stats has no fs.chunks_predicted: %v", fs)
		}
		return v
	}

	runTool(t, "cp", src, m.Path("first"))
	first := m.Stats()
	if p := predicted(); p != 0 {
		t.Errorf("first copy of new data: %v chunks predicted, want 0", p)
	}
	runTool(t, "cp", src, m.Path("second"))
	second := m.Stats()
	p2 := predicted()
	chunks := first.UniqueChunks
	if p2 < float64(chunks-2) {
		t.Errorf("second copy: %v of %d chunks predicted, want all but the first and last", p2, chunks)
	}
	if second.UniqueChunks != chunks || second.UniqueBytes != first.UniqueBytes {
		t.Errorf("second copy added chunks: %d → %d unique, %d → %d bytes", chunks, second.UniqueChunks, first.UniqueBytes, second.UniqueBytes)
	}

	sh(t, "/", "dd if="+srcEdit+" of="+m.Path("edited")+" bs=65536 status=none")
	third := m.Stats()
	if p := predicted() - p2; p < float64(chunks)/2 {
		t.Errorf("edited copy: %v of about %d chunks predicted", p, chunks)
	}
	// Three edits change a few chunks each (the one edited, perhaps its
	// neighbour): far fewer than a file's worth.
	if added := third.UniqueChunks - chunks; added < 3 || added > 9 {
		t.Errorf("edited copy added %d chunks, want 3 to 9 (three edits)", added)
	}
	for name, want := range map[string]string{"first": src, "second": src, "edited": srcEdit} {
		cmpFiles(t, want, m.Path(name))
	}
	m.checkTiersAgree()
	m.Remount()
	for name, want := range map[string]string{"first": src, "second": src, "edited": srcEdit} {
		cmpFiles(t, want, m.Path(name))
	}
}
