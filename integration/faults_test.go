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
	"time"
)

// corruptChunk overwrites bytes in the middle of a chunk file, keeping its
// size, as bit rot would.
func corruptChunk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	off := st.Size() / 2
	b := make([]byte, 16)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x5a
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func removeChunk(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatalf("removing chunk file: %v", err)
	}
}

// waitHealed polls until the tier's chunk files hold the right bytes
// again (self-heal may finish after the read that triggered it).
func (m *Mount) waitHealed(tier string, data []byte, refs []ChunkRef) {
	m.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range refs {
		p := m.ChunkPath(tier, r.ID)
		if err := waitFor(max(0, time.Until(deadline)), func() error {
			if !chunkOK(p, r.ID, data[r.Off:r.Off+r.Size]) {
				return fmt.Errorf("%s does not hold the right bytes", p)
			}
			return nil
		}); err != nil {
			m.t.Errorf("%s chunk %s was not healed: %v", tier, r.ID, err)
		}
	}
}

// TestFaults damages the stores on disk and reads through the mount:
// chunks missing or corrupt in primary are read from safety and healed;
// a chunk missing from both tiers makes reads of its file fail with EIO
// and nothing else.
func TestFaults(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	files := map[string][]byte{
		"deleted":   randBytes(50, 6<<20),
		"corrupt":   randBytes(51, 6<<20+1),
		"lost":      randBytes(52, 4<<20+2),
		"untouched": randBytes(53, 5<<20+3),
	}
	if err := os.Mkdir(m.Path("f"), 0o755); err != nil {
		t.Fatal(err)
	}
	refs := map[string][]ChunkRef{}
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
		runTool(t, "cp", filepath.Join(src, name), m.Path("f", name))
		refs[name] = m.FileChunks(primary, data)
		// Files above MaxSize (4 MiB) have at least 2 chunks.
		if len(refs[name]) < 2 {
			t.Fatalf("%s: %d chunks, want >= 2", name, len(refs[name]))
		}
	}
	// Unmounting drops the kernel's page cache and the daemon's chunk
	// cache: every read below asks the stores.
	m.Unmount()
	last := func(name string) ChunkRef { return refs[name][len(refs[name])-1] }
	deleted := []ChunkRef{refs["deleted"][0], last("deleted")}
	for _, r := range deleted {
		removeChunk(t, m.ChunkPath(primary, r.ID))
	}
	corrupted := []ChunkRef{refs["corrupt"][0], last("corrupt")}
	for _, r := range corrupted {
		corruptChunk(t, m.ChunkPath(primary, r.ID))
	}
	lost := refs["lost"][1]
	removeChunk(t, m.ChunkPath(primary, lost.ID))
	removeChunk(t, m.ChunkPath(safety, lost.ID))
	m.start()

	// Deleted from primary: read from safety, healed into primary.
	cmpFiles(t, filepath.Join(src, "deleted"), m.Path("f", "deleted"))
	st := m.Stats()
	if st.Fallbacks < 2 || st.SelfHeals < 2 {
		t.Errorf("after reading a file with 2 chunks missing from primary: fallbacks %d self_heals %d, want >= 2 each", st.Fallbacks, st.SelfHeals)
	}
	m.waitHealed(primary, files["deleted"], deleted)

	// Corrupt in primary: the checksum catches it, safety serves, primary
	// is healed.
	cmpFiles(t, filepath.Join(src, "corrupt"), m.Path("f", "corrupt"))
	st2 := m.Stats()
	if st2.Fallbacks-st.Fallbacks < 2 || st2.SelfHeals-st.SelfHeals < 2 {
		t.Errorf("after reading a file with 2 corrupt primary chunks: fallbacks %d→%d, self_heals %d→%d, want +2 each at least",
			st.Fallbacks, st2.Fallbacks, st.SelfHeals, st2.SelfHeals)
	}
	if ce := st2.Tiers[primary].Reads.ChecksumErrors; ce < 2 {
		t.Errorf("primary tier checksum_errors %d, want >= 2", ce)
	}
	if s := st2.Tiers[primary].Stores; len(s) != 1 || s[0].Reads.ChecksumErrors < 2 {
		t.Errorf("primary stores %+v, want one store with checksum_errors >= 2", s)
	}
	if ce := st2.Tiers[safety].Reads.ChecksumErrors; ce != 0 {
		t.Errorf("safety tier checksum_errors %d, want 0", ce)
	}
	m.waitHealed(primary, files["corrupt"], corrupted)

	// Missing from both: EIO for cat and for a read of that chunk; the
	// chunk before it still reads, and so do other files.
	cat := exec.Command("cat", m.Path("f", "lost"))
	var stderr bytes.Buffer
	cat.Stdout, cat.Stderr = nil, &stderr
	if err := cat.Run(); err == nil {
		t.Errorf("cat of a file whose chunk is in neither tier succeeded")
	} else if !strings.Contains(stderr.String(), "Input/output error") {
		t.Errorf("cat of a file whose chunk is in neither tier: %v, %q; want an I/O error", err, stderr.String())
	}
	f, err := os.Open(m.Path("f", "lost"))
	if err != nil {
		t.Fatalf("open of a damaged file: %v (open must work, reads fail)", err)
	}
	// The kernel reads whole pages: the page holding the chunk boundary
	// needs the lost chunk too.
	head := make([]byte, refs["lost"][0].Size&^4095)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, files["lost"][:len(head)]) {
		t.Errorf("reading the intact first chunk of the damaged file: %v (equal %v)", err, bytes.Equal(head, files["lost"][:len(head)]))
	}
	if _, err := f.ReadAt(make([]byte, 4096), int64(lost.Off+10)); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading inside the lost chunk: %v, want EIO", err)
	}
	f.Close()
	for _, name := range []string{"untouched", "deleted", "corrupt"} {
		cmpFiles(t, filepath.Join(src, name), m.Path("f", name))
	}
	if _, err := os.Stat(m.ChunkPath(primary, lost.ID)); !os.IsNotExist(err) {
		t.Errorf("a chunk no tier holds reappeared in primary: %v", err)
	}

	// Healed for good: a fresh daemon reads everything from primary.
	m.Remount()
	for _, name := range []string{"untouched", "deleted", "corrupt"} {
		cmpFiles(t, filepath.Join(src, name), m.Path("f", name))
	}
	if st := m.Stats(); st.Fallbacks != 0 || st.Tiers[primary].Reads.ChecksumErrors != 0 {
		t.Errorf("after healing and remounting: fallbacks %d checksum_errors %d, want 0", st.Fallbacks, st.Tiers[primary].Reads.ChecksumErrors)
	}
}

