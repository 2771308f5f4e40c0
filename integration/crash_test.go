package integration

// Crash safety (issue #7): the daemon is killed with SIGKILL at random
// points while files are written, compared, repaired and garbage
// collected; then the data dir is checked offline and remounted, and
// every file must be in a state dualstore promises.
//
// What dualstore promises after a kill -9 of the daemon (DESIGN.md §5, and
// fs/vfs/file.go): a file's content changes in the index only at a commit
// point — flush (every close(2)), fsync(2), and truncate(2)/ftruncate(2)
// (which commits what the handle wrote so far too) — and each commit is
// one SQLite transaction, made after every chunk it names is in the
// stores. Names (create, rename, unlink) are committed when the call
// returns. So after a crash:
//
//   - a file whose close() or fsync() returned holds exactly what it held
//     then (unless a later commit point of the same file was reached);
//   - a file in flight holds the content of its last commit point that
//     returned, or of the one under way when the kill came: never a
//     mixture, never a prefix that no commit point had, never garbage. A
//     new file whose open(O_CREAT) returned exists, empty until its first
//     commit; one whose open was under way may be absent.
//   - open(O_TRUNC) of an existing file: the kernel sends FUSE SETATTR
//     size 0 right after the open (go-fuse does not ask for
//     atomic_o_trunc), and dualstore commits it at once, so an in-place
//     rewrite that has not reached close() may leave an EMPTY file, as on
//     ext4 without auto_da_alloc and as POSIX allows. Old content is
//     accepted too (a filesystem may defer the truncate to the next
//     flush). Writing a temp file, fsync, rename over the target is the
//     pattern that is atomic: the target is then its old or its new
//     content, and a rename changes both names in one transaction.
//
// Every close(2) of a descriptor is a flush, including the implicit ones
// of close-on-exec in a child that a process forks while it has the file
// open: from dualstore's side a legitimate commit point the writer never
// asked for. So the writers run in a process of their own that never
// forks (TestCrashChild); the test process forks all the time.
//
// Kills are SIGKILL of the daemon only, not power loss: the page cache of
// the machine survives, so a returned close() is as good as fsync() here.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// crashChunker makes small chunks (about 96 KiB), so files cross many
// chunk boundaries and the index holds many rows.
const crashChunker = "chunker:\n  min_size: 32768\n  avg_size: 65536\n  max_size: 524288\n"

// crashFsck is the offline check of a data dir after every kill:
// `dualstore fsck --data-dir DATA --json` must exit 0 (the index opens,
// its invariants hold, every referenced chunk is in at least one tier).
// crashCheckChunks adds the byte-level checks.
func crashFsck(t *testing.T, data string) {
	t.Helper()
	out, errOut, code := CLI(t, "fsck", "--data-dir", data, "--json")
	if code != 0 {
		t.Errorf("dualstore fsck --data-dir %s: exit %d, want 0 (clean)\nstdout: %s\nstderr: %s", data, code, truncate(out, 4000), truncate(errOut, 4000))
	}
}

// crashEachRef calls fn for every chunk the index references.
func crashEachRef(t *testing.T, db *index.DB, fn func(index.ChunkRef)) {
	t.Helper()
	var after stores.ID
	for {
		refs, err := db.RefChunks(context.Background(), after, 1000)
		if err != nil {
			t.Errorf("listing referenced chunks: %v", err)
			return
		}
		for _, r := range refs {
			fn(r)
		}
		if len(refs) < 1000 {
			return
		}
		after = refs[len(refs)-1].ID
	}
}

func crashChunkPath(data, tier string, id stores.ID) string {
	s := id.String()
	return filepath.Join(data, tier, s[:4], s+".chunk")
}

// crashChunkGood reports whether a tier holds a copy of the chunk that
// hashes to its id and has its size (the default stores do not compress).
func crashChunkGood(data, tier string, r index.ChunkRef) bool {
	b, err := os.ReadFile(crashChunkPath(data, tier, r.ID))
	return err == nil && len(b) == int(r.Size) && stores.ID(blake3.Sum256(b)) == r.ID
}

// crashCheckChunks opens the index of an unmounted data dir (which purges
// the inodes unlinked while open, as a mount does), runs its consistency
// check, and verifies the bytes of every referenced chunk. With both, each tier must hold a good copy or list
// the chunk as pending for it (a one-sided write waiting for backfill);
// without, at least one tier must hold a good copy (data is never lost,
// even while a repair of damaged stores was killed).
func crashCheckChunks(t *testing.T, data string, both bool) {
	t.Helper()
	ctx := context.Background()
	db, err := index.Open(ctx, index.Options{Path: filepath.Join(data, "index.db"), MustExist: true})
	if err != nil {
		t.Errorf("the index does not open: %v", err)
		return
	}
	defer db.Close()
	if err := db.Check(ctx, 20); err != nil {
		t.Errorf("index check: %v", err)
	}
	pending := map[string]map[stores.ID]bool{}
	for _, tier := range tiers {
		pending[tier] = map[stores.ID]bool{}
		ids, err := db.ListPending(ctx, tier, 0)
		if err != nil {
			t.Errorf("pending %s: %v", tier, err)
		}
		for _, id := range ids {
			pending[tier][id] = true
		}
	}
	bad := 0
	crashEachRef(t, db, func(r index.ChunkRef) {
		good := 0
		for _, tier := range tiers {
			if crashChunkGood(data, tier, r) {
				good++
			} else if both && !pending[tier][r.ID] {
				bad++
				if bad <= 20 {
					t.Errorf("chunk %s (%d bytes) is referenced, not pending for %s, and %s holds no good copy", r.ID, r.Size, tier, tier)
				}
			}
		}
		if good == 0 {
			t.Errorf("chunk %s (%d bytes) is referenced and no tier holds a good copy: data lost", r.ID, r.Size)
		}
	})
}

