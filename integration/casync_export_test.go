package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	if o, e, code := CLI(t, "import", blob+".caibx", "--store", store, m.Path("imported")); code != 0 || strings.Contains(e, "in place") {
		t.Fatalf("dualstore import: exit %d\n%s%s", code, o, e)
	}
	cmpFiles(t, blob, m.Path("imported"))
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after import: %s", r.counts())
	}
	// desync wrote the foreign blob into the casync primary: its import
	// references those chunks in place (nothing new in the primary) and
	// puts them into the safety tier.
	// Without --store, a blob whose chunks the tiers lack is refused,
	// naming the option, and leaves nothing.
	if _, e, code := CLI(t, "import", blob+".caibx", m.Path("nostore")); code != 2 || !strings.Contains(e, "give --store") {
		t.Errorf("import without --store of chunks the tiers lack: exit %d, want 2 asking for --store\n%s", code, e)
	}
	if ents, _ := filepath.Glob(m.Path("*nostore*")); len(ents) != 0 {
		t.Errorf("a refused import left %v", ents)
	}
	before := casyncChunks(t, prim)
	// The in-place import needs no store.
	o, e, code := CLI(t, "import", foreign+".caibx", m.Path("adopted"))
	if code != 0 || !strings.Contains(e, "in place") {
		t.Fatalf("import of a blob the primary holds: exit %d, want it referenced in place\n%s%s", code, o, e)
	}
	cmpFiles(t, foreign, m.Path("adopted"))
	if after := casyncChunks(t, prim); len(after) != len(before) {
		t.Errorf("an in-place import changed the primary: %d chunks, were %d", len(after), len(before))
	}
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after the in-place import: %s", r.counts())
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
	_, e, code = CLI(t, "import", blob+".caibx", "--store", store, m.Path("imported2"))
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

