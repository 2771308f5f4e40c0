package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCasyncExportImport: a new filesystem starts over a desync store that
// already holds another blob (the store is shared, not refused); every
// file the mount holds is extracted bit-exact by desync from the primary
// alone and its exported .caibx; desync prune against the full export
// (and the foreign index) removes nothing the mount needs; a blob desync
// made comes in with import; and the mount's gc never removes a chunk
// from the shared store: the foreign blob still extracts afterwards.
func TestCasyncExportImport(t *testing.T) {
	t.Parallel()
	desync := desyncBin(t)
	dir := t.TempDir()
	prim := filepath.Join(dir, "primary")
	foreign := filepath.Join(dir, "foreign")
	writeFile(t, foreign, randBytes(160, 3<<20+5))
	if err := os.MkdirAll(prim, 0o755); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(desync, "make", "-s", prim, foreign+".caibx", foreign).CombinedOutput(); err != nil {
		t.Fatalf("desync make into the store-to-be: %v\n%s", err, o)
	}
	m := mount(t, withConfig(fmt.Sprintf("chunker:\n  hash: sha512-256\nprimary:\n  - path: %s\n    layout: casync\n", prim)))
	src := filepath.Join(dir, "src")
	files := map[string][]byte{
		"big":         randBytes(161, 9<<20+77),
		"a/small":     randBytes(162, 3000),
		"a/b/medium":  randBytes(163, 700<<10),
		"a/b/c/empty": nil,
		"dup-of-big":  nil,
	}
	files["dup-of-big"] = files["big"]
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
		writeFile(t, m.Path(name), data)
	}
	m.Unmount()

	out := filepath.Join(dir, "export")
	if o, e, code := CLI(t, "export", "--config", m.Config, "--data-dir", m.Data, "/", "-o", out); code != 0 {
		t.Fatalf("dualstore export: exit %d\n%s%s", code, o, e)
	}
	var idxs []string
	for name, data := range files {
		idx := filepath.Join(out, name+".caibx")
		idxs = append(idxs, idx)
		if len(data) == 0 {
			// desync v0.9.6 panics extracting any empty index, its own
			// too (IndexSegment.chunks); the empty file's index is
			// checked by reading it back instead.
			if b, err := os.ReadFile(idx); err != nil || len(b) != 104 {
				t.Errorf("index of an empty file: %d bytes, %v; want desync make's 104", len(b), err)
			}
			continue
		}
		got := filepath.Join(dir, "extracted-"+strings.ReplaceAll(name, "/", "-"))
		if o, err := exec.Command(desync, "extract", "-s", prim, idx, got).CombinedOutput(); err != nil {
			t.Errorf("desync extract %s: %v\n%s", name, err, o)
			continue
		}
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("desync extract of %s from the primary alone: %d bytes, not the file (%v)", name, len(b), err)
		}
	}
	// prune with the full export keeps every chunk a file needs.
	if o, err := exec.Command(desync, append([]string{"prune", "-s", prim, "--yes", foreign + ".caibx"}, idxs...)...).CombinedOutput(); err != nil {
		t.Fatalf("desync prune: %v\n%s", err, o)
	}
	if o, e, code := CLI(t, "fsck", "--deep", "--config", m.Config, "--data-dir", m.Data); code != 0 {
		t.Errorf("fsck --deep after desync prune with the full export: exit %d\n%s%s", code, o, e)
	}
	m.start()
	diffTrees(t, src, m.Path())

	// import: a blob desync made in a store of its own.
	store := filepath.Join(dir, "desync-store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "blob")
	writeFile(t, blob, randBytes(164, 5<<20+3))
	if o, err := exec.Command(desync, "make", "-s", store, blob+".caibx", blob).CombinedOutput(); err != nil {
		t.Fatalf("desync make: %v\n%s", err, o)
	}
	if o, e, code := CLI(t, "import", blob+".caibx", "--store", store, m.Path("imported")); code != 0 {
		t.Fatalf("dualstore import: exit %d\n%s%s", code, o, e)
	}
	cmpFiles(t, blob, m.Path("imported"))
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after import: %s", r.counts())
	}
	// A corrupt chunk in the desync store aborts the import, names the
	// chunk and leaves no file.
	cs, _ := filepath.Glob(filepath.Join(store, "*", "*.cacnk"))
	if len(cs) == 0 {
		t.Fatal("desync make wrote no chunk")
	}
	if err := os.WriteFile(cs[0], []byte("not zstd"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, e, code := CLI(t, "import", blob+".caibx", "--store", store, m.Path("imported2"))
	if code == 0 || !strings.Contains(e, strings.TrimSuffix(filepath.Base(cs[0]), ".cacnk")) {
		t.Errorf("import with a corrupt chunk: exit %d\n%s", code, e)
	}
	ents, _ := os.ReadDir(m.Path())
	for _, e := range ents {
		if strings.Contains(e.Name(), "imported2") {
			t.Errorf("a failed import left %s", e.Name())
		}
	}
	// gc after deleting files: nothing leaves the shared store, so the
	// foreign blob and the old export of a deleted file still extract.
	for _, name := range []string{"big", "dup-of-big", "a/b/medium"} {
		if err := os.Remove(m.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	if r := m.Action("gc"); r.State != "done" || r.Removed == 0 {
		t.Errorf("gc after deletes: %+v, want chunks removed from the safety tier", r)
	}
	for _, c := range []struct{ idx, want string }{{foreign + ".caibx", foreign}, {filepath.Join(out, "big.caibx"), filepath.Join(src, "big")}} {
		got := filepath.Join(dir, "after-gc")
		os.Remove(got)
		if o, err := exec.Command(desync, "extract", "-s", prim, c.idx, got).CombinedOutput(); err != nil {
			t.Errorf("desync extract %s after the mount's gc: %v\n%s", c.idx, err, o)
			continue
		}
		cmpFiles(t, c.want, got)
	}
}

// TestCasyncExportToStore: a BLAKE3 filesystem (the default) exports
// files, one with holes, into a desync store of their own with
// --to-store: desync extracts them bit-exact and verifies the store clean.
// Without --to-store the export says why it cannot.
func TestCasyncExportToStore(t *testing.T) {
	t.Parallel()
	desync := desyncBin(t)
	dir := t.TempDir()
	m := mount(t)
	data := randBytes(170, 6<<20+123)
	writeFile(t, m.Path("plain"), data)
	sparse := m.Path("sparse")
	writeFile(t, sparse, data[:1<<20])
	if err := os.Truncate(sparse, 40<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(sparse, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[:3<<20], 40<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := map[string][]byte{"plain": data}
	sw := make([]byte, 43<<20)
	copy(sw, data[:1<<20])
	copy(sw[40<<20:], data[:3<<20])
	want["sparse"] = sw
	m.Unmount()

	if _, e, code := CLI(t, "export", "--data-dir", m.Data, "/plain", "-o", filepath.Join(dir, "x.caibx")); code != 2 || !strings.Contains(e, "--to-store") {
		t.Errorf("export of a BLAKE3 file without --to-store: exit %d\n%s", code, e)
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "export")
	if o, e, code := CLI(t, "export", "--data-dir", m.Data, "--to-store", store, "/", "-o", out); code != 0 {
		t.Fatalf("export --to-store: exit %d\n%s%s", code, o, e)
	}
	for name, w := range want {
		got := filepath.Join(dir, "got-"+name)
		if o, err := exec.Command(desync, "extract", "-s", store, filepath.Join(out, name+".caibx"), got).CombinedOutput(); err != nil {
			t.Fatalf("desync extract %s: %v\n%s", name, err, o)
		}
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(b, w) {
			t.Errorf("%s from the desync store: %d bytes, not the file (%v)", name, len(b), err)
		}
	}
	if o, err := exec.Command(desync, "verify", "-s", store).CombinedOutput(); err != nil || len(bytes.TrimSpace(o)) != 0 {
		t.Errorf("desync verify of the exported store: %v\n%s", err, o)
	}
}