// crashCheckLeftovers checks, after a remount, that the stores removed the
// temp files of the writes the kill interrupted, and that no staging file
// survived. The stores sweep in the background after an unclean close, so
// the temp files may take a moment to go.
func crashCheckLeftovers(t *testing.T, m *Mount) {
	t.Helper()
	var left []string
	_ = waitFor(30*time.Second, func() error { // each one left is reported below
		left = left[:0]
		for _, tier := range tiers {
			_ = filepath.WalkDir(filepath.Join(m.Data, tier), func(p string, d iofs.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
					left = append(left, p)
				}
				return nil
			})
		}
		if len(left) > 0 {
			return fmt.Errorf("%d temp files left", len(left))
		}
		return nil
	})
	for _, p := range left {
		t.Errorf("temp file %s survived the remount by 30 s", p)
	}
	if ents, err := os.ReadDir(filepath.Join(m.Data, "staging")); err == nil && len(ents) > 0 {
		t.Errorf("%d staging files survived the remount, e.g. %s", len(ents), ents[0].Name())
	}
}

// crashState identifies a file's content, or its absence.
type crashState struct {
	exists bool
	size   int
	sum    [32]byte
}

func crashStateOf(exists bool, data []byte) crashState {
	if !exists {
		return crashState{}
	}
	return crashState{exists: true, size: len(data), sum: blake3.Sum256(data)}
}

// key is the state in a report: "absent" or "SIZE:HEXSUM".
func (s crashState) key() string {
	if !s.exists {
		return "absent"
	}
	return fmt.Sprintf("%d:%x", s.size, s.sum)
}

func parseCrashState(k string) (crashState, error) {
	if k == "absent" {
		return crashState{}, nil
	}
	var st crashState
	var sum []byte
	if _, err := fmt.Sscanf(k, "%d:%x", &st.size, &sum); err != nil || len(sum) != 32 {
		return st, fmt.Errorf("bad state %q: %v", k, err)
	}
	st.exists = true
	copy(st.sum[:], sum)
	return st, nil
}

func (s crashState) String() string {
	if !s.exists {
		return "absent"
	}
	return fmt.Sprintf("%d bytes %x", s.size, s.sum[:4])
}

// crashEntry is one name in a writer's directory.
type crashEntry struct {
	exists bool
	data   []byte // content as of the last commit point (never modified in place)
	// ok are the states a crash may leave: the last durable one and those
	// of the commit under way.
	ok []crashState
}

// crashChange is what a commit point does to one name.
type crashChange struct {
	name   string
	exists bool
	data   []byte
	// keep: the old state stays acceptable after the call returned
	// (open with O_TRUNC).
	keep bool
}

// crashWriter writes, rewrites, renames and removes files in its own
// directory of the mount until a syscall fails (the kill), keeping a model
// of what a crash may leave of each name. Writers run in a process of
// their own (TestCrashChild), which never forks: every close(2), the
// implicit ones of close-on-exec in a forked child included, makes FUSE
// flush the file, and a flush is a commit point; the test process forks
// all the time (daemons, CLIs, other tests), and would commit the
// writers' files behind their backs. The test process holds the same
// type, filled from the child's report, to check the files after the
// kill.
type crashWriter struct {
	id    int
	dir   string
	rng   *rand.Rand
	files map[string]*crashEntry
	next  int

	// inflight is the multi-name commit under way (a rename): a crash
	// leaves all its names old or all new.
	inflight map[string][2]crashState

	errs []crashErr // failures, with when they happened
	// after kills: names checked, names with more than one acceptable
	// state, and of those the ones found in the newest.
	checked, ambiguous, newest int
	ops                        int
	syscalls                   int
	commits                    int
	maxFiles                   int
}

// crashErr is a failed call of a writer; At (Unix ns) tells the test
// whether it came before the kill.
type crashErr struct {
	At  int64
	Msg string
}

func newCrashWriter(id int, dir string) *crashWriter {
	return &crashWriter{id: id, dir: dir, files: map[string]*crashEntry{}, maxFiles: 8}
}

func (w *crashWriter) path(name string) string { return filepath.Join(w.dir, name) }

func (w *crashWriter) entry(name string) *crashEntry {
	e, ok := w.files[name]
	if !ok {
		e = &crashEntry{ok: []crashState{{}}}
		w.files[name] = e
	}
	return e
}

