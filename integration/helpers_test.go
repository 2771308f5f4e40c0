package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// Tiers, as named in the data dir and in stats.
const (
	primary = "primary"
	safety  = "safety"
)

var tiers = []string{primary, safety}

// randBytes returns n deterministic pseudo-random bytes for seed; distinct
// seeds never share chunks.
func randBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	copy(key[8:], "dualstore-integration")
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// writeFile writes data to path on plain disk (or anywhere), creating
// parents.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sh runs a shell script with real tools in dir; it fails the test with
// the output if the script fails.
func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: sh -ec %q: %v\n%s", dir, script, err, out)
	}
	return string(out)
}

// runTool runs one command and fails the test with its output on error.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// toolFails runs one command that must fail, and returns its output.
func toolFails(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err == nil {
		t.Errorf("%s %s succeeded, want failure\n%s", name, strings.Join(args, " "), out)
	}
	return string(out)
}

// needTool skips loudly when a tool is missing, and fails in CI (where
// .ci/run installs it).
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if inCI {
			t.Fatalf("CI=true and %s is not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("SKIP: %s is not installed (apt-get install %s); this part of the suite did not run", name, pkg)
	}
}

// cmpFiles compares two files byte for byte with cmp(1).
func cmpFiles(t *testing.T, want, got string) {
	t.Helper()
	if out, err := exec.Command("cmp", want, got).CombinedOutput(); err != nil {
		t.Errorf("cmp %s %s: %v\n%s", want, got, err, out)
	}
}

// diffTrees compares two trees with diff -r (contents, names, symlinks).
func diffTrees(t *testing.T, want, got string) {
	t.Helper()
	if out, err := exec.Command("diff", "-r", "--no-dereference", want, got).CombinedOutput(); err != nil {
		t.Errorf("diff -r %s %s: %v\n%s", want, got, err, truncate(string(out), 4000))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var chunkName = regexp.MustCompile(`^[0-9a-f]{64}\.chunk$`)

// ChunkFiles lists a tier's chunk files on disk: id → path. It checks the
// documented layout <root>/<first 4 hex>/<64 hex id>.chunk (beside temp
// files, the open marker <root>/.open and the index backup in <root>/_meta).
func (m *Mount) ChunkFiles(tier string) map[string]string {
	m.t.Helper()
	root := filepath.Join(m.Data, tier)
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(root, "_meta") {
			return iofs.SkipDir // the index backup's objects, never chunks
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		if p == filepath.Join(root, ".open") {
			return nil // the store's open marker
		}
		if !chunkName.MatchString(d.Name()) {
			m.t.Errorf("unexpected file in the %s store: %s", tier, p)
			return nil
		}
		id := strings.TrimSuffix(d.Name(), ".chunk")
		if filepath.Dir(p) != filepath.Join(root, id[:4]) {
			m.t.Errorf("chunk %s is not in its shard dir %s/%s", p, root, id[:4])
		}
		out[id] = p
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		m.t.Fatalf("listing %s: %v", root, err)
	}
	return out
}

// ChunkPath is where a tier keeps a chunk.
func (m *Mount) ChunkPath(tier, id string) string {
	return filepath.Join(m.Data, tier, id[:4], id+".chunk")
}

// ChunkRef is one chunk of a file as found on disk.
type ChunkRef struct {
	ID   string
	Off  int
	Size int
}

// FileChunks finds, in a tier's chunk files on disk, the chunks that make
// up data in order, and fails the test if the tier cannot reproduce data
// exactly. Chunk files are raw (the default stores do not compress).
func (m *Mount) FileChunks(tier string, data []byte) []ChunkRef {
	m.t.Helper()
	const keyLen = 64
	type cand struct{ id, path string }
	byKey := map[string][]cand{}
	for id, p := range m.ChunkFiles(tier) {
		f, err := os.Open(p)
		if err != nil {
			m.t.Fatal(err)
		}
		buf := make([]byte, keyLen)
		n, _ := f.Read(buf)
		f.Close()
		byKey[string(buf[:n])] = append(byKey[string(buf[:n])], cand{id, p})
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			m.t.Fatal(err)
		}
		return b
	}
	// Depth-first, longest chunk first: several chunks may start with the
	// same bytes (prefixes of one another, as a file's prefixes make).
	var refs []ChunkRef
	var walk func(off int) bool
	walk = func(off int) bool {
		if off == len(data) {
			return true
		}
		var fits []ChunkRef
		for _, c := range byKey[string(data[off:min(len(data), off+keyLen)])] {
			b := read(c.path)
			if len(b) > 0 && off+len(b) <= len(data) && bytes.Equal(b, data[off:off+len(b)]) {
				fits = append(fits, ChunkRef{ID: c.id, Off: off, Size: len(b)})
			}
		}
		sort.Slice(fits, func(i, j int) bool { return fits[i].Size > fits[j].Size })
		for _, r := range fits {
			refs = append(refs, r)
			if walk(off + r.Size) {
				return true
			}
			refs = refs[:len(refs)-1]
		}
		return false
	}
	if !walk(0) {
		m.t.Fatalf("the %s store does not hold the chunks of a %d-byte file", tier, len(data))
	}
	return refs
}

// chunkOK reports whether the chunk file exists, hashes (BLAKE3-256) to
// its id and holds want.
func chunkOK(path, id string, want []byte) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sum := blake3.Sum256(b)
	return hex.EncodeToString(sum[:]) == id && bytes.Equal(b, want)
}

// checkChunkIDs checks that every chunk file of the tier hashes to its
// name.
func (m *Mount) checkChunkIDs(tier string) {
	m.t.Helper()
	for id, p := range m.ChunkFiles(tier) {
		b, err := os.ReadFile(p)
		if err != nil {
			m.t.Fatal(err)
		}
		sum := blake3.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != id {
			m.t.Errorf("%s: content hashes to %s", p, got)
		}
	}
}

// checkTiersAgree checks that both tiers hold the same set of chunk files
// and that stats' unique_chunks is that count.
func (m *Mount) checkTiersAgree() int {
	m.t.Helper()
	p, s := m.ChunkFiles(primary), m.ChunkFiles(safety)
	if len(p) != len(s) {
		m.t.Errorf("primary holds %d chunk files, safety %d", len(p), len(s))
	}
	for id := range p {
		if _, ok := s[id]; !ok {
			m.t.Errorf("chunk %s is in primary only", id)
		}
	}
	for id := range s {
		if _, ok := p[id]; !ok {
			m.t.Errorf("chunk %s is in safety only", id)
		}
	}
	if st := m.Stats(); st.UniqueChunks != int64(len(p)) {
		m.t.Errorf("stats unique_chunks = %d, primary holds %d chunk files, safety %d", st.UniqueChunks, len(p), len(s))
	}
	return len(p)
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
