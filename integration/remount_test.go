package integration

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestRemount writes a tree, unmounts, mounts the same data dir on another
// mount point and finds everything bit-exact, metadata included; then a
// file closed before the daemon is killed (-9) survives too.
func TestRemount(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := filepath.Join(t.TempDir(), "tree")
	buildMetaTree(t, src)
	for i := range 50 {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("f%02d", i)), randBytes(uint64(500+i), i*i*97))
	}
	writeFile(t, filepath.Join(src, "many", "large"), randBytes(499, 9<<20+1))
	runTool(t, "cp", "-a", src, m.Path("tree"))
	compareMeta(t, src, m.Path("tree"))
	before := m.Stats()
	chunks := m.ChunkFiles(primary)

	m.Unmount()
	m2 := mount(t, withData(m.Data))
	diffTrees(t, src, m2.Path("tree"))
	compareMeta(t, src, m2.Path("tree"))
	after := m2.Stats()
	if after.Files != before.Files || after.LogicalBytes != before.LogicalBytes || after.UniqueChunks != before.UniqueChunks || after.UniqueBytes != before.UniqueBytes {
		t.Errorf("stats before unmount files %d logical %d chunks %d unique %d; after remount %d %d %d %d",
			before.Files, before.LogicalBytes, before.UniqueChunks, before.UniqueBytes, after.Files, after.LogicalBytes, after.UniqueChunks, after.UniqueBytes)
	}
	if got := m2.ChunkFiles(primary); len(got) != len(chunks) {
		t.Errorf("%d primary chunk files after remount, %d before", len(got), len(chunks))
	}
	m2.checkTiersAgree()

	// close() returned: the data is committed, whatever happens next.
	crash := filepath.Join(t.TempDir(), "crash")
	writeFile(t, crash, randBytes(498, 3<<20+5))
	runTool(t, "cp", crash, m2.Path("crash"))
	m2.Kill()
	m2.start()
	cmpFiles(t, crash, m2.Path("crash"))
	diffTrees(t, src, m2.Path("tree"))
	if st := m2.Stats(); st.Files != before.Files+1 {
		t.Errorf("after kill -9 and remount: stats files %d, want %d", st.Files, before.Files+1)
	}
	m2.checkTiersAgree()
}