// existing returns the names that exist now, in order.
func (w *crashWriter) existing() []string {
	var out []string
	for _, n := range sortedKeys(w.files) {
		if w.files[n].exists {
			out = append(out, n)
		}
	}
	return out
}

func (w *crashWriter) newName(prefix string) string {
	w.next++
	return fmt.Sprintf("%s%d", prefix, w.next)
}

// call runs one syscall that commits nothing.
func (w *crashWriter) call(what string, fn func() error) error {
	w.syscalls++
	if err := fn(); err != nil {
		w.errs = append(w.errs, crashErr{At: time.Now().UnixNano(), Msg: fmt.Sprintf("%s: %v", what, err)})
		return err
	}
	return nil
}

// commit runs one syscall that is a commit point for changes: while it
// runs a crash may leave each name old or new; once it returned, new.
func (w *crashWriter) commit(what string, fn func() error, changes ...crashChange) error {
	before := map[string]crashState{}
	if len(changes) > 1 {
		w.inflight = map[string][2]crashState{}
	}
	for _, c := range changes {
		e := w.entry(c.name)
		before[c.name] = crashStateOf(e.exists, e.data)
		after := crashStateOf(c.exists, c.data)
		if !slices.Contains(e.ok, after) {
			e.ok = append(e.ok, after)
		}
		if w.inflight != nil {
			w.inflight[c.name] = [2]crashState{before[c.name], after}
		}
	}
	if err := w.call(what, fn); err != nil {
		return err
	}
	w.inflight = nil
	w.commits++
	for _, c := range changes {
		e := w.files[c.name]
		after := crashStateOf(c.exists, c.data)
		e.ok = []crashState{after}
		if c.keep && before[c.name] != after {
			e.ok = append(e.ok, before[c.name])
		}
		e.exists, e.data = c.exists, c.data
		if !e.exists && len(e.ok) == 1 {
			delete(w.files, c.name)
		}
	}
	return nil
}

// size draws a file size: mostly small, some of several chunks, a few of
// several MiB.
func (w *crashWriter) size() int {
	switch r := w.rng.IntN(100); {
	case r < 45:
		return w.rng.IntN(64 << 10)
	case r < 85:
		return 64<<10 + w.rng.IntN(1<<20)
	default:
		return 1<<20 + w.rng.IntN(3<<20)
	}
}

// piece draws the length of one write(2).
func (w *crashWriter) piece(left int) int {
	n := 1 + w.rng.IntN(256<<10)
	if w.rng.IntN(8) == 0 {
		n = 1 + w.rng.IntN(1<<20)
	}
	return min(n, left)
}

func (w *crashWriter) content(n int) []byte { return randBytes(w.rng.Uint64(), n) }

// writeAll writes data[from:] through f in pieces; at fsyncAt (if within)
// it fsyncs, a commit point of data[:fsyncAt] for name.
func (w *crashWriter) writeAll(f *os.File, name string, data []byte, from, fsyncAt int) error {
	for off := from; off < len(data); {
		n := w.piece(len(data) - off)
		if fsyncAt > off && fsyncAt < off+n {
			n = fsyncAt - off
		}
		if err := w.call("write "+name, func() error { _, err := f.Write(data[off : off+n]); return err }); err != nil {
			return err
		}
		off += n
		if off == fsyncAt {
			if err := w.commit("fsync "+name, f.Sync, crashChange{name: name, exists: true, data: data[:off]}); err != nil {
				return err
			}
		}
	}
	return nil
}

// fsyncPoint draws where a write of n bytes fsyncs (-1: never).
func (w *crashWriter) fsyncPoint(n int) int {
	if n == 0 || w.rng.IntN(3) != 0 {
		return -1
	}
	return 1 + w.rng.IntN(n)
}

// closeFile closes f, a commit point of data for name.
func (w *crashWriter) closeFile(f *os.File, name string, data []byte) error {
	return w.commit("close "+name, f.Close, crashChange{name: name, exists: true, data: data})
}

// run applies random operations until one fails.
func (w *crashWriter) run() {
	for {
		w.ops++
		if err := w.step(); err != nil {
			return
		}
	}
}

func (w *crashWriter) step() error {
	names := w.existing()
	op := w.rng.IntN(100)
	if len(names) == 0 {
		op = 0
	} else if len(names) >= w.maxFiles && op < 30 {
		op = 90 // make room
	}
	switch {
	case op < 25:
		return w.opCreate()
	case op < 40:
		return w.opReplace(names)
	case op < 52:
		return w.opRewrite(names[w.rng.IntN(len(names))])
	case op < 64:
		return w.opOverwrite(names[w.rng.IntN(len(names))])
	case op < 72:
		return w.opAppend(names[w.rng.IntN(len(names))])
	case op < 80:
		return w.opTruncate(names[w.rng.IntN(len(names))])
	case op < 86:
		return w.opVerify(names[w.rng.IntN(len(names))])
	case op < 90:
		return w.opRename(names[w.rng.IntN(len(names))])
	case op < 95:
		return w.opUnlinkOpen(names[w.rng.IntN(len(names))])
	default:
		name := names[w.rng.IntN(len(names))]
		return w.commit("unlink "+name, func() error { return os.Remove(w.path(name)) }, crashChange{name: name})
	}
}