// TestCasyncExportOnline exports from a live mount (MNT/PATH): the same
// indexes as offline, with and without --to-store; an unflushed file's
// chunk list is EBUSY until fsync; `.dualstore/chunks/INO` is readable by
// the file's owner and root only; a path outside a mount is refused.
func TestCasyncExportOnline(t *testing.T) {
	t.Parallel()
	desync := desyncBin(t)
	dir := t.TempDir()
	prim := filepath.Join(dir, "primary")
	if err := os.MkdirAll(prim, 0o755); err != nil {
		t.Fatal(err)
	}
	m := mount(t, withArgs("--allow-other"), withConfig(fmt.Sprintf("chunker:\n  hash: sha512-256\nprimary:\n  - path: %s\n    layout: casync\n", prim)))
	permTraversable(t, m.Dir)
	files := map[string][]byte{
		"big":        randBytes(180, 5<<20+11),
		"d/small":    randBytes(181, 1500),
		"d/e/medium": randBytes(182, 900<<10),
	}
	for name, data := range files {
		writeFile(t, m.Path(name), data)
	}
	sparse := m.Path("d/sparse")
	writeFile(t, sparse, files["d/small"])
	if err := os.Truncate(sparse, 3<<20); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3<<20)
	copy(want, files["d/small"])

	// Without --to-store the sparse file cannot go as it is.
	online := filepath.Join(dir, "online")
	if _, e, code := CLI(t, "export", m.Path("d"), "-o", online); code != 2 || !strings.Contains(e, "sparse") || !strings.Contains(e, "--to-store") {
		t.Errorf("online export of a directory with a sparse file: exit %d\n%s", code, e)
	}
	if err := os.Remove(sparse); err != nil {
		t.Fatal(err)
	}
	if o, e, code := CLI(t, "export", m.Path(), "-o", online); code != 0 {
		t.Fatalf("online export: exit %d\n%s%s", code, o, e)
	}
	for name, data := range files {
		got := filepath.Join(dir, "x-"+strings.ReplaceAll(name, "/", "-"))
		if o, err := exec.Command(desync, "extract", "-s", prim, filepath.Join(online, name+".caibx"), got).CombinedOutput(); err != nil {
			t.Errorf("desync extract %s: %v\n%s", name, err, o)
			continue
		}
		cmpBytes(t, name, got, data)
	}
	if _, err := os.Stat(filepath.Join(online, ".dualstore")); !os.IsNotExist(err) {
		t.Errorf("the online export walked into .dualstore: %v", err)
	}

	// --to-store, a single file with a hole, into a store of its own.
	writeFile(t, sparse, files["d/small"])
	if err := os.Truncate(sparse, 3<<20); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(dir, "sparse.caibx")
	if _, e, code := CLI(t, "export", "--to-store", store, sparse, one, "-o", one); code != 2 || !strings.Contains(e, "usage") {
		t.Errorf("export with both -o and an OUT argument: exit %d, want 2 and the usage\n%s", code, e)
	}
	// OUT as the second argument, the form DESIGN.md gives.
	if o, e, code := CLI(t, "export", "--to-store", store, sparse, one); code != 0 {
		t.Fatalf("online export --to-store: exit %d\n%s%s", code, o, e)
	}
	got := filepath.Join(dir, "x-sparse")
	if o, err := exec.Command(desync, "extract", "-s", store, one, got).CombinedOutput(); err != nil {
		t.Fatalf("desync extract sparse: %v\n%s", err, o)
	}
	cmpBytes(t, "sparse", got, want)
	if o, err := exec.Command(desync, "verify", "-s", store).CombinedOutput(); err != nil || len(bytes.TrimSpace(o)) != 0 {
		t.Errorf("desync verify of the exported store: %v\n%s", err, o)
	}

	// Unflushed writes: the chunk list is EBUSY until fsync.
	f, err := os.OpenFile(m.Path("big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("changed"), 1<<20); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	list := m.control(fmt.Sprintf("chunks/%d", st.Ino))
	if _, err := os.ReadFile(list); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("chunk list of a file with unflushed writes: %v, want EBUSY", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(list); err != nil || !bytes.Contains(b, []byte(`"chunks"`)) {
		t.Errorf("chunk list after fsync: %v\n%s", err, b)
	}

	// Only the owner and root read a file's chunk list.
	writeFile(t, m.Path("pub"), []byte("public\n"))
	if err := os.Chmod(m.Path("pub"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(m.Path("pub"), &st); err != nil {
		t.Fatal(err)
	}
	pubList := m.control(fmt.Sprintf("chunks/%d", st.Ino))
	permDenied(t, permNobody, permNobody, "/", "cat "+pubList, syscall.EACCES)
	if err := os.Mkdir(m.Path("tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.Path("tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	permMust(t, permNobody, permNobody, m.Path("tmp"), "echo mine > own")
	if err := syscall.Stat(m.Path("tmp", "own"), &st); err != nil {
		t.Fatal(err)
	}
	if out := permMust(t, permNobody, permNobody, "/", fmt.Sprintf("cat %s", m.control(fmt.Sprintf("chunks/%d", st.Ino)))); !strings.Contains(out, `"chunks"`) {
		t.Errorf("the owner reading its file's chunk list: %q", out)
	}
	if out, err := permAs(t, permNobody, permNobody, "/", "ls "+m.control("chunks")); err != nil || out != "" {
		t.Errorf("listing .dualstore/chunks: %q, %v; want nothing listed", out, err)
	}
	for _, name := range []string{"0", "abc", "01", "99999999"} {
		if _, err := os.Stat(m.control("chunks/" + name)); !os.IsNotExist(err) {
			t.Errorf(".dualstore/chunks/%s: %v, want ENOENT", name, err)
		}
	}

	if _, e, code := CLI(t, "export", dir, "-o", filepath.Join(dir, "nope")); code != 2 || !strings.Contains(e, "not in a dualstore mount") {
		t.Errorf("export of a path outside any mount: exit %d\n%s", code, e)
	}
}

// cmpBytes checks that the file at got holds want.
func cmpBytes(t *testing.T, name, got string, want []byte) {
	t.Helper()
	b, err := os.ReadFile(got)
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("%s: %d bytes, not the file's %d (%v)", name, len(b), len(want), err)
	}
}
