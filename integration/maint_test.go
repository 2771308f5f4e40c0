package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// Tests of issue #4: migrate, compare, repair, gc and fsck, online and
// offline, against damage injected into the real store directories.

// fsckJSON is the part of `dualstore fsck --json` the tests read.
type fsckJSON struct {
	Clean              bool     `json:"clean"`
	IndexClean         bool     `json:"index_clean"`
	IndexProblems      []string `json:"index_problems"`
	Fixed              int64    `json:"fixed"`
	Chunks             int64    `json:"chunks"`
	OneSided           int64    `json:"one_sided"`
	Unrecoverable      int64    `json:"unrecoverable"`
	UnrecoverableFiles []string `json:"unrecoverable_files"`
	Unreferenced       int64    `json:"unreferenced"`
}

// maintJSON runs an offline command with --json and decodes its report.
func maintJSON(t *testing.T, v any, args ...string) (code int, stderr string) {
	t.Helper()
	out, errOut, code := CLI(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("dualstore %s: exit %d, output is not JSON (%v):\n%s\n%s", strings.Join(args, " "), code, err, out, errOut)
	}
	return code, errOut
}

// orphanChunk writes a valid chunk file (its name is the BLAKE3 of its
// bytes) that no file references into the given tiers of a data dir.
func orphanChunk(t *testing.T, data string, seed uint64, size int, tiers ...string) (string, int) {
	t.Helper()
	b := randBytes(seed, size)
	sum := blake3.Sum256(b)
	id := fmt.Sprintf("%x", sum[:])
	for _, tier := range tiers {
		dir := filepath.Join(data, tier, id[:4])
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".chunk"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return id, size
}

func truncateChunk(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// chunkVerifies reports whether a chunk file hashes to its id.
func chunkVerifies(path, id string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sum := blake3.Sum256(b)
	return fmt.Sprintf("%x", sum[:]) == id
}

func chunkExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// unreferencedChunks counts the chunks in either tier's store directory
// that no file of refs references, and their bytes (the larger copy).
func unreferencedChunks(m *Mount, refs map[string][]ChunkRef) (n, size int64) {
	m.t.Helper()
	referenced := map[string]bool{}
	for _, rs := range refs {
		for _, c := range rs {
			referenced[c.ID] = true
		}
	}
	unref := map[string]int64{}
	for _, tier := range []string{primary, safety} {
		for id, p := range m.ChunkFiles(tier) {
			if st, err := os.Stat(p); err == nil && !referenced[id] {
				unref[id] = max(unref[id], st.Size())
			}
		}
	}
	for _, b := range unref {
		n++
		size += b
	}
	return n, size
}

// distinct returns the distinct chunks of refs and their total size.
func distinct(refs []ChunkRef) (map[string]int, int64) {
	out := map[string]int{}
	var n int64
	for _, r := range refs {
		if _, ok := out[r.ID]; !ok {
			out[r.ID] = r.Size
			n += int64(r.Size)
		}
	}
	return out, n
}

// TestOfflineMaintenance damages the stores of an unmounted filesystem in
// every way (a chunk deleted on each side, flipped bytes, a truncated
// chunk file, a chunk lost from both, extra unreferenced chunks) and
// drives compare, fsck, repair and gc offline: exact counts per class,
// the affected files, a repair that leaves only the unrecoverable chunk,
// and a gc that frees exactly the unreferenced bytes.
func TestOfflineMaintenance(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	data := map[string][]byte{}
	refs := map[string][]ChunkRef{}
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("f%d", i)
		data[name] = randBytes(uint64(400+i), (1<<20)+i*(200<<10))
		writeFile(t, filepath.Join(src, name), data[name])
		runTool(t, "cp", filepath.Join(src, name), m.Path(name))
		refs[name] = m.FileChunks(primary, data[name])
	}
	gone := randBytes(499, 3<<20)
	writeFile(t, m.Path("gone"), gone)
	goneChunks, goneBytes := distinct(m.FileChunks(primary, gone))
	runTool(t, "rm", m.Path("gone"))
	// The unlinked inode is purged once the kernel forgets it.
	var total int64
	for _, d := range data {
		total += int64(len(d))
	}
	n := m.waitStats(5*time.Second, "the deleted file's purge", func(st Stats) bool { return st.LogicalBytes == total }).UniqueChunks

	// Offline commands are refused while the mount holds the data dir.
	_, errOut, code := CLI(t, "fsck", "--data-dir", m.Data)
	if code != 1 || !strings.Contains(errOut, "in use by the mount at "+m.Dir) {
		t.Errorf("offline fsck while mounted: exit %d, %q; want 1 and the mount named", code, errOut)
	}
	m.Unmount()

	// Unreferenced: the deleted file's chunks, and any tail chunk a flush
	// in mid-write left (a fork in a parallel test flushes this process's
	// open files), counted from the store directories.
	unrefN, _ := unreferencedChunks(m, refs)
	if unrefN < int64(len(goneChunks)) {
		t.Fatalf("the stores hold %d unreferenced chunks, fewer than the deleted file's %d", unrefN, len(goneChunks))
	}
	var fr fsckJSON
	if code, errOut := maintJSON(t, &fr, "fsck", "--data-dir", m.Data); code != 0 || !fr.Clean || fr.Chunks != n || fr.Unreferenced != unrefN {
		t.Fatalf("fsck of a clean filesystem: exit %d, %+v (want clean, %d chunks, %d unreferenced)\n%s", code, fr, n, unrefN, errOut)
	}

	// Extra chunks no index row knows: two in primary only, one in both.
	var orphanBytes int64
	var orphans []string
	for i, tiers := range [][]string{{primary}, {primary}, {primary, safety}} {
		id, size := orphanChunk(t, m.Data, uint64(700+i), 100<<10+i, tiers...)
		orphans = append(orphans, id)
		orphanBytes += int64(size)
	}

	c1, c2, c3, c4, c5 := refs["f1"][0].ID, refs["f2"][0].ID, refs["f3"][0].ID, refs["f4"][0].ID, refs["f5"][0].ID
	removeChunk(t, m.ChunkPath(primary, c1))
	removeChunk(t, m.ChunkPath(safety, c2))
	corruptChunk(t, m.ChunkPath(primary, c3))
	truncateChunk(t, m.ChunkPath(safety, c4))
	removeChunk(t, m.ChunkPath(primary, c5))
	removeChunk(t, m.ChunkPath(safety, c5))
	damage := map[string]wantDetail{
		c1: {"safety_only", "/f1", "safety"},
		c2: {"primary_only", "/f2", "primary"},
		c3: {"mismatch", "/f3", "safety"},
		c4: {"mismatch", "/f4", "primary"},
		c5: {"missing", "/f5", ""},
	}

	var r Report
	code, errOut = maintJSON(t, &r, "compare", "--deep", "--data-dir", m.Data)
	if code != 3 || r.State != "done" || r.Done != n || r.SafetyOnly != 1 || r.PrimaryOnly != 1 || r.Mismatches != 2 || r.Missing != 1 || r.Errors != 0 || r.Matches != n-5 {
		t.Errorf("offline deep compare: exit %d, %s; want exit 3, safety_only 1, primary_only 1, mismatch 2, missing 1\n%s", code, r.counts(), errOut)
	}
	checkDetails(t, "offline deep compare", r, damage)

	// Shallow: the flipped copy has the right size, the truncated one not.
	code, _ = maintJSON(t, &r, "compare", "--data-dir", m.Data)
	shallow := map[string]wantDetail{c1: damage[c1], c2: damage[c2], c4: {"mismatch", "/f4", ""}, c5: damage[c5]}
	if code != 3 || r.Mismatches != 1 || r.Differences() != 4 {
		t.Errorf("offline shallow compare: exit %d, %s; want 3, one mismatch (the truncated copy), 4 differences", code, r.counts())
	}
	checkDetails(t, "offline shallow compare", r, shallow)

	// The text form, one line per difference, like rclone check --combined.
	out, _, code := CLI(t, "compare", "--deep", "--data-dir", m.Data)
	for id, want := range map[string]string{c1: "- ", c2: "+ ", c3: "* ", c4: "* ", c5: "! "} {
		if !strings.Contains(out, want+id+" ") {
			t.Errorf("compare text output lacks %q for %s:\n%s", want+id, id, out)
		}
	}
	if code != 3 || !strings.Contains(out, c5+" missing /f5") {
		t.Errorf("compare text: exit %d, want 3 and the missing chunk with /f5:\n%s", code, out)
	}

	// fsck: the index is fine, one chunk is in no tier and /f5 lost data.
	code, _ = maintJSON(t, &fr, "fsck", "--data-dir", m.Data)
	if code != 3 || fr.Clean || !fr.IndexClean || fr.Unrecoverable != 1 || !slices.Equal(fr.UnrecoverableFiles, []string{"/f5"}) || fr.OneSided != 3 {
		t.Errorf("fsck of damaged stores: exit %d, %+v; want 3, /f5 unrecoverable, 3 one-sided", code, fr)
	}

	// Repair offline: everything but the lost chunk, which is reported.
	code, errOut = maintJSON(t, &r, "repair", "--data-dir", m.Data)
	if code != 3 || r.Repaired != 4 || r.Unrecoverable != 1 || r.RepairFailed != 0 {
		t.Errorf("offline repair: exit %d, %s, repair_failed %d; want 3, repaired 4, unrecoverable 1\n%s", code, r.counts(), r.RepairFailed, errOut)
	}
	code, _ = maintJSON(t, &r, "compare", "--deep", "--data-dir", m.Data)
	if code != 3 || r.Matches != n-1 || r.Missing != 1 || r.Differences() != 1 {
		t.Errorf("deep compare after repair: %s; want all match but the lost chunk", r.counts())
	}
	for _, id := range []string{c1, c2, c3, c4} {
		for _, tier := range []string{primary, safety} {
			if !chunkVerifies(m.ChunkPath(tier, id), id) {
				t.Errorf("chunk %s in %s does not verify after repair", id, tier)
			}
		}
	}

	// gc: exactly the chunks no file references: the deleted file's, the
	// three extra ones, and any tail chunk a flush in mid-write left.
	// Counted independently, from the store directories.
	wantN, wantB := unreferencedChunks(m, refs)
	if wantN < int64(len(goneChunks)+len(orphans)) || wantB < goneBytes+orphanBytes {
		t.Fatalf("the stores hold %d unreferenced chunks (%d B), fewer than the %d deleted and extra ones", wantN, wantB, len(goneChunks)+len(orphans))
	}
	code, _ = maintJSON(t, &r, "gc", "--dry-run", "--data-dir", m.Data)
	if code != 0 || !r.DryRun || r.Removed != wantN || r.RemovedBytes != wantB {
		t.Errorf("gc --dry-run: exit %d, removed %d (%d B), dry %v; want %d (%d B)", code, r.Removed, r.RemovedBytes, r.DryRun, wantN, wantB)
	}
	for _, id := range orphans {
		if !chunkExists(m.ChunkPath(primary, id)) {
			t.Fatalf("gc --dry-run removed %s", id)
		}
	}
	code, _ = maintJSON(t, &r, "gc", "--data-dir", m.Data)
	if code != 0 || r.Removed != wantN || r.RemovedBytes != wantB || r.Errors != 0 {
		t.Errorf("gc: exit %d, removed %d (%d B), errors %d; want %d (%d B)", code, r.Removed, r.RemovedBytes, r.Errors, wantN, wantB)
	}
	for id := range goneChunks {
		if chunkExists(m.ChunkPath(primary, id)) || chunkExists(m.ChunkPath(safety, id)) {
			t.Errorf("gc left the deleted file's chunk %s", id)
		}
	}
	for _, id := range orphans {
		if chunkExists(m.ChunkPath(primary, id)) || chunkExists(m.ChunkPath(safety, id)) {
			t.Errorf("gc left the extra chunk %s", id)
		}
	}
	for name, rs := range refs {
		for _, c := range rs {
			if name != "f5" && (!chunkExists(m.ChunkPath(primary, c.ID)) || !chunkExists(m.ChunkPath(safety, c.ID))) {
				t.Errorf("gc removed chunk %s of %s", c.ID, name)
			}
		}
	}
	if code, _ = maintJSON(t, &r, "gc", "--data-dir", m.Data); code != 0 || r.Removed != 0 {
		t.Errorf("second gc: exit %d, removed %d; want 0", code, r.Removed)
	}

	// Every file but the one that lost a chunk reads back exactly.
	m.Remount()
	for name, want := range data {
		got, err := os.ReadFile(m.Path(name))
		if name == "f5" {
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("reading f5 (a chunk lost from both tiers): %v, want EIO", err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after repair and gc: %v, equal %v", name, err, bytes.Equal(got, want))
		}
	}
}

// TestGCWithConcurrentWriter runs gc on a mount while writers write: gc
// frees exactly the deleted file's bytes, and a writer that writes the
// very content whose chunks gc is removing keeps all its data (checked
// cold, after a remount, and by fsck).
//
// Not parallel: a fork in another test flushes this process's open files
// in mid-write, leaving tail chunks that would make the count inexact.
func TestGCWithConcurrentWriter(t *testing.T) {
	m := mount(t)
	keep := randBytes(800, 3<<20)
	writeFile(t, m.Path("keep"), keep)
	doomed := randBytes(801, 5<<20)
	writeFile(t, m.Path("doomed"), doomed)
	doomedChunks, doomedBytes := distinct(m.FileChunks(primary, doomed))
	if err := os.Remove(m.Path("doomed")); err != nil {
		t.Fatal(err)
	}
	// An unlinked inode is purged (its chunks unreferenced) once the
	// kernel has forgotten it, a moment after the unlink returns.
	m.waitStats(5*time.Second, "the deleted file's purge", func(st Stats) bool { return st.LogicalBytes == int64(len(keep)) })

	// Phase 1: unrelated writes while gc runs; gc's accounting is exact.
	if err := os.Mkdir(m.Path("w"), 0o755); err != nil {
		t.Fatal(err)
	}
	written := map[string][]byte{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(prefix string, content func(i int) []byte) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("%s%03d", prefix, i)
			b := content(i)
			if err := os.WriteFile(m.Path("w", name), b, 0o644); err != nil {
				t.Errorf("writer: %s: %v", name, err)
				return
			}
			mu.Lock()
			written[name] = b
			mu.Unlock()
		}
	}
	wg.Add(1)
	go writer("a", func(i int) []byte { return randBytes(uint64(900+i), 700<<10+i) })
	r := m.Action("gc")
	close(stop)
	wg.Wait()
	if r.State != "done" || r.Action != "gc" || r.Removed != int64(len(doomedChunks)) || r.RemovedBytes != doomedBytes || r.Errors != 0 {
		t.Errorf("gc during writes: %+v; want removed %d (%d B)", r, len(doomedChunks), doomedBytes)
	}

	// Phase 2: the race that matters. The deleted content is written
	// again while gc removes its chunks, over and over.
	stop = make(chan struct{})
	wg.Add(2)
	go writer("b", func(int) []byte { return doomed })
	go writer("c", func(i int) []byte { return append(append([]byte{}, keep[:1<<20]...), doomed[i%3<<20:]...) })
	for range 6 {
		if err := os.Remove(m.Path("keep")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, m.Path("keep"), keep)
		if r := m.Action("gc"); r.State != "done" || r.Errors != 0 {
			t.Errorf("gc during racing writes: %+v", r)
		}
	}
	close(stop)
	wg.Wait()
	if len(written) < 4 {
		t.Fatalf("the writers wrote only %d files", len(written))
	}
	check := func(when string) {
		t.Helper()
		for name, want := range written {
			got, err := os.ReadFile(m.Path("w", name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: w/%s: %v, equal %v", when, name, err, bytes.Equal(got, want))
			}
		}
		if got, err := os.ReadFile(m.Path("keep")); err != nil || !bytes.Equal(got, keep) {
			t.Errorf("%s: keep: %v", when, err)
		}
	}
	check("warm")
	m.Remount()
	check("after remount")
	m.Unmount()
	var fr fsckJSON
	if code, errOut := maintJSON(t, &fr, "fsck", "--data-dir", m.Data); code != 0 || !fr.Clean || fr.OneSided != 0 {
		t.Errorf("fsck after gc raced writers: exit %d, %+v\n%s", code, fr, errOut)
	}
	t.Logf("%d files written during 7 gc runs", len(written))
}

// TestMigrate fills an empty safety tier from the primary: interrupted
// with Ctrl-C, resumed by a rerun, checked by compare_all; then online.
func TestMigrate(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("dual:\n  write_to_both: false\n"))
	data := map[string][]byte{}
	for i := range 8 {
		name := fmt.Sprintf("m%d", i)
		data[name] = randBytes(uint64(1000+i), 1<<20+i*4096)
		writeFile(t, m.Path(name), data[name])
	}
	// Referenced chunks: the primary may hold a few more, the tail chunks
	// of flushes in mid-write (any fork of a threaded process flushes its
	// open files), which gc removes and migrate rightly skips.
	n := m.Stats().UniqueChunks
	if k := len(m.ChunkFiles(safety)); k != 0 {
		t.Fatalf("write_to_both false wrote %d chunks to the safety tier", k)
	}
	m.Unmount()

	// Throttled, then interrupted: it stops cleanly, part done.
	cmd := exec.Command(bin, "migrate", "--direction", "to_safety", "--rate", "4M", "--concurrency", "1", "--data-dir", m.Data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = waitFor(actionDeadline, func() error { // how far it got is checked below
		if k := len(m.ChunkFiles(safety)); k < 2 {
			return fmt.Errorf("migrate copied %d chunks", k)
		}
		return nil
	})
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "run it again to resume") {
		t.Errorf("interrupted migrate: %v; want exit 1 and a resume hint\n%s\n%s", err, out.String(), errb.String())
	}
	first := int64(len(m.ChunkFiles(safety)))
	if first < 2 || first >= n {
		t.Fatalf("interrupted migrate copied %d of %d chunks; want some, not all", first, n)
	}

	var r Report
	code, errOut := maintJSON(t, &r, "migrate", "--direction", "to_safety", "--data-dir", m.Data)
	if code != 0 || r.Action != "migrate" || r.Direction != "to_safety" || r.Copied != n-first || r.Matches != first || r.Remaining() != 0 {
		t.Errorf("resumed migrate: exit %d, copied %d, matched %d; want %d, %d\n%s", code, r.Copied, r.Matches, n-first, first, errOut)
	}
	if code, _ = maintJSON(t, &r, "migrate", "--direction", "compare_all", "--data-dir", m.Data); code != 0 || r.Matches != n || !r.Deep {
		t.Errorf("migrate compare_all: exit %d, %s; want every chunk matching", code, r.counts())
	}
	if _, errOut, code := CLI(t, "migrate", "--direction", "sideways", "--data-dir", m.Data); code != 2 || !strings.Contains(errOut, "sideways") {
		t.Errorf("migrate --direction sideways: exit %d %q; want 2 naming it", code, errOut)
	}

	// Online: new files on a mount that writes the primary only.
	m.Remount()
	writeFile(t, m.Path("late"), randBytes(1100, 2<<20))
	before := int64(len(m.ChunkFiles(safety)))
	out2, errOut, code := CLI(t, "migrate", "--direction", "to_safety", m.Dir)
	after := int64(len(m.ChunkFiles(safety)))
	// (The primary may also hold unreferenced chunks, which migrate skips.)
	if refd := m.Stats().UniqueChunks; code != 0 || after <= before || after != refd {
		t.Errorf("online migrate: exit %d, safety chunks %d → %d, %d referenced\n%s%s", code, before, after, refd, out2, errOut)
	}
	if r := m.Report(); r.Action != "migrate" || r.Copied != after-before {
		t.Errorf("online migrate report: %+v; want copied %d", r, after-before)
	}
	for name, want := range data {
		if got, err := os.ReadFile(m.Path(name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after migrate: %v", name, err)
		}
	}
}

// TestScrubThrottleAndStop: a throttled deep compare runs at about its
// rate, shows done/total and speed in ctl, and stop ends it.
func TestScrubThrottleAndStop(t *testing.T) {
	t.Parallel()
	m := mount(t)
	writeFile(t, m.Path("big"), randBytes(1200, 12<<20))
	if err := m.Ctl("compare deep rate=2M concurrency=1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the time the throttle is measured over: not synchronisation
	status := m.CtlStatus()
	r := m.Report()
	if r.State != "running" || !strings.Contains(status, "compare deep") || !strings.Contains(status, "MB/s") {
		t.Errorf("throttled compare after 1.5s: state %s, ctl %q; want running with progress", r.State, status)
	}
	// A deep compare reads both copies: 2 MiB/s of reads is about 1 MiB/s
	// of chunks, so it cannot have finished 12 MiB.
	if r.Done >= r.Total || r.Total == 0 {
		t.Errorf("throttled compare: done %d of %d after 1.5s", r.Done, r.Total)
	}
	if err := m.Ctl("gc"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("gc while a compare runs: %v, want EBUSY", err)
	}
	if err := m.Ctl("stop"); err != nil {
		t.Fatal(err)
	}
	if r := m.Report(); r.State != "stopped" {
		t.Errorf("after stop: state %s, want stopped", r.State)
	}
	if s := m.CtlStatus(); !strings.HasPrefix(s, "idle") {
		t.Errorf("ctl after stop: %q, want idle", s)
	}
}

// Remaining is what a repair or migration left unfixed.
func (r Report) Remaining() int64 { return r.Unrecoverable + r.RepairFailed + r.Errors }

// TestKillDuringGC kills an offline gc with SIGKILL at random points (it
// runs long enough with tiny chunks): afterwards the index opens, fsck is
// clean, every kept file reads back exactly, and a rerun of gc leaves the
// stores holding exactly the referenced chunks.
func TestKillDuringGC(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("chunker:\n  min_size: 4096\n  avg_size: 8192\n  max_size: 32768\n"))
	keep := map[string][]byte{}
	for i := range 4 {
		name := fmt.Sprintf("keep%d", i)
		keep[name] = randBytes(uint64(1300+i), 1<<20)
		writeFile(t, m.Path(name), keep[name])
	}
	for round := range 3 {
		for i := range 3 {
			writeFile(t, m.Path(fmt.Sprintf("junk%d", i)), randBytes(uint64(1400+10*round+i), 2<<20))
		}
		for i := range 3 {
			if err := os.Remove(m.Path(fmt.Sprintf("junk%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		m.Unmount()
		cmd := exec.Command(bin, "gc", "--data-dir", m.Data)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once it has removed some chunks, at a point that differs
		// by round.
		before := len(m.ChunkFiles(primary))
		deadline := time.Now().Add(actionDeadline)
		for len(m.ChunkFiles(primary)) > before-50*(round+1) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // a poll closer than waitFor's, to kill near the point chosen
		}
		cmd.Process.Kill()
		werr := cmd.Wait()
		left := len(m.ChunkFiles(primary))
		t.Logf("round %d: killed gc (%v) with %d of %d primary chunk files left", round, werr, left, before)

		var fr fsckJSON
		if code, errOut := maintJSON(t, &fr, "fsck", "--data-dir", m.Data); code != 0 || !fr.Clean || fr.OneSided != 0 {
			t.Fatalf("round %d: fsck after gc was killed: exit %d, %+v\n%s", round, code, fr, errOut)
		}
		m.Remount()
		for name, want := range keep {
			if got, err := os.ReadFile(m.Path(name)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d: %s after gc was killed: %v", round, name, err)
			}
		}
	}
	st := m.Stats()
	m.Unmount()
	var r Report
	if code, _ := maintJSON(t, &r, "gc", "--data-dir", m.Data); code != 0 || r.Errors != 0 {
		t.Fatalf("gc after the kills: exit %d, %+v", code, r)
	}
	for _, tier := range []string{primary, safety} {
		if n := int64(len(m.ChunkFiles(tier))); n != st.UniqueChunks {
			t.Errorf("%s tier holds %d chunk files after gc, want the %d referenced", tier, n, st.UniqueChunks)
		}
	}
}
