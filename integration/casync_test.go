package integration

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The tests of the casync layout (stores/README.md): a primary tier desync
// v0.9.6 reads as its own local store. `desync prune` is not run here: it
// needs .caibx indexes of every file to keep (dualstore export), and
// removes every chunk they do not list.

// desyncBin returns the desync binary: DUALSTORE_DESYNC (make test sets
// bin/desync), else bin/desync of the repo, else desync on PATH. Missing,
// the test skips loudly, or fails with CI=true.
func desyncBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DUALSTORE_DESYNC"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			t.Fatalf("DUALSTORE_DESYNC=%s is not a binary (run `make desync`)", p)
		}
		return p
	}
	if p, err := filepath.Abs(filepath.Join("..", "bin", "desync")); err == nil {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("desync"); err == nil {
		return p
	}
	if inCI {
		t.Fatal("CI=true and no desync binary: set DUALSTORE_DESYNC, or run `make desync` (installs bin/desync)")
	}
	t.Skip("SKIP: no desync binary (set DUALSTORE_DESYNC, or run `make desync`); the casync tests did not run")
	return ""
}

// casyncConfig is a config with a casync-layout primary in dir (the safety
// tier is the default, in the data dir).
func casyncConfig(dir string) string {
	return fmt.Sprintf(`chunker:
  hash: sha512-256
index_backup:
  interval: 1s
primary:
  - name: casync
    path: %s
    layout: casync
`, dir)
}

// desyncVerify runs `desync verify -s dir`, which exits 0 even when it
// finds bad chunks (it prints them): clean is exit 0 and no output.
func desyncVerify(t *testing.T, desync, dir string) (clean bool, out string) {
	t.Helper()
	b, err := exec.Command(desync, "verify", "-s", dir).CombinedOutput()
	return err == nil && len(bytes.TrimSpace(b)) == 0, fmt.Sprintf("exit %v, output:\n%s", err, b)
}

var cacnkName = regexp.MustCompile(`^[0-9a-f]{64}\.cacnk$`)