// opUnlinkOpen removes a file that it holds open and goes on writing to
// it: a kill before the close leaves an orphan inode, which the next
// mount must purge (and fsck must then find the references it held
// released).
func (w *crashWriter) opUnlinkOpen(name string) error {
	var f *os.File
	if err := w.call("open "+name, func() (err error) { f, err = os.OpenFile(w.path(name), os.O_RDWR, 0); return err }); err != nil {
		return err
	}
	if err := w.commit("unlink open "+name, func() error { return os.Remove(w.path(name)) }, crashChange{name: name}); err != nil {
		f.Close()
		return err
	}
	buf := w.content(w.size())
	if err := w.call("write unlinked "+name, func() error { _, err := f.WriteAt(buf, int64(w.rng.IntN(64<<10))); return err }); err != nil {
		f.Close()
		return err
	}
	if w.rng.IntN(2) == 0 {
		if err := w.call("fsync unlinked "+name, f.Sync); err != nil {
			f.Close()
			return err
		}
	}
	return w.call("close unlinked "+name, f.Close)
}

// opCreate writes a new file, maybe fsyncing part way, and closes it.
func (w *crashWriter) opCreate() error {
	name := w.newName("f")
	data := w.content(w.size())
	var f *os.File
	err := w.commit("create "+name, func() (err error) {
		f, err = os.OpenFile(w.path(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		return err
	}, crashChange{name: name, exists: true, data: []byte{}})
	if err != nil {
		return err
	}
	if err := w.writeAll(f, name, data, 0, w.fsyncPoint(len(data))); err != nil {
		f.Close()
		return err
	}
	return w.closeFile(f, name, data)
}

// opReplace is the atomic pattern: a temp file written, fsynced, closed
// and renamed over an existing name (or to a new one).
func (w *crashWriter) opReplace(names []string) error {
	target := names[w.rng.IntN(len(names))]
	if w.rng.IntN(4) == 0 {
		target = w.newName("f")
	}
	tmp := w.newName("tmp")
	data := w.content(w.size())
	var f *os.File
	err := w.commit("create "+tmp, func() (err error) {
		f, err = os.OpenFile(w.path(tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		return err
	}, crashChange{name: tmp, exists: true, data: []byte{}})
	if err != nil {
		return err
	}
	if err := w.writeAll(f, tmp, data, 0, len(data)); err != nil {
		f.Close()
		return err
	}
	if len(data) == 0 {
		if err := w.commit("fsync "+tmp, f.Sync, crashChange{name: tmp, exists: true, data: data}); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.closeFile(f, tmp, data); err != nil {
		return err
	}
	return w.commit("rename "+tmp+" "+target, func() error { return os.Rename(w.path(tmp), w.path(target)) },
		crashChange{name: tmp}, crashChange{name: target, exists: true, data: data})
}

// opRewrite rewrites a file in place: open(O_TRUNC), write, close.
func (w *crashWriter) opRewrite(name string) error {
	data := w.content(w.size())
	var f *os.File
	err := w.commit("open O_TRUNC "+name, func() (err error) {
		f, err = os.OpenFile(w.path(name), os.O_WRONLY|os.O_TRUNC, 0)
		return err
	}, crashChange{name: name, exists: true, data: []byte{}, keep: true})
	if err != nil {
		return err
	}
	if err := w.writeAll(f, name, data, 0, w.fsyncPoint(len(data))); err != nil {
		f.Close()
		return err
	}
	return w.closeFile(f, name, data)
}

// opOverwrite writes a few ranges at random offsets (some past the end,
// leaving holes) and closes: the staging and re-chunking path.
func (w *crashWriter) opOverwrite(name string) error {
	data := slices.Clone(w.files[name].data)
	var f *os.File
	if err := w.call("open "+name, func() (err error) { f, err = os.OpenFile(w.path(name), os.O_RDWR, 0); return err }); err != nil {
		return err
	}
	for range 1 + w.rng.IntN(4) {
		off := w.rng.IntN(len(data) + 64<<10)
		buf := w.content(1 + w.rng.IntN(200<<10))
		if err := w.call("pwrite "+name, func() error { _, err := f.WriteAt(buf, int64(off)); return err }); err != nil {
			f.Close()
			return err
		}
		if end := off + len(buf); end > len(data) {
			data = append(data, make([]byte, end-len(data))...)
		}
		copy(data[off:], buf)
	}
	if w.rng.IntN(3) == 0 {
		if err := w.commit("fsync "+name, f.Sync, crashChange{name: name, exists: true, data: data}); err != nil {
			f.Close()
			return err
		}
	}
	return w.closeFile(f, name, data)
}

// opAppend appends with O_APPEND and closes.
func (w *crashWriter) opAppend(name string) error {
	old := w.files[name].data
	data := append(slices.Clone(old), w.content(1+w.rng.IntN(512<<10))...)
	var f *os.File
	if err := w.call("open O_APPEND "+name, func() (err error) {
		f, err = os.OpenFile(w.path(name), os.O_WRONLY|os.O_APPEND, 0)
		return err
	}); err != nil {
		return err
	}
	if err := w.writeAll(f, name, data, len(old), -1); err != nil {
		f.Close()
		return err
	}
	return w.closeFile(f, name, data)
}

// opTruncate truncates (by path, or through a handle after writing a bit,
// which commits both).
func (w *crashWriter) opTruncate(name string) error {
	old := w.files[name].data
	n := w.rng.IntN(len(old) + 128<<10 + 1)
	resized := func(b []byte, n int) []byte {
		out := make([]byte, n)
		copy(out, b)
		return out
	}
	if w.rng.IntN(2) == 0 {
		return w.commit("truncate "+name, func() error { return os.Truncate(w.path(name), int64(n)) },
			crashChange{name: name, exists: true, data: resized(old, n)})
	}
	var f *os.File
	if err := w.call("open "+name, func() (err error) { f, err = os.OpenFile(w.path(name), os.O_RDWR, 0); return err }); err != nil {
		return err
	}
	data := slices.Clone(old)
	if len(data) > 0 {
		off := w.rng.IntN(len(data))
		buf := w.content(min(len(data)-off, 1+w.rng.IntN(64<<10)))
		if err := w.call("pwrite "+name, func() error { _, err := f.WriteAt(buf, int64(off)); return err }); err != nil {
			f.Close()
			return err
		}
		copy(data[off:], buf)
	}
	data = resized(data, n)
	if err := w.commit("ftruncate "+name, func() error { return f.Truncate(int64(n)) },
		crashChange{name: name, exists: true, data: data}); err != nil {
		f.Close()
		return err
	}
	return w.closeFile(f, name, data)
}

// opVerify reads a file back while the daemon lives.
func (w *crashWriter) opVerify(name string) error {
	var got []byte
	if err := w.call("read "+name, func() (err error) { got, err = os.ReadFile(w.path(name)); return err }); err != nil {
		return err
	}
	if want := w.files[name].data; crashStateOf(true, got) != crashStateOf(true, want) {
		w.errs = append(w.errs, crashErr{At: time.Now().UnixNano(),
			Msg: fmt.Sprintf("read %s while mounted: %s, want %s", name, crashStateOf(true, got), crashStateOf(true, want))})
		return errors.New("content differs")
	}
	return nil
}

// opRename renames a file to a new name.
func (w *crashWriter) opRename(name string) error {
	to := w.newName("f")
	data := w.files[name].data
	return w.commit("rename "+name+" "+to, func() error { return os.Rename(w.path(name), w.path(to)) },
		crashChange{name: name}, crashChange{name: to, exists: true, data: data})
}

// recover checks the writer's directory after a crash and a remount
// against the model (from the child's report), and takes what it finds as
// the new model.
func (w *crashWriter) recover(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		t.Errorf("writer %d: listing %s after the crash: %v", w.id, w.dir, err)
		return
	}
	onDisk := map[string]bool{}
	for _, e := range ents {
		onDisk[e.Name()] = true
	}
	all := map[string]bool{}
	for n := range w.files {
		all[n] = true
	}
	for n := range onDisk {
		all[n] = true
	}
	found := map[string]crashState{}
	for _, name := range sortedKeys(all) {
		var data []byte
		if onDisk[name] {
			p := w.path(name)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Errorf("writer %d: stat %s: %v", w.id, name, err)
				continue
			}
			if fi.Mode() != 0o644 {
				t.Errorf("writer %d: %s has mode %v, want -rw-r--r--", w.id, name, fi.Mode())
			}
			if data, err = os.ReadFile(p); err != nil {
				t.Errorf("writer %d: reading %s after the crash: %v", w.id, name, err)
				continue
			}
			if int64(len(data)) != fi.Size() {
				t.Errorf("writer %d: %s: stat says %d bytes, read gives %d", w.id, name, fi.Size(), len(data))
			}
		}
		got := crashStateOf(onDisk[name], data)
		found[name] = got
		ok := []crashState{{}}
		if e := w.files[name]; e != nil {
			ok = e.ok
		}
		if !slices.Contains(ok, got) {
			t.Errorf("writer %d: after the crash %s is %s; acceptable: %v", w.id, name, got, ok)
		}
		w.checked++
		if len(ok) > 1 {
			w.ambiguous++
			if got == ok[len(ok)-1] {
				w.newest++
			}
		}
		if got.exists {
			w.files[name] = &crashEntry{exists: true, ok: []crashState{got}}
		} else {
			delete(w.files, name)
		}
	}
	// A rename under way: both names old, or both new.
	var sides []string
	for _, name := range sortedKeys(w.inflight) {
		ba := w.inflight[name]
		switch got := found[name]; {
		case ba[0] == ba[1]:
		case got == ba[0]:
			sides = append(sides, name+": old")
		case got == ba[1]:
			sides = append(sides, name+": new")
		}
	}
	if len(sides) == 2 && strings.HasSuffix(sides[0], "old") != strings.HasSuffix(sides[1], "old") {
		t.Errorf("writer %d: a rename was cut in half by the crash: %v", w.id, sides)
	}
	w.inflight = nil
}

// crashDelay draws how long the daemon runs before the kill.
func crashDelay(rng *rand.Rand, short, long time.Duration) time.Duration {
	if rng.IntN(4) == 0 {
		return time.Duration(rng.Int64N(int64(short)))
	}
	return short + time.Duration(rng.Int64N(int64(long-short)))
}

// crashChildEnv carries a writer process's job (JSON) to TestCrashChild.
const crashChildEnv = "DUALSTORE_CRASH_CHILD"

// crashReady is what a writer process prints once it has read its
// directories and starts writing.
const crashReady = "CRASH-CHILD-READY"

type crashChildJob struct {
	Dirs     []string
	Seed     uint64
	Cycle    int
	MaxFiles int
	Report   string // file the report goes to
}

// crashReport is what a writer process tells the test after the kill.
type crashReport struct {
	Writers []crashWriterReport
}

type crashWriterReport struct {
	OK                     map[string][]string // name → acceptable states (crashState.key)
	Inflight               map[string][2]string
	Errs                   []crashErr
	Ops, Syscalls, Commits int
}

// TestCrashChild is the writer process of the crash tests; it skips
// unless started by one. It reads its directories (the model starts from
// what is there), runs one writer per directory until every one fails
// (the daemon is killed), and writes its report.
func TestCrashChild(t *testing.T) {
	env := os.Getenv(crashChildEnv)
	if env == "" {
		t.Skip("runs only as the writer process of the crash tests")
	}
	var job crashChildJob
	if err := json.Unmarshal([]byte(env), &job); err != nil {
		t.Fatalf("%s: %v", crashChildEnv, err)
	}
	ws := make([]*crashWriter, len(job.Dirs))
	for i, dir := range job.Dirs {
		w := newCrashWriter(i, dir)
		w.rng = relRand(job.Seed+uint64(job.Cycle)*7919, uint64(100+i))
		w.next = 100000 * job.Cycle // names never repeat across cycles
		w.maxFiles = job.MaxFiles
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			w.files[e.Name()] = &crashEntry{exists: true, data: data, ok: []crashState{crashStateOf(true, data)}}
		}
		ws[i] = w
	}
	fmt.Println(crashReady)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	wg.Wait()
	var rep crashReport
	for _, w := range ws {
		wr := crashWriterReport{OK: map[string][]string{}, Errs: w.errs, Ops: w.ops, Syscalls: w.syscalls, Commits: w.commits}
		for name, e := range w.files {
			for _, st := range e.ok {
				wr.OK[name] = append(wr.OK[name], st.key())
			}
		}
		if w.inflight != nil {
			wr.Inflight = map[string][2]string{}
			for name, ba := range w.inflight {
				wr.Inflight[name] = [2]string{ba[0].key(), ba[1].key()}
			}
		}
		rep.Writers = append(rep.Writers, wr)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job.Report, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// crashChild is a running writer process.
type crashChild struct {
	job  crashChildJob
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// crashStartChild starts a writer process on the writers' directories
// and waits until it writes.
func crashStartChild(t *testing.T, ws []*crashWriter, seed uint64, cycle int) *crashChild {
	t.Helper()
	job := crashChildJob{Seed: seed, Cycle: cycle, MaxFiles: ws[0].maxFiles, Report: filepath.Join(t.TempDir(), "report.json")}
	for _, w := range ws {
		job.Dirs = append(job.Dirs, w.dir)
	}
	b, _ := json.Marshal(job)
	c := &crashChild{job: job, out: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), crashChildEnv+"="+string(b), "DUALSTORE_BIN="+bin)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting the writer process: %v", err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	deadline := time.Now().Add(actionDeadline)
	for !strings.Contains(c.out.String(), crashReady) {
		select {
		case err := <-c.done:
			t.Fatalf("the writer process exited before writing: %v\n%s", err, tailLog(c.out.String(), 60, 2000))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			t.Fatalf("the writer process did not start within %s\n%s", actionDeadline, tailLog(c.out.String(), 60, 2000))
		}
	}
	return c
}

// crashKill kills the daemon, waits for the writer process to see it and
// report, and loads the report into the writers. Failures the writers saw
// before the kill fail the test.
func crashKill(t *testing.T, m *Mount, c *crashChild, ws []*crashWriter) {
	t.Helper()
	killAt := time.Now().UnixNano()
	m.Kill()
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("the writer process failed: %v\n%s", err, tailLog(c.out.String(), 60, 2000))
		}
	case <-time.After(actionDeadline):
		_ = c.cmd.Process.Kill()
		t.Fatalf("the writer process still runs %s after the daemon was killed\n%s", actionDeadline, tailLog(c.out.String(), 60, 2000))
	}
	b, err := os.ReadFile(c.job.Report)
	if err != nil {
		t.Fatalf("the writer process's report: %v\n%s", err, tailLog(c.out.String(), 60, 2000))
	}
	var rep crashReport
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Writers) != len(ws) {
		t.Fatalf("the writer process's report (%d writers): %v", len(rep.Writers), err)
	}
	for i, w := range ws {
		wr := rep.Writers[i]
		w.ops, w.syscalls, w.commits = w.ops+wr.Ops, w.syscalls+wr.Syscalls, w.commits+wr.Commits
		w.files = map[string]*crashEntry{}
		for name, keys := range wr.OK {
			e := &crashEntry{}
			for _, k := range keys {
				st, err := parseCrashState(k)
				if err != nil {
					t.Fatal(err)
				}
				e.ok = append(e.ok, st)
			}
			w.files[name] = e
		}
		w.inflight = nil
		if wr.Inflight != nil {
			w.inflight = map[string][2]crashState{}
			for name, ba := range wr.Inflight {
				before, err1 := parseCrashState(ba[0])
				after, err2 := parseCrashState(ba[1])
				if err := errors.Join(err1, err2); err != nil {
					t.Fatal(err)
				}
				w.inflight[name] = [2]crashState{before, after}
			}
		}
		for _, e := range wr.Errs {
			if e.At < killAt {
				t.Errorf("writer %d, %s before the kill: %s", w.id, time.Duration(killAt-e.At).Round(time.Microsecond), e.Msg)
			}
		}
	}
}

// TestCrashWriters kills the daemon (SIGKILL) at random moments while four
// writers (goroutines of a writer process, TestCrashChild) create, fsync,
// rewrite, overwrite, append to, truncate, rename and remove files; after each kill the data dir is checked offline
// (crashFsck, and every referenced chunk verified in both tiers), the
// filesystem is remounted, every file must be in a state the model allows
// (see the top of this file), and a deep comparison of the tiers must be
// clean. Several kill/remount cycles run on the same data dir.
func TestCrashWriters(t *testing.T) {
	t.Parallel()
	relRunSeeds(t, relSeeds(t, relPick(3, 16)), func(t *testing.T, seed uint64) {
		crashWriters(t, seed, relPick(3, 8))
	})
}

func crashWriters(t *testing.T, seed uint64, cycles int) {
	rng := relRand(seed, 0)
	m := mount(t, withConfig(crashChunker))
	ws := make([]*crashWriter, 4)
	for i := range ws {
		dir := m.Path(fmt.Sprintf("w%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ws[i] = newCrashWriter(i, dir)
	}
	for cycle := range cycles {
		c := crashStartChild(t, ws, seed, cycle)
		d := crashDelay(rng, 150*time.Millisecond, 2*time.Second)
		time.Sleep(d) // the kill comes at a random point of the writes: not synchronisation
		crashKill(t, m, c, ws)
		crashFsck(t, m.Data)
		crashCheckChunks(t, m.Data, true)
		m.start()
		crashCheckLeftovers(t, m)
		var ops, syscalls, commits, checked, ambiguous, newest int
		for _, w := range ws {
			w.recover(t)
			ops, syscalls, commits = ops+w.ops, syscalls+w.syscalls, commits+w.commits
			checked, ambiguous, newest = checked+w.checked, ambiguous+w.ambiguous, newest+w.newest
		}
		t.Logf("cycle %d: killed after %s; so far %d operations, %d syscalls, %d commit points; after the kills %d names checked, %d caught mid-commit (%d in the new state)",
			cycle, d.Round(time.Millisecond), ops, syscalls, commits, checked, ambiguous, newest)
		if r := m.Compare(true); r.Differences() != 0 {
			t.Errorf("cycle %d: deep comparison after the crash: %s", cycle, r.counts())
		}
		if t.Failed() {
			return
		}
	}
	m.Unmount()
	crashFsck(t, m.Data)
	crashCheckChunks(t, m.Data, true)
}

// TestCrashCompare kills the daemon during deep comparisons (throttled so
// the kill lands inside them) while a writer works beside them.
func TestCrashCompare(t *testing.T) {
	t.Parallel()
	relRunSeeds(t, relSeeds(t, relPick(2, 6)), func(t *testing.T, seed uint64) {
		crashAction(t, seed, "compare deep", relPick(2, 5))
	})
}

// TestCrashGC kills the daemon during online gcs (`echo gc > ctl`), each
// after files were rewritten (their old chunks are garbage) and while a
// writer works beside it: gc must never have removed a chunk that a file
// references, or that the writer's next commit is about to reference;
// after the cycles a gc to its end leaves only referenced chunks.
func TestCrashGC(t *testing.T) {
	t.Parallel()
	relRunSeeds(t, relSeeds(t, relPick(2, 6)), func(t *testing.T, seed uint64) {
		crashAction(t, seed, "gc", relPick(3, 8))
	})
}

// TestCrashRepair damages random chunks (one side each: removed or
// corrupted, in primary or in safety), starts a repair and kills the
// daemon during it, while a writer works beside it; the kill must never
// lose the last good copy of a chunk, and after the cycles one repair to
// its end leaves both tiers whole.
func TestCrashRepair(t *testing.T) {
	t.Parallel()
	relRunSeeds(t, relSeeds(t, relPick(2, 6)), func(t *testing.T, seed uint64) {
		crashAction(t, seed, "repair", relPick(2, 5))
	})
}

func crashAction(t *testing.T, seed uint64, action string, cycles int) {
	rng := relRand(seed, 0)
	// 8 MiB/s: a deep pass over the ~12 MiB below (both copies) takes
	// about three seconds.
	m := mount(t, withConfig(crashChunker+"compare:\n  rate: 8388608\n"))
	repair, gc := action == "repair", action == "gc"
	static := map[string][]byte{}
	if err := os.Mkdir(m.Path("static"), 0o755); err != nil {
		t.Fatal(err)
	}
	rewrite := func(name string) {
		static[name] = randBytes(rng.Uint64(), 64<<10+rng.IntN(2<<20))
		if err := os.WriteFile(m.Path("static", name), static[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		rewrite(fmt.Sprintf("s%d", i))
	}
	if err := os.Mkdir(m.Path("w0"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := newCrashWriter(0, m.Path("w0"))
	w.maxFiles = 4
	ws := []*crashWriter{w}
	for cycle := range cycles {
		what := ""
		switch {
		case repair:
			what = fmt.Sprintf("%d chunks damaged; ", crashDamage(t, m, rng))
		case gc:
			// Garbage for gc: rewritten files leave their old chunks
			// unreferenced.
			n := 0
			for _, name := range sortedKeys(static) {
				if rng.IntN(2) == 0 {
					rewrite(name)
					n++
				}
			}
			// And a file of ~90 chunks written and removed.
			junk := m.Path("static", "junk")
			if err := os.WriteFile(junk, randBytes(rng.Uint64(), 8<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(junk); err != nil {
				t.Fatal(err)
			}
			what = fmt.Sprintf("%d files rewritten, one of 8 MiB removed; ", n)
		}
		c := crashStartChild(t, ws, seed, cycle)
		if err := m.Ctl(action); err != nil {
			t.Fatalf("echo %s > .dualstore/ctl: %v", action, err)
		}
		// Kill at a random point of the action's progress (gc is not
		// throttled: poll it closely).
		poll := 5 * time.Millisecond
		if gc {
			poll = 500 * time.Microsecond
		}
		frac := 0.9 * rng.Float64()
		start := time.Now()
		r := m.Report()
		for r.State == "running" && (r.Total == 0 || float64(r.Done) < frac*float64(r.Total)) && time.Since(start) < actionDeadline {
			time.Sleep(poll) // a poll closer than waitFor's, to kill near the point chosen; an action that ends first is killed anyway
			r = m.Report()
		}
		what += fmt.Sprintf("killed at %.0f%%, after %s", 100*frac, time.Since(start).Round(time.Millisecond))
		crashKill(t, m, c, ws)
		t.Logf("cycle %d: %s during %s: %s %d/%d chunks", cycle, what, action, r.State, r.Done, r.Total)
		crashFsck(t, m.Data)
		crashCheckChunks(t, m.Data, !repair)
		m.start()
		crashCheckLeftovers(t, m)
		w.recover(t)
		if t.Failed() {
			return
		}
	}
	if repair {
		if r := m.Action("repair"); r.State != "done" || r.Unrecoverable != 0 || r.Missing != 0 {
			t.Errorf("repair after the crashes: state %s, %s", r.State, r.counts())
		}
	}
	if gc {
		if r := m.Action("gc"); r.State != "done" || r.Errors != 0 {
			t.Errorf("gc after the crashes: %+v", r)
		}
		// Nothing runs now: every chunk file left is referenced.
		want := m.Stats().UniqueChunks
		for _, tier := range tiers {
			if n := int64(len(m.ChunkFiles(tier))); n != want {
				t.Errorf("after gc the %s tier holds %d chunk files, want the %d referenced", tier, n, want)
			}
		}
	}
	for name, want := range static {
		if got, err := os.ReadFile(m.Path("static", name)); err != nil || !slices.Equal(got, want) {
			t.Errorf("static/%s after the crashes: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep comparison at the end: %s", r.counts())
	}
	m.Unmount()
	crashFsck(t, m.Data)
	crashCheckChunks(t, m.Data, true)
}

// crashDamage removes or corrupts (in place, same size) one copy of about
// a third of the chunks whose two copies are both good, and returns how
// many it damaged.
func crashDamage(t *testing.T, m *Mount, rng *rand.Rand) int {
	t.Helper()
	p, s := m.ChunkFiles(primary), m.ChunkFiles(safety)
	good := func(path, id string) bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		sum := blake3.Sum256(b)
		return fmt.Sprintf("%x", sum) == id
	}
	n := 0
	for _, id := range sortedKeys(p) {
		if _, ok := s[id]; !ok || rng.IntN(3) != 0 || !good(p[id], id) || !good(s[id], id) {
			continue
		}
		path := p[id]
		if rng.IntN(2) == 0 {
			path = s[id]
		}
		if rng.IntN(2) == 0 {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			off := st.Size() / 3
			b := make([]byte, min(32, st.Size()-off))
			if _, err := f.ReadAt(b, off); err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] ^= 0xa5
			}
			_, err = f.WriteAt(b, off)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	return n
}