// TestReadOptions checks the read options against damaged stores:
// read_preference safety reads (and heals) the safety tier first,
// fastest still returns only verified bytes, and with fallback disabled a
// chunk missing from the preferred tier is an I/O error, not a silent
// fallback.
func TestReadOptions(t *testing.T) {
	t.Parallel()
	m := mount(t, withArgs("--read-preference", "safety"))
	src := t.TempDir()
	names := []string{"s", "fast", "nofallback"}
	data, refs := map[string][]byte{}, map[string][]ChunkRef{}
	for i, name := range names {
		data[name] = randBytes(uint64(80+i), 5<<20+i)
		writeFile(t, filepath.Join(src, name), data[name])
		runTool(t, "cp", filepath.Join(src, name), m.Path(name))
		refs[name] = m.FileChunks(primary, data[name])
	}
	m.Unmount()
	s0, sLast := refs["s"][0], refs["s"][len(refs["s"])-1]
	corruptChunk(t, m.ChunkPath(safety, s0.ID))
	removeChunk(t, m.ChunkPath(safety, sLast.ID))
	corruptChunk(t, m.ChunkPath(primary, refs["fast"][0].ID))
	nf := refs["nofallback"][0]
	removeChunk(t, m.ChunkPath(primary, nf.ID))
	m.start()

	if st := m.Stats(); st.ReadPreference != "safety" {
		t.Errorf("mounted with --read-preference safety: stats read_preference %q", st.ReadPreference)
	}
	cmpFiles(t, filepath.Join(src, "s"), m.Path("s"))
	st := m.Stats()
	if st.Tiers[safety].Reads.ChecksumErrors < 1 || st.Fallbacks < 2 || st.SelfHeals < 2 || st.Tiers[primary].Reads.ChecksumErrors != 0 {
		t.Errorf("reading with safety preferred, 1 corrupt and 1 missing safety chunk: safety checksum_errors %d, primary %d, fallbacks %d, self_heals %d",
			st.Tiers[safety].Reads.ChecksumErrors, st.Tiers[primary].Reads.ChecksumErrors, st.Fallbacks, st.SelfHeals)
	}
	m.waitHealed(safety, data["s"], []ChunkRef{s0, sLast})

	if err := m.Ctl("read-preference fastest"); err != nil {
		t.Fatal(err)
	}
	cmpFiles(t, filepath.Join(src, "fast"), m.Path("fast"))

	m.args = []string{"--fallback-enabled", "false"}
	m.Remount()
	cat := exec.Command("cat", m.Path("nofallback"))
	if out, err := cat.CombinedOutput(); err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Errorf("cat with a primary chunk missing and fallback disabled: %v, %q; want an I/O error", err, truncate(string(out), 200))
	}
	if st := m.Stats(); st.Fallbacks != 0 || st.SelfHeals != 0 || st.Tiers[safety].Reads.OK != 0 {
		t.Errorf("fallback disabled: fallbacks %d self_heals %d safety reads %d, want 0", st.Fallbacks, st.SelfHeals, st.Tiers[safety].Reads.OK)
	}
	if _, err := os.Stat(m.ChunkPath(primary, nf.ID)); !os.IsNotExist(err) {
		t.Errorf("fallback disabled, yet the missing primary chunk came back: %v", err)
	}
	m.args = nil
	m.Remount()
	cmpFiles(t, filepath.Join(src, "nofallback"), m.Path("nofallback"))
	m.waitHealed(primary, data["nofallback"], []ChunkRef{nf})
}
