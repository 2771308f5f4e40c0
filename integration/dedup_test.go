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
