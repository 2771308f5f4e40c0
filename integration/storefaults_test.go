package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Store faults with the real on-disk directories: a store that turns
// read-only, fills up, is removed while mounted, loses or garbles chunks
// while files are read, or answers slowly or not at all. In every case
// the mount stays responsive, returns EIO only where no good copy exists
// (or where `require` says a write must fail), names the failing store in
// its log, and counts each fault in stats.

// sfNum reads a number from stats by dotted path (0 when absent).
func sfNum(raw map[string]any, path string) int64 {
	v, _ := lookupKey(raw, path)
	f, _ := v.(float64)
	return int64(f)
}

// sfTmpfs mounts a tmpfs of the given size (e.g. "8m") and unmounts it in
// t.Cleanup. Call it before mount(), so that the daemon using it is gone
// before the tmpfs is unmounted.
func sfTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir)
	t.Cleanup(func() {
		if !isMounted(dir) {
			return
		}
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s; detaching it", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// sfChunkIDs lists the chunk files below a store directory (read
// directly, never through a FUSE mount of this process).
func sfChunkIDs(t *testing.T, root string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && chunkName.MatchString(d.Name()) {
			ids[strings.TrimSuffix(d.Name(), ".chunk")] = true
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return ids
}

// sfChunksOf lists the chunk ids of a file of the mount, read from its
// .dualstore/chunks/INO list.
func (m *Mount) sfChunksOf(name string) []string {
	m.t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(m.Path(name), &st); err != nil {
		m.t.Fatal(err)
	}
	b, err := os.ReadFile(m.control(fmt.Sprintf("chunks/%d", st.Ino)))
	if err != nil {
		m.t.Fatalf("chunk list of %s: %v", name, err)
	}
	var list struct {
		Chunks []struct {
			ID string `json:"id"`
		} `json:"chunks"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		m.t.Fatalf("chunk list of %s: %v\n%s", name, err, b)
	}
	var ids []string
	for _, c := range list.Chunks {
		if c.ID != "" {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// sfWaitPending polls stats until pending_backfill is 0.
func (m *Mount) sfWaitPending(within time.Duration) {
	m.t.Helper()
	if err := waitFor(within, func() error {
		if st := m.Stats(); st.PendingBackfill != 0 {
			return fmt.Errorf("pending_backfill still %d", st.PendingBackfill)
		}
		return nil
	}); err != nil {
		m.t.Fatal(err)
	}
}

// sfLogHas waits (the daemon's stderr reaches us through a pipe, a little
// after the reply it logged) until the log holds every one of want, and
// reports the ones it never saw.
func (m *Mount) sfLogHas(want ...string) []string {
	m.t.Helper()
	var missing []string
	_ = waitFor(5*time.Second, func() error { // the caller reports what is missing
		logs := m.Logs()
		missing = nil
		for _, w := range want {
			if !strings.Contains(logs, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the log lacks %q", missing)
		}
		return nil
	})
	return missing
}

// sfCopy copies src into the mount with cp and returns cp's error and
// output.
func sfCopy(src, dst string) (string, error) {
	out, err := exec.Command("cp", src, dst).CombinedOutput()
	return string(out), err
}

// sfWithin runs f and fails the test if it takes longer than d: the
// mount must stay responsive. f runs on its own goroutine and must not
// call t's methods (it may outlive the test when the mount hangs).
func sfWithin(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Errorf("%s did not answer within %s: the mount is not responsive", what, d)
	}
}

// sfStats reads .dualstore/stats without the test's t (for sfWithin).
func sfStats(m *Mount) error {
	_, err := os.ReadFile(m.control("stats"))
	return err
}

// TestStoreFaultSafetyUnwritable puts the safety store on a small tmpfs
// and makes it read-only, then full. With require: primary, writes go on
// and every missed chunk is counted and kept for backfill; with require:
// both, writes fail with an error and nothing acknowledged is lost; once
// the store is writable again the backfill completes both tiers.
func TestStoreFaultSafetyUnwritable(t *testing.T) {
	t.Parallel()
	safe := sfTmpfs(t, "8m")
	m := mount(t, withConfig(fmt.Sprintf("dual:\n  backfill_interval: 200ms\nsafety:\n  - name: small-safety\n    path: %s\n", safe)))
	src := t.TempDir()
	files := map[string][]byte{}
	put := func(name string, seed uint64, size int) error {
		files[name] = randBytes(seed, size)
		writeFile(t, filepath.Join(src, name), files[name])
		out, err := sfCopy(filepath.Join(src, name), m.Path(name))
		if err != nil {
			return fmt.Errorf("cp %s: %v: %s", name, err, out)
		}
		return nil
	}
	if err := put("before", 400, 2<<20); err != nil {
		t.Fatal(err)
	}

	// Read-only.
	runTool(t, "mount", "-o", "remount,ro", safe)
	if err := put("while-ro", 401, 3<<20); err != nil {
		t.Fatalf("require primary, safety read-only: %v", err)
	}
	raw := m.StatsRaw()
	if sfNum(raw, "tiers.safety.writes.errors") == 0 || sfNum(raw, "pending_backfill") == 0 || sfNum(raw, "tiers.primary.writes.errors") != 0 {
		t.Errorf("safety read-only: safety write errors %d, pending %d, primary write errors %d; want >0, >0, 0",
			sfNum(raw, "tiers.safety.writes.errors"), sfNum(raw, "pending_backfill"), sfNum(raw, "tiers.primary.writes.errors"))
	}
	if st := m.Stats(); len(st.Tiers[safety].Stores) != 1 || st.Tiers[safety].Stores[0].Name != "small-safety" || st.Tiers[safety].Stores[0].Writes.Errors == 0 {
		t.Errorf("safety stores %+v: want small-safety with write errors", st.Tiers[safety].Stores)
	}
	if miss := m.sfLogHas("read-only file system", safe); len(miss) > 0 {
		t.Errorf("the log does not name the read-only safety store (missing %q):\n%s", miss, tailLog(m.Logs(), 20, 300))
	}
	runTool(t, "mount", "-o", "remount,rw", safe)

	// Full: 18 MiB into an 8 MiB store.
	for i := range 3 {
		if err := put(fmt.Sprintf("big%d", i), uint64(410+i), 6<<20+i); err != nil {
			t.Fatalf("require primary, safety full: %v", err)
		}
	}
	for name := range files {
		cmpFiles(t, filepath.Join(src, name), m.Path(name))
	}
	if miss := m.sfLogHas("no space left on device"); len(miss) > 0 {
		t.Errorf("the log does not report the full safety store:\n%s", tailLog(m.Logs(), 20, 300))
	}
	pendingFull := m.Stats().PendingBackfill
	if pendingFull == 0 {
		t.Errorf("18 MiB written to an 8 MiB safety store, yet pending_backfill is 0")
	}

	// require both: the writer gets an error, and what was acknowledged
	// before stays intact.
	m.args = []string{"--require", "both"}
	m.Remount()
	files["refused"] = randBytes(420, 6<<20)
	writeFile(t, filepath.Join(src, "refused"), files["refused"])
	out, err := sfCopy(filepath.Join(src, "refused"), m.Path("refused"))
	if err == nil {
		t.Errorf("require both with a full safety store: cp of 6 MiB succeeded")
	} else if !strings.Contains(out, "Input/output error") && !strings.Contains(out, "No space left on device") {
		t.Errorf("require both with a full safety store: cp failed with %q, want EIO or ENOSPC", out)
	}
	delete(files, "refused")
	for name := range files {
		cmpFiles(t, filepath.Join(src, name), m.Path(name))
	}
	// The refused file holds no chunk that no tier has: reading it works.
	if b, err := os.ReadFile(m.Path("refused")); err != nil {
		t.Errorf("reading the file whose write was refused: %v", err)
	} else if len(b) > 0 && !bytes.Equal(b, randBytes(420, 6<<20)[:len(b)]) {
		t.Errorf("the refused file holds %d bytes that are not its data", len(b))
	}
	// A full store may still take a small chunk (a failed put frees its
	// temp file), so pending_backfill may shrink; what must hold is that
	// every chunk an acknowledged file references and safety lacks is
	// still pending.
	onSafety := sfChunkIDs(t, safe)
	missing := map[string]bool{}
	for name := range files {
		for _, id := range m.sfChunksOf(name) {
			if !onSafety[id] {
				missing[id] = true
			}
		}
	}
	if len(missing) == 0 {
		t.Errorf("over 18 MiB of chunks and an 8 MiB safety store, yet safety lacks no referenced chunk")
	}
	if p := m.Stats().PendingBackfill; p < int64(len(missing)) {
		t.Errorf("%d referenced chunks are missing from the full safety store, yet pending_backfill is %d (was %d)", len(missing), p, pendingFull)
	}

	// Room again: the backfill (which also runs at mount) completes the
	// safety tier, and require both accepts writes.
	runTool(t, "mount", "-o", "remount,size=96m", safe)
	m.Remount()
	m.sfWaitPending(60 * time.Second)
	if r := m.Compare(false); r.Differences() != 0 {
		t.Errorf("after the backfill, compare: %s", r.counts())
	}
	// (Chunks of the refused write may be in primary only: no file
	// references them.)
	onDisk := sfChunkIDs(t, safe)
	if st := m.Stats(); int64(len(onDisk)) < st.UniqueChunks {
		t.Errorf("safety holds %d chunk files, the index references %d", len(onDisk), st.UniqueChunks)
	}
	if err := put("after", 430, 3<<20); err != nil {
		t.Errorf("require both after the store has room again: %v", err)
	}
	for name := range files {
		cmpFiles(t, filepath.Join(src, name), m.Path(name))
	}
}

// TestStoreFaultDamageWhileReading damages chunk files of a file while it
// is open and being read: a deleted, a corrupt, a truncated and a
// wrong-content (valid name, another chunk's bytes) primary copy are read
// from safety and healed; a chunk gone from both tiers is EIO for its
// bytes only; every fault is counted and the stores are named in the log.
func TestStoreFaultDamageWhileReading(t *testing.T) {
	t.Parallel()
	m := mount(t)
	data := randBytes(440, 24<<20)
	src := filepath.Join(t.TempDir(), "big")
	writeFile(t, src, data)
	runTool(t, "cp", src, m.Path("big"))
	refs := m.FileChunks(primary, data)
	m.Remount() // empty caches
	f, err := os.Open(m.Path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:len(head)]) {
		t.Fatalf("first read: %v", err)
	}
	// Damage chunks well past what the first read, the kernel's
	// readahead (1 MiB) and the daemon's prefetch (4 chunks ahead of any
	// chunk read) can have fetched: from the 8th chunk after 2 MiB on.
	first := 0
	for first < len(refs) && refs[first].Off < 2<<20 {
		first++
	}
	if len(refs) < first+8+9 {
		t.Fatalf("a 24 MiB file has %d chunks (%d below 2 MiB), want %d", len(refs), first, first+8+9)
	}
	far := refs[first+8:]
	deleted, corrupt, truncated, wrong, lost := far[0], far[2], far[4], far[6], far[8]
	removeChunk(t, m.ChunkPath(primary, deleted.ID))
	corruptChunk(t, m.ChunkPath(primary, corrupt.ID))
	if err := os.Truncate(m.ChunkPath(primary, truncated.ID), int64(truncated.Size/2)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.ChunkPath(primary, wrong.ID), data[refs[0].Off:refs[0].Off+refs[0].Size], 0o600); err != nil {
		t.Fatal(err)
	}
	removeChunk(t, m.ChunkPath(primary, lost.ID))
	corruptChunk(t, m.ChunkPath(safety, lost.ID))

	// Read the rest through the same descriptor, chunk by chunk, inside
	// page boundaries (the kernel reads whole pages).
	pageIn := func(off, end int) (int, int) { return (off + 4095) &^ 4095, end &^ 4095 }
	for _, r := range refs {
		if r.ID == lost.ID {
			continue
		}
		from, to := pageIn(r.Off, r.Off+r.Size)
		if to <= from {
			continue
		}
		got := make([]byte, to-from)
		if _, err := f.ReadAt(got, int64(from)); err != nil {
			t.Errorf("reading chunk at %d (size %d): %v", r.Off, r.Size, err)
		} else if !bytes.Equal(got, data[from:to]) {
			t.Errorf("chunk at %d (size %d) read back wrong bytes", r.Off, r.Size)
		}
	}
	from, _ := pageIn(lost.Off, lost.Off+lost.Size)
	if _, err := f.ReadAt(make([]byte, 4096), int64(from)); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the chunk no tier holds a good copy of: %v, want EIO", err)
	}
	sfWithin(t, "stats after the EIO", 5*time.Second, func() error { return sfStats(m) })

	raw := m.StatsRaw()
	for path, least := range map[string]int64{
		"fallbacks":                           5,
		"self_heals":                          4,
		"tiers.primary.reads.checksum_errors": 3,
		"tiers.primary.reads.not_found":       2,
		"tiers.safety.reads.checksum_errors":  1,
	} {
		if got := sfNum(raw, path); got < least {
			t.Errorf("stats %s = %d, want >= %d", path, got, least)
		}
	}
	if st := m.Stats().Tiers[primary].Stores; len(st) != 1 || st[0].Reads.ChecksumErrors < 3 {
		t.Errorf("primary stores %+v: want primary-0 with checksum_errors >= 3", st)
	}
	// Healed with the good bytes; safety's good copies untouched; the
	// lost chunk's corrupt safety copy is not passed off as good.
	m.waitHealed(primary, data, []ChunkRef{deleted, corrupt, truncated, wrong})
	for _, r := range []ChunkRef{deleted, corrupt, truncated, wrong} {
		if !chunkOK(m.ChunkPath(safety, r.ID), r.ID, data[r.Off:r.Off+r.Size]) {
			t.Errorf("safety chunk %s changed while primary was healed", r.ID)
		}
	}
	if chunkOK(m.ChunkPath(primary, lost.ID), lost.ID, data[lost.Off:lost.Off+lost.Size]) {
		t.Errorf("the lost chunk came back in primary?")
	}
	if miss := m.sfLogHas(lost.ID, filepath.Join(m.Data, primary), "safety-0"); len(miss) > 0 {
		t.Errorf("the log does not mention %q:\n%s", miss, tailLog(m.Logs(), 30, 400))
	}
}

// TestStoreFaultDirRemoved removes a store directory entirely while
// mounted: reads fall back to the other tier, writes go on under require
// primary (safety removed) or fail (primary removed), every miss is
// counted, and once the directory is back the backfill and a repair make
// both tiers whole.
func TestStoreFaultDirRemoved(t *testing.T) {
	t.Parallel()
	m := mount(t, withConfig("dual:\n  backfill_interval: 200ms\n"), withArgs("--read-preference", "safety"))
	src := t.TempDir()
	files := map[string][]byte{}
	cp := func(name string, seed uint64) (string, error) {
		files[name] = randBytes(seed, 3<<20+int(seed))
		writeFile(t, filepath.Join(src, name), files[name])
		return sfCopy(filepath.Join(src, name), m.Path(name))
	}
	for i, name := range []string{"a", "c"} {
		if out, err := cp(name, uint64(450+i)); err != nil {
			t.Fatalf("cp %s: %v %s", name, err, out)
		}
	}
	m.Remount() // empty caches: the reads below reach the stores

	safeDir := filepath.Join(m.Data, safety)
	if err := os.RemoveAll(safeDir); err != nil {
		t.Fatal(err)
	}
	cmpFiles(t, filepath.Join(src, "a"), m.Path("a"))
	raw := m.StatsRaw()
	if sfNum(raw, "fallbacks") == 0 || sfNum(raw, "tiers.safety.reads.not_found") == 0 {
		t.Errorf("reading with the safety dir gone: fallbacks %d, safety not_found %d; want > 0",
			sfNum(raw, "fallbacks"), sfNum(raw, "tiers.safety.reads.not_found"))
	}
	if out, err := cp("b", 452); err != nil {
		t.Fatalf("require primary with the safety dir gone: %v %s", err, out)
	}
	raw = m.StatsRaw()
	if sfNum(raw, "tiers.safety.writes.errors") == 0 || sfNum(raw, "pending_backfill") == 0 {
		t.Errorf("writing with the safety dir gone: safety write errors %d, pending %d; want > 0",
			sfNum(raw, "tiers.safety.writes.errors"), sfNum(raw, "pending_backfill"))
	}
	if miss := m.sfLogHas(safeDir); len(miss) > 0 {
		t.Errorf("the log does not name the removed safety store %s:\n%s", safeDir, tailLog(m.Logs(), 20, 300))
	}
	sfWithin(t, "ls and stats with the safety dir gone", 5*time.Second, func() error {
		if _, err := os.ReadDir(m.Dir); err != nil {
			return err
		}
		return sfStats(m)
	})

	// Back (empty): the backfill rewrites what was pending; a repair
	// copies what the directory held before.
	if err := os.Mkdir(safeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := cp("kick", 453); err != nil { // a new write also wakes the backfill
		t.Fatalf("%v %s", err, out)
	}
	m.sfWaitPending(60 * time.Second)
	r := m.Compare(false)
	if r.PrimaryOnly == 0 || r.Missing != 0 || r.Mismatches != 0 {
		t.Errorf("compare after the safety dir came back empty: %s; want primary_only > 0 only", r.counts())
	}
	if r := m.Action("repair"); r.State != "done" || r.Unrecoverable != 0 {
		t.Errorf("repair: state %s, %s", r.State, r.counts())
	}
	if r := m.Compare(false); r.Differences() != 0 {
		t.Errorf("compare after the repair: %s", r.counts())
	}

	// The primary dir removed: reads come from safety, and a write fails
	// (require primary) without touching what is stored.
	if err := m.Ctl("read-preference primary"); err != nil {
		t.Fatal(err)
	}
	m.Remount()
	primDir := filepath.Join(m.Data, primary)
	if err := os.RemoveAll(primDir); err != nil {
		t.Fatal(err)
	}
	cmpFiles(t, filepath.Join(src, "c"), m.Path("c"))
	if out, err := cp("refused", 454); err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("require primary with the primary dir gone: cp %v %q, want an I/O error", err, out)
	}
	delete(files, "refused")
	if miss := m.sfLogHas(primDir); len(miss) > 0 {
		t.Errorf("the log does not name the removed primary store %s", primDir)
	}
	if err := os.Mkdir(primDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if r := m.Action("repair"); r.State != "done" || r.Unrecoverable != 0 {
		t.Errorf("repair after the primary dir came back: state %s, %s", r.State, r.counts())
	}
	m.Remount()
	for name := range files {
		cmpFiles(t, filepath.Join(src, name), m.Path(name))
	}
	if st := m.Stats(); st.Fallbacks != 0 {
		t.Errorf("after the repair and a remount, reading everything fell back %d times", st.Fallbacks)
	}
}

// slowStore is a chunk store directory that answers slowly: a go-fuse
// loopback mount of a plain directory, served by the test process, whose
// lookups, creates, opens, mkdirs and renames first wait for the current
// delay. The daemon (another process) uses it as a store; the test itself
// never does I/O on it (go-fuse warns of deadlocks otherwise) and looks
// at the backing directory instead.
//
// Why a FUSE mount and not a fault-injecting store in the binary or
// dm-delay: the daemon must meet a slow store through its real code path
// (os calls on a directory, which a store timeout cannot interrupt), the
// delay must change at run time (slow, hung, healthy), and nothing beyond
// /dev/fuse is needed (dm-delay needs device-mapper and a block device).
type slowStore struct {
	Dir     string // the mount point: give it to dualstore as a store path
	Backing string // the directory the chunks really land in
	delay   atomic.Int64
	srv     *fuse.Server
}

// SetDelay changes the delay of every call from now on, including calls
// already waiting (a shorter delay releases them).
func (s *slowStore) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

func (s *slowStore) wait(ctx context.Context) {
	start := time.Now()
	for {
		left := time.Duration(s.delay.Load()) - time.Since(start)
		if left <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			// The kernel gave up on the request (the caller was killed):
			// stop waiting, the answer is dropped anyway.
			return
		case <-time.After(min(left, 10*time.Millisecond)):
		}
	}
}

type slowNode struct {
	*gofs.LoopbackNode
	s *slowStore
}

// WrapChild makes every node below the root a slowNode too.
func (n *slowNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &slowNode{LoopbackNode: ln, s: n.s}
	}
	return ops
}

var (
	_ gofs.NodeWrapChilder = (*slowNode)(nil)
	_ gofs.NodeLookuper    = (*slowNode)(nil)
	_ gofs.NodeCreater     = (*slowNode)(nil)
	_ gofs.NodeOpener      = (*slowNode)(nil)
	_ gofs.NodeMkdirer     = (*slowNode)(nil)
	_ gofs.NodeRenamer     = (*slowNode)(nil)
)

func (n *slowNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.s.wait(ctx)
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *slowNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	n.s.wait(ctx)
	return n.LoopbackNode.Create(ctx, name, flags, mode, out)
}

func (n *slowNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.s.wait(ctx)
	return n.LoopbackNode.Open(ctx, flags)
}

func (n *slowNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.s.wait(ctx)
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *slowNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	n.s.wait(ctx)
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// newSlowStore mounts a slow store; it is unmounted in t.Cleanup. Call it
// before mount(), so the daemon is gone before the store is unmounted.
func newSlowStore(t *testing.T) *slowStore {
	t.Helper()
	s := &slowStore{Dir: filepath.Join(t.TempDir(), "slow"), Backing: filepath.Join(t.TempDir(), "backing")}
	for _, d := range []string{s.Dir, s.Backing} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rootOps, err := gofs.NewLoopbackRoot(s.Backing)
	if err != nil {
		t.Fatal(err)
	}
	root := &slowNode{LoopbackNode: rootOps.(*gofs.LoopbackNode), s: s}
	srv, err := gofs.Mount(s.Dir, root, &gofs.Options{
		MountOptions: fuse.MountOptions{FsName: "slowstore", Name: "slowstore", DirectMount: true},
	})
	if err != nil {
		t.Fatalf("mounting the slow store: %v", err)
	}
	s.srv = srv
	t.Cleanup(func() {
		s.SetDelay(0)
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmounting the slow store %s: %v; detaching it", s.Dir, err)
			_ = exec.Command("umount", "-l", s.Dir).Run()
		}
	})
	return s
}

// TestStoreFaultSlow uses a slow safety store: writes take its time but
// succeed; when it hangs past store_timeout, writes still finish (the
// chunks it missed go to the pending list), the mount answers meanwhile,
// reads do not wait for it, and once it recovers the backfill completes
// it.
func TestStoreFaultSlow(t *testing.T) {
	t.Parallel()
	s := newSlowStore(t)
	m := mount(t, withConfig(fmt.Sprintf("dual:\n  store_timeout: 2s\n  backfill_interval: 200ms\nsafety:\n  - name: slow-safety\n    path: %s\n", s.Dir)))
	t.Cleanup(func() { s.SetDelay(0) }) // runs before the unmount
	src := t.TempDir()
	files := map[string][]byte{}
	for i, name := range []string{"slow1", "slow2"} {
		files[name] = randBytes(uint64(460+i), 4<<20+i)
		writeFile(t, filepath.Join(src, name), files[name])
	}
	writeFile(t, m.Path("small"), []byte("small file\n"))

	// Slow: every lookup, create, mkdir and rename waits 10ms (a put makes
	// at least three of them).
	s.SetDelay(10 * time.Millisecond)
	start := time.Now()
	if out, err := sfCopy(filepath.Join(src, "slow1"), m.Path("slow1")); err != nil {
		t.Fatalf("cp with a slow safety store: %v %s", err, out)
	}
	t.Logf("4 MiB with a slow safety store: %s", time.Since(start).Round(time.Millisecond))
	st := m.Stats()
	if st.Tiers[safety].Writes.Errors != 0 || st.PendingBackfill != 0 {
		t.Errorf("a slow (not failing) safety store: write errors %d, pending %d; want 0", st.Tiers[safety].Writes.Errors, st.PendingBackfill)
	}
	if p50s, p50p := st.Tiers[safety].LatencyMS["write_p50"], st.Tiers[primary].LatencyMS["write_p50"]; p50s < 20 || p50s <= p50p {
		t.Errorf("write_p50: safety %.1fms, primary %.1fms; want safety >= 20ms and slower", p50s, p50p)
	}
	m.Remount() // empty caches for the reads below

	// Hung: far past store_timeout (2s).
	s.SetDelay(time.Hour)
	cpDone := make(chan error, 1)
	var cpOut []byte
	go func() {
		var err error
		cpOut, err = exec.Command("cp", filepath.Join(src, "slow2"), m.Path("slow2")).CombinedOutput()
		cpDone <- err
	}()
	sfWithin(t, "stat, ls, cat of a small file and stats while the safety store hangs", 3*time.Second, func() error {
		if _, err := os.Stat(m.Path("slow1")); err != nil {
			return err
		}
		if _, err := os.ReadDir(m.Dir); err != nil {
			return err
		}
		if b, err := os.ReadFile(m.Path("small")); err != nil || string(b) != "small file\n" {
			return fmt.Errorf("small: %q, %v", b, err)
		}
		return sfStats(m)
	})
	sfWithin(t, "reading a 4 MiB file from primary while the safety store hangs", 5*time.Second, func() error {
		b, err := os.ReadFile(m.Path("slow1"))
		if err == nil && !bytes.Equal(b, files["slow1"]) {
			err = errors.New("wrong bytes")
		}
		return err
	})
	select {
	case err := <-cpDone:
		if err != nil {
			t.Errorf("cp while the safety store hangs (require primary): %v %s", err, cpOut)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("cp of 4 MiB did not finish within 30s while the safety store hangs, with store_timeout 2s: a hung store hangs the writer")
		s.SetDelay(0)
		<-cpDone
	}
	raw := m.StatsRaw()
	if sfNum(raw, "tiers.safety.writes.errors") == 0 || sfNum(raw, "pending_backfill") == 0 {
		t.Errorf("after writing with the safety store hung: safety write errors %d, pending %d; want > 0",
			sfNum(raw, "tiers.safety.writes.errors"), sfNum(raw, "pending_backfill"))
	}
	if miss := m.sfLogHas("slow-safety", s.Dir); len(miss) > 0 {
		t.Errorf("the log does not name the hung safety store (missing %q):\n%s", miss, tailLog(m.Logs(), 20, 300))
	}

	// Healthy again: the backfill completes the safety tier.
	s.SetDelay(0)
	writeFile(t, m.Path("kick"), []byte("wakes the backfill\n"))
	m.sfWaitPending(60 * time.Second)
	if r := m.Compare(false); r.Differences() != 0 {
		t.Errorf("compare after the store recovered: %s", r.counts())
	}
	onDisk := sfChunkIDs(t, s.Backing)
	for id := range m.ChunkFiles(primary) {
		if !onDisk[id] {
			t.Errorf("chunk %s is in primary but not in the recovered safety store", id)
		}
	}
	for name := range files {
		cmpFiles(t, filepath.Join(src, name), m.Path(name))
	}
}