// casyncChunks lists the .cacnk files of a casync store: id → path. Every
// one must be in its shard, a zstd frame, and named by the SHA512/256 of
// what it decodes to (checked here too, apart from desync); nothing but
// shards, _meta and the open marker may be in the root.
func casyncChunks(t *testing.T, dir string) map[string]string {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == "_meta" && d.IsDir():
			return filepath.SkipDir
		case rel == ".", rel == ".open", d.IsDir() && len(rel) == 4, strings.HasPrefix(d.Name(), ".tmp-"):
			return nil
		}
		if !cacnkName.MatchString(d.Name()) || filepath.Dir(rel) != d.Name()[:4] {
			t.Errorf("unexpected file in the casync store: %s", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		plain, err := dec.DecodeAll(b, nil)
		if err != nil {
			t.Errorf("%s is not a zstd frame: %v", rel, err)
			return nil
		}
		id := strings.TrimSuffix(d.Name(), ".cacnk")
		if sum := sha512.Sum512_256(plain); hex.EncodeToString(sum[:]) != id {
			t.Errorf("%s holds bytes whose SHA512/256 is %x", rel, sum)
		}
		out[id] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// casyncTree writes a tree of big and small files below dir.
func casyncTree(t *testing.T, dir string, seed uint64) {
	t.Helper()
	for i := range 3 {
		writeFile(t, filepath.Join(dir, "big", fmt.Sprintf("f%d", i)), randBytes(seed+uint64(i), 3<<20+i*777_777))
	}
	for i := range 40 {
		writeFile(t, filepath.Join(dir, "small", fmt.Sprintf("d%d", i%4), fmt.Sprintf("s%02d", i)), randBytes(seed+100+uint64(i), 1+i*997))
	}
	writeFile(t, filepath.Join(dir, "text"), bytes.Repeat([]byte("compressible casync text\n"), 200_000))
	writeFile(t, filepath.Join(dir, "empty"), nil)
}

// waitBackupCaughtUp waits until the index backup's objects are in the
// primary's _meta and no tier lags: the store holds everything it keeps
// besides chunks, and nothing is being written.
func waitBackupCaughtUp(t *testing.T, m *Mount, primaryDir string) {
	t.Helper()
	if err := waitFor(60*time.Second, func() error {
		var ltx []string
		_ = filepath.WalkDir(filepath.Join(primaryDir, "_meta"), func(p string, d iofs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".ltx") {
				ltx = append(ltx, p)
			}
			return nil
		})
		if len(ltx) == 0 {
			return fmt.Errorf("no index backup object in %s/_meta", primaryDir)
		}
		ib, _ := m.StatsRaw()["index_backup"].(map[string]any)
		ts, _ := ib["tiers"].([]any)
		if len(ts) != 2 {
			return fmt.Errorf("stats index_backup.tiers: %v", ib["tiers"])
		}
		for _, x := range ts {
			tier, _ := x.(map[string]any)
			if tier["lag_seconds"] != 0.0 || tier["behind_objects"] != 0.0 {
				return fmt.Errorf("index backup tier %v lags: %v", tier["name"], tier)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCasyncPrimary: a tree copied into a mount whose primary is a casync
// store is a store desync verifies clean and serves from its chunk
// server, with the marker and the index backup in it, while mounted and
// after.
func TestCasyncPrimary(t *testing.T) {
	desync := desyncBin(t)
	src, casyncDir := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "casync")
	casyncTree(t, src, 1600)
	m := mount(t, withConfig(casyncConfig(casyncDir)))
	runTool(t, "cp", "-a", src+"/.", m.Path())
	diffTrees(t, src, m.Path())
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare: %s", r.counts())
	}

	// Mounted: the marker and the index backup are in the store, and
	// desync takes neither for chunks.
	waitBackupCaughtUp(t, m, casyncDir)
	if _, err := os.Stat(filepath.Join(casyncDir, ".open")); err != nil {
		t.Errorf("open marker while mounted: %v", err)
	}
	if clean, out := desyncVerify(t, desync, casyncDir); !clean {
		t.Errorf("desync verify -s %s while mounted (marker and _meta present): %s", casyncDir, out)
	}
	chunks := casyncChunks(t, casyncDir)
	if st := m.Stats(); int64(len(chunks)) != st.UniqueChunks || len(chunks) < 10 {
		t.Errorf("%d .cacnk files, stats unique_chunks %d", len(chunks), st.UniqueChunks)
	}
	t.Logf("desync verify clean while mounted: %d .cacnk files beside .open and _meta", len(chunks))

	m.Unmount()
	if clean, out := desyncVerify(t, desync, casyncDir); !clean {
		t.Errorf("desync verify -s %s after unmount: %s", casyncDir, out)
	}
	if _, err := os.Stat(filepath.Join(casyncDir, "_meta")); err != nil {
		t.Errorf("the index backup after desync verify: %v", err)
	}

	// desync's chunk server serves the chunks as they are.
	var id string
	for k := range chunks {
		id = k
		break
	}
	b := chunkServerGet(t, desync, casyncDir, "/"+id[:4]+"/"+id+".cacnk")
	want, err := os.ReadFile(chunks[id])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("chunk-server GET of %s: %d bytes, not the chunk file's %d", id, len(b), len(want))
	}

	m.Remount()
	diffTrees(t, src, m.Path())
}

// chunkServerGet starts `desync chunk-server -s dir` on a free port, GETs
// path from it and stops it.
func chunkServerGet(t *testing.T, desync, dir, path string) []byte {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var out bytes.Buffer
	cmd := exec.Command(desync, "chunk-server", "-s", dir, "-l", addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var body []byte
	if err := waitFor(20*time.Second, func() error {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
		}
		return nil
	}); err != nil {
		t.Fatalf("desync chunk-server -s %s: %v\n%s", dir, err, out.String())
	}
	return body
}

// TestCasyncCorruptChunk: bit rot in a .cacnk of the casync primary is
// found by desync verify; reads through the mount still return the right
// bytes (from the safety tier), the damaged chunks are healed, and desync
// verify is clean again: the heal wrote them back in the casync form.
func TestCasyncCorruptChunk(t *testing.T) {
	desync := desyncBin(t)
	src, casyncDir := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "casync")
	data := randBytes(1601, 6<<20)
	writeFile(t, filepath.Join(src, "f"), data)
	m := mount(t, withConfig(casyncConfig(casyncDir)))
	runTool(t, "cp", filepath.Join(src, "f"), m.Path("f"))
	m.Unmount()

	chunks := casyncChunks(t, casyncDir)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks for 6 MiB", len(chunks))
	}
	ids := make([]string, 0, len(chunks))
	for id := range chunks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	bad := ids[:2]
	for _, id := range bad {
		corruptChunk(t, chunks[id])
	}
	clean, out := desyncVerify(t, desync, casyncDir)
	if clean {
		t.Fatalf("desync verify found nothing wrong after two chunks were damaged: %s", out)
	}
	t.Logf("desync verify on the damaged store: %s", out)
	for _, id := range bad {
		if !strings.Contains(out, id) {
			t.Errorf("desync verify does not name damaged chunk %s: %s", id, out)
		}
	}

	m.Remount()
	cmpFiles(t, filepath.Join(src, "f"), m.Path("f"))
	if err := waitFor(20*time.Second, func() error {
		if st := m.Stats(); st.Fallbacks < int64(len(bad)) || st.SelfHeals < int64(len(bad)) {
			return fmt.Errorf("fallbacks %d, self_heals %d, want %d each", st.Fallbacks, st.SelfHeals, len(bad))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	st := m.Stats()
	t.Logf("after the read: fallbacks %d, self_heals %d, primary checksum errors %d", st.Fallbacks, st.SelfHeals, st.Tiers[primary].Reads.ChecksumErrors)
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after the heal: %s", r.counts())
	}
	m.Unmount()
	if clean, out := desyncVerify(t, desync, casyncDir); !clean {
		t.Errorf("desync verify after the heal: %s", out)
	}
	casyncChunks(t, casyncDir)
}

// TestCasyncRefusesBlake3: a casync store with chunker.hash blake3 is
// refused at mount with one line naming the store and the key, and
// nothing is created.
func TestCasyncRefusesBlake3(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	mp, data, casyncDir := filepath.Join(dir, "mnt"), filepath.Join(dir, "data"), filepath.Join(dir, "casync")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, strings.Replace(casyncConfig(casyncDir), "sha512-256", "blake3", 1))
	mountMustFail(t, 2, mp, []string{`primary[0] (store "casync")`, "chunker.hash: sha512-256", "blake3"},
		"mount", "--data-dir", data, "--config", cfg, mp)
	mustNotExist(t, data)
	mustNotExist(t, casyncDir)
}

// TestCasyncRefusesExistingBlake3: a filesystem created with blake3 (the
// default) cannot be mounted with a casync store added to its config: its
// index header fixes the hash, and the refusal names the store.
func TestCasyncRefusesExistingBlake3(t *testing.T) {
	m := mount(t)
	writeFile(t, m.Path("f"), randBytes(1602, 100_000))
	m.Unmount()
	casyncDir := filepath.Join(t.TempDir(), "casync")
	cfg := writeConfig(t, strings.Replace(casyncConfig(casyncDir), "  hash: sha512-256\n", "", 1))
	mountMustFail(t, 2, m.Dir, []string{`primary[0] (store "casync")`, "chunker.hash: sha512-256", "created with chunker.hash blake3"},
		"mount", "--data-dir", m.Data, "--config", cfg, m.Dir)
	mustNotExist(t, casyncDir)
	m.Remount()
	if b, err := os.ReadFile(m.Path("f")); err != nil || !bytes.Equal(b, randBytes(1602, 100_000)) {
		t.Errorf("the file after the refused mount: %d bytes, %v", len(b), err)
	}
}
