package integration

// Power loss (issue #19): the data dir, with the index and both default
// local stores, lies on the power-loss layer (integration/powerloss), a
// FUSE loopback that keeps written data in memory until an fsync reaches
// it. A power cut is SIGKILL of the dualstore daemon, then of the layer:
// everything not fsynced is gone, as on a machine that loses power. Then
// a fresh layer and dualstore are mounted on the same data dir, and:
//
//   - a file fsync'd after its last change is exact (DESIGN.md §5: "after
//     fsync() returns it also survives power loss"), in the default
//     configuration (subtests config=default: the stores sync with one
//     syncfs(2) at a file's fsync) and with `fsync: true` on both local
//     stores (config=fsync);
//   - any other file is in a state it went through since its last fsync
//     (absent, empty, or the content of one of its commit points: a
//     close, an fsync, a truncate, a rename), never unreadable (EIO) and
//     never bytes it never held;
//   - a deep comparison of the tiers (online, after the remount) and
//     `dualstore fsck --deep` (offline, after a clean unmount that
//     follows) are clean. They run after the remount, not on the data dir
//     as the power loss left it: a daemon may heal or revert at mount
//     what a power loss left behind.
//
// Linux does not pass syncfs(2) on to a FUSE daemon, so syncfs on the
// layer makes nothing durable, as it would not on any FUSE filesystem
// under the stores (TestPowerLossLayer shows it).
//
// The tests do not run in parallel with others: every fork of the test
// process closes, in the child, the descriptors it holds open on the
// mount, and each such close is a flush (a commit point) that the model
// does not expect. Go runs the serial tests alone.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPowerLossLayer checks the layer itself, without dualstore: after a
// power cut (SIGKILL of the layer, a fresh one on the same backing dir) a
// fsync'd file is exact, a closed one is empty (its name survived, its
// data did not), syncfs(2) made nothing durable, unsynced data followed
// its inode through a rename, and an unsynced truncate is undone. Before
// the cut, reads and stat see everything.
func TestPowerLossLayer(t *testing.T) {
	l := startLayer(t)
	p := func(name string) string { return filepath.Join(l.Dir, name) }
	data := randBytes(1960, 300<<10+3)
	write := func(name string, b []byte) *os.File {
		f, err := os.OpenFile(p(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		return f
	}
	closeFile := func(f *os.File) {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(p("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := write("dir/fsynced", data)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	closeFile(f)
	closeFile(write("closed", data))
	f = write("syncfs", data)
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatalf("syncfs: %v", err)
	}
	closeFile(f)
	closeFile(write("tmp", data[:70000]))
	if err := os.Rename(p("tmp"), p("renamed")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p("renamed"), os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil { // a read-only descriptor of the renamed inode
		t.Fatal(err)
	}
	closeFile(f)
	f = write("truncated", data)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	closeFile(f)
	if err := os.Truncate(p("truncated"), 1000); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"dir/fsynced": data, "closed": data, "syncfs": data, "renamed": data[:70000], "truncated": data[:1000]}
	for _, name := range sortedKeys(want) {
		if got, err := os.ReadFile(p(name)); err != nil || !slices.Equal(got, want[name]) {
			t.Errorf("%s before the cut: %d bytes, %v; want its %d bytes", name, len(got), err, len(want[name]))
		}
	}

	l.kill()
	l.start(plBinary(t))
	want = map[string][]byte{"dir/fsynced": data, "closed": {}, "syncfs": {}, "renamed": data[:70000], "truncated": data}
	for _, name := range sortedKeys(want) {
		if got, err := os.ReadFile(p(name)); err != nil || !slices.Equal(got, want[name]) {
			t.Errorf("%s after the cut: %d bytes, %v; want %d bytes", name, len(got), err, len(want[name]))
		}
	}
	if _, err := os.Stat(p("tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tmp after the cut: %v, want it renamed away", err)
	}
}

// plWrite creates path with data through the mount in pieces of up to 1
// MiB, fsyncs it (sync: "fsync" or "fdatasync"; "" for none) and closes
// it, recording the states in pm as it goes. Any error fails the test:
// this is before the cut.
func plWrite(t *testing.T, pm *plModel, root, name string, data []byte, sync string) {
	t.Helper()
	st := crashStateOf(true, data)
	pm.may(name, crashStateOf(true, nil))
	f, err := os.OpenFile(filepath.Join(root, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off:min(len(data), off+1<<20)]); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
	}
	switch sync {
	case "fsync":
		pm.may(name, st)
		err = f.Sync()
	case "fdatasync":
		pm.may(name, st)
		err = unix.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		t.Fatalf("%s %s: %v", sync, name, err)
	}
	if sync != "" {
		pm.durable(name, st, sync+"'d")
	}
	pm.may(name, st)
	if err := f.Close(); err != nil {
		t.Fatalf("closing %s: %v", name, err)
	}
}

// TestPowerLossFsync writes files of various sizes (empty, tiny, and
// above 8 MiB) and fsyncs (or fdatasyncs) them, then writes more files
// that are closed but not fsynced, and cuts the power: every fsync'd file
// must be exact, every other one absent, empty or exact.
func TestPowerLossFsync(t *testing.T) {
	plRunConfigs(t, func(t *testing.T, cfg plConfig) {
		m, l := plMount(t, cfg)
		if err := os.Mkdir(m.Path("d"), 0o755); err != nil {
			t.Fatal(err)
		}
		pm := newPLModel(m.Dir, "", "d")
		synced := []struct {
			name string
			size int
			sync string
		}{
			{"empty", 0, "fsync"},
			{"tiny", 1, "fsync"},
			{"small", 100, "fdatasync"},
			{"page", 4096, "fsync"},
			{"d/medium", 300<<10 + 7, "fsync"},
			{"d/two-mib", 2<<20 + 1, "fdatasync"},
			{"big", 9<<20 + 123, "fsync"},
			{"d/bigger", 12 << 20, "fsync"},
		}
		closed := []struct {
			name string
			size int
		}{
			{"late-tiny", 10},
			{"late-medium", 700 << 10},
			{"d/late-mib", 1 << 20},
			{"d/late-big", 9<<20 + 5},
		}
		for i, f := range synced {
			plWrite(t, pm, m.Dir, f.name, randBytes(uint64(1900+i), f.size), f.sync)
		}
		for i, f := range closed {
			plWrite(t, pm, m.Dir, f.name, randBytes(uint64(1950+i), f.size), "")
		}
		powerCut(m, l)
		t.Logf("after the power loss: %s", pm.check(t, "after the power loss"))
		plCheckStores(t, m, "after the power loss", true)
	})
}

// TestPowerLossOverwrite: a file fsync'd, then partly overwritten in the
// middle without fsync and closed, then an unrelated file fsync'd, and
// the power cut: the overwritten file holds its old or its new content,
// bit-exact, never EIO. Once with a file of several chunks, once with one
// of a single chunk.
func TestPowerLossOverwrite(t *testing.T) {
	plRunConfigs(t, func(t *testing.T, cfg plConfig) {
		m, l := plMount(t, cfg)
		pm := newPLModel(m.Dir)
		targets := []struct {
			name      string
			size, off int
			patch     int
		}{
			{"several-chunks", 3<<20 + 5, 1<<20 + 12345, 300 << 10},
			{"one-chunk", 50 << 10, 10000, 5000},
		}
		for i, tg := range targets {
			data := randBytes(uint64(1970+i), tg.size)
			plWrite(t, pm, m.Dir, tg.name, data, "fsync")
			f, err := os.OpenFile(m.Path(tg.name), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			patch := randBytes(uint64(1980+i), tg.patch)
			if _, err := f.WriteAt(patch, int64(tg.off)); err != nil {
				t.Fatal(err)
			}
			data = slices.Clone(data)
			copy(data[tg.off:], patch)
			pm.may(tg.name, crashStateOf(true, data))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		plWrite(t, pm, m.Dir, "unrelated", randBytes(1990, 1<<20+1), "fsync")
		powerCut(m, l)
		t.Logf("after the power loss: %s", pm.check(t, "after the power loss"))
		plCheckStores(t, m, "after the power loss", true)
	})
}

// plWriter writes files in its own directory of the mount until a call
// fails (the power cut): new files, fsync'd two times in three, and now
// and then a temp file written, fsync'd and renamed over an existing one.
// It runs on a goroutine of the test process, which does not fork while
// it runs.
type plWriter struct {
	dir   string // relative to the mount
	pm    *plModel
	rng   *rand.Rand
	cur   map[string]bool // names that exist now
	next  int
	err   error
	errAt time.Time
	// counts
	files, fsyncs, renames int
}

func (w *plWriter) run(root string, cycle int) {
	for {
		w.next++
		if err := w.step(root, fmt.Sprintf("c%d-%d", cycle, w.next)); err != nil {
			w.err, w.errAt = err, time.Now()
			return
		}
	}
}

func (w *plWriter) size() int {
	if w.rng.IntN(10) == 0 {
		return 2<<20 + w.rng.IntN(7<<20)
	}
	return w.rng.IntN(1 << 20)
}

func (w *plWriter) step(root, id string) error {
	var names []string
	for _, n := range sortedKeys(w.cur) {
		if w.cur[n] {
			names = append(names, n)
		}
	}
	replace := len(names) > 0 && w.rng.IntN(4) == 0
	name := filepath.Join(w.dir, "f"+id)
	if replace {
		name = filepath.Join(w.dir, "tmp"+id)
	}
	data := randBytes(w.rng.Uint64(), w.size())
	st := crashStateOf(true, data)
	fsync := replace || w.rng.IntN(3) != 0
	w.pm.may(name, crashStateOf(true, nil))
	f, err := os.OpenFile(filepath.Join(root, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // after an error only: the close below is the commit point otherwise
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+w.rng.IntN(512<<10))
		if _, err := f.Write(data[off : off+n]); err != nil {
			return err
		}
		off += n
	}
	if fsync {
		w.pm.may(name, st)
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", name, err)
		}
		w.pm.durable(name, st, "fsync'd")
		w.fsyncs++
	}
	w.pm.may(name, st)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	w.files++
	if !replace {
		w.cur[name] = true
		return nil
	}
	target := names[w.rng.IntN(len(names))]
	w.pm.may(target, st)
	w.pm.may(name, crashState{})
	if err := os.Rename(filepath.Join(root, name), filepath.Join(root, target)); err != nil {
		return fmt.Errorf("rename %s %s: %w", name, target, err)
	}
	w.cur[target] = true
	w.renames++
	return nil
}

// TestPowerLossBackgroundWriter cuts the power at a random moment while
// two writers (goroutines) write, fsync and rename files: afterwards no
// file reads EIO, every file whose fsync returned is exact (or, if
// renamed over since, holds what was renamed onto it), the others are in
// a state they went through, and the tiers compare and fsck clean.
// Several cycles of writing and cutting run on one data dir.
func TestPowerLossBackgroundWriter(t *testing.T) {
	plRunConfigs(t, func(t *testing.T, cfg plConfig) {
		relRunSeeds(t, relSeeds(t, relPick(1, 2)), func(t *testing.T, seed uint64) {
			plBackgroundWriter(t, cfg, seed, relPick(3, 8))
		})
	})
}

func plBackgroundWriter(t *testing.T, cfg plConfig, seed uint64, cycles int) {
	rng := relRand(seed, 0)
	m, l := plMount(t, cfg)
	ws := make([]*plWriter, 2)
	for i := range ws {
		dir := fmt.Sprintf("w%d", i)
		if err := os.Mkdir(m.Path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		ws[i] = &plWriter{dir: dir, pm: newPLModel(m.Dir, dir), rng: relRand(seed, uint64(10+i)), cur: map[string]bool{}}
	}
	plSyncDir(t, m.Dir)
	for cycle := range cycles {
		delay := 200*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))
		var wg sync.WaitGroup
		for _, w := range ws {
			w.err = nil
			wg.Add(1)
			go func() { defer wg.Done(); w.run(m.Dir, cycle) }()
		}
		time.Sleep(delay) // the moment of the cut is the random choice here
		cutAt := time.Now()
		plCut(m, l)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(actionDeadline):
			t.Fatalf("cycle %d: the writers still run %s after the power cut", cycle, actionDeadline)
		}
		for i, w := range ws {
			if w.errAt.Before(cutAt) {
				t.Errorf("cycle %d: writer %d failed %s before the power cut: %v", cycle, i, cutAt.Sub(w.errAt).Round(time.Microsecond), w.err)
			}
		}
		plRestore(m, l)
		what := fmt.Sprintf("cycle %d (cut after %s)", cycle, delay.Round(time.Millisecond))
		var sums []string
		for i, w := range ws {
			sums = append(sums, fmt.Sprintf("writer %d: %d files, %d fsyncs, %d renames so far; %s", i, w.files, w.fsyncs, w.renames, w.pm.check(t, what)))
			w.cur = map[string]bool{}
			for name, h := range w.pm.hist {
				w.cur[name] = h[0].exists
			}
		}
		t.Logf("%s:\n  %s", what, strings.Join(sums, "\n  "))
		plCheckStores(t, m, what, t.Failed() || cycle == cycles-1)
		if t.Failed() {
			return
		}
	}
}

// errPLCut is what a model step returns when its budget of calls is used
// up: the power is cut there, with its files still open.
var errPLCut = errors.New("power cut")

// plDriver runs random operations on a few names in two directories of
// the mount, keeping the model of what a power loss may leave, and cuts
// the power after a random number of calls, in the middle of an operation
// or between two.
type plDriver struct {
	t      *testing.T
	root   string
	rng    *rand.Rand
	pm     *plModel
	cur    map[string][]byte // names that exist now, with their content
	budget int               // calls left before the cut
	open   []*os.File        // open at the cut
	next   int
	log    []string
	counts map[string]int
}

var plDirs = []string{"d0", "d1"}

// plSyncDir makes what dir holds durable. The models take their
// directories as given: unsynced (POSIX wants an fsync of the parent), a
// cut before anything else was made durable rightly loses them, and the
// next create fails with ENOENT (seed 650711524 of TestPowerLossModel).
func plSyncDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dir, err)
	}
}

// plNames is the pool of names: few, so renames land on existing files.
var plNames = []string{"a", "b", "c", "d"}

func (d *plDriver) logf(format string, args ...any) {
	d.log = append(d.log, fmt.Sprintf(format, args...))
	if len(d.log) > 40 {
		d.log = d.log[len(d.log)-30:]
	}
}

// call spends one call of the budget and runs fn, which must succeed.
func (d *plDriver) call(what string, fn func() error) error {
	if d.budget == 0 {
		d.logf("  ✂ power cut before %s", what)
		return errPLCut
	}
	d.budget--
	if err := fn(); err != nil {
		d.t.Fatalf("%s before the power cut: %v\nrecent steps:\n  %s", what, err, strings.Join(d.log, "\n  "))
	}
	return nil
}

func (d *plDriver) path(name string) string { return filepath.Join(d.root, name) }

func (d *plDriver) anyName() string {
	return filepath.Join(plDirs[d.rng.IntN(len(plDirs))], plNames[d.rng.IntN(len(plNames))])
}

func (d *plDriver) existing() []string { return sortedKeys(d.cur) }

func (d *plDriver) size() int {
	switch r := d.rng.IntN(100); {
	case r < 65:
		return d.rng.IntN(256 << 10)
	case r < 96:
		return 256<<10 + d.rng.IntN(3<<20)
	default:
		return 8<<20 + d.rng.IntN(2<<20)
	}
}

// openFile opens a file for an operation; it stays in d.open until
// closed, so that a cut finds it open.
func (d *plDriver) openFile(name string, flags int) (*os.File, error) {
	var f *os.File
	err := d.call(fmt.Sprintf("open %s %#x", name, flags), func() (err error) {
		f, err = os.OpenFile(d.path(name), flags, 0o644)
		return err
	})
	if err == nil {
		d.open = append(d.open, f)
	}
	return f, err
}

// closeFile closes f, a commit point of data for name.
func (d *plDriver) closeFile(f *os.File, name string, data []byte) error {
	d.pm.may(name, crashStateOf(true, data))
	err := d.call("close "+name, f.Close)
	if err == nil {
		d.open = slices.DeleteFunc(d.open, func(o *os.File) bool { return o == f })
	}
	return err
}

// write writes data[from:] at from in pieces.
func (d *plDriver) write(f *os.File, name string, data []byte, from int) error {
	for off := from; off < len(data); {
		n := min(len(data)-off, 1+d.rng.IntN(1<<20))
		if err := d.call(fmt.Sprintf("write %s [%d,%d)", name, off, off+n), func() error {
			_, err := f.WriteAt(data[off:off+n], int64(off))
			return err
		}); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// maybeFsync fsyncs f one time in three (or always), a commit point that
// makes data durable for name.
func (d *plDriver) maybeFsync(f *os.File, name string, data []byte, always bool) error {
	if !always && d.rng.IntN(3) != 0 {
		return nil
	}
	st := crashStateOf(true, data)
	d.pm.may(name, st)
	if err := d.call("fsync "+name, f.Sync); err != nil {
		return err
	}
	d.pm.durable(name, st, "fsync'd")
	d.counts["fsync"]++
	return nil
}

func (d *plDriver) step() error {
	names := d.existing()
	op := d.rng.IntN(100)
	if len(names) == 0 {
		op = 0
	}
	switch {
	case op < 18:
		return d.opCreate()
	case op < 30:
		return d.opRewrite(names[d.rng.IntN(len(names))])
	case op < 44:
		return d.opOverwrite(names[d.rng.IntN(len(names))])
	case op < 54:
		return d.opAppend(names[d.rng.IntN(len(names))])
	case op < 62:
		return d.opTruncate(names[d.rng.IntN(len(names))])
	case op < 70:
		return d.opFtruncate(names[d.rng.IntN(len(names))])
	case op < 78:
		return d.opRename(names[d.rng.IntN(len(names))])
	case op < 84:
		return d.opUnlink(names[d.rng.IntN(len(names))])
	case op < 93:
		return d.opFsync(names[d.rng.IntN(len(names))])
	default:
		return d.opReplace()
	}
}

// opCreate writes a file at a free name of the pool (or rewrites an
// existing one with O_TRUNC when none is free).
func (d *plDriver) opCreate() error {
	name := d.anyName()
	for range 8 {
		if _, ok := d.cur[name]; !ok {
			break
		}
		name = d.anyName()
	}
	if _, ok := d.cur[name]; ok {
		return d.opRewrite(name)
	}
	d.counts["create"]++
	data := randBytes(d.rng.Uint64(), d.size())
	d.logf("create %s, %d bytes", name, len(data))
	d.pm.may(name, crashStateOf(true, nil))
	f, err := d.openFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	d.cur[name] = []byte{}
	if err := d.write(f, name, data, 0); err != nil {
		return err
	}
	if err := d.maybeFsync(f, name, data, false); err != nil {
		return err
	}
	d.cur[name] = data
	return d.closeFile(f, name, data)
}

// opRewrite rewrites a file in place: open(O_TRUNC), write, close.
func (d *plDriver) opRewrite(name string) error {
	d.counts["rewrite"]++
	data := randBytes(d.rng.Uint64(), d.size())
	d.logf("rewrite %s with O_TRUNC, %d bytes", name, len(data))
	d.pm.may(name, crashStateOf(true, nil))
	f, err := d.openFile(name, os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		return err
	}
	d.cur[name] = []byte{}
	if err := d.write(f, name, data, 0); err != nil {
		return err
	}
	if err := d.maybeFsync(f, name, data, false); err != nil {
		return err
	}
	d.cur[name] = data
	return d.closeFile(f, name, data)
}

// opOverwrite writes a few ranges at random offsets, some past the end.
func (d *plDriver) opOverwrite(name string) error {
	d.counts["overwrite"]++
	data := slices.Clone(d.cur[name])
	f, err := d.openFile(name, os.O_RDWR)
	if err != nil {
		return err
	}
	var ranges []string
	for range 1 + d.rng.IntN(3) {
		off := d.rng.IntN(len(data) + 64<<10)
		buf := randBytes(d.rng.Uint64(), 1+d.rng.IntN(256<<10))
		ranges = append(ranges, fmt.Sprintf("[%d,%d)", off, off+len(buf)))
		if err := d.call(fmt.Sprintf("pwrite %s [%d,%d)", name, off, off+len(buf)), func() error {
			_, err := f.WriteAt(buf, int64(off))
			return err
		}); err != nil {
			return err
		}
		if end := off + len(buf); end > len(data) {
			data = append(data, make([]byte, end-len(data))...)
		}
		copy(data[off:], buf)
	}
	d.logf("overwrite %s at %s", name, strings.Join(ranges, " "))
	if err := d.maybeFsync(f, name, data, false); err != nil {
		return err
	}
	d.cur[name] = data
	return d.closeFile(f, name, data)
}

// opAppend appends with O_APPEND.
func (d *plDriver) opAppend(name string) error {
	d.counts["append"]++
	old := d.cur[name]
	data := append(slices.Clone(old), randBytes(d.rng.Uint64(), 1+d.rng.IntN(512<<10))...)
	d.logf("append %d bytes to %s", len(data)-len(old), name)
	f, err := d.openFile(name, os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return err
	}
	for off := len(old); off < len(data); {
		n := min(len(data)-off, 1+d.rng.IntN(256<<10))
		if err := d.call(fmt.Sprintf("append %s %d bytes", name, n), func() error {
			_, err := f.Write(data[off : off+n])
			return err
		}); err != nil {
			return err
		}
		off += n
	}
	if err := d.maybeFsync(f, name, data, false); err != nil {
		return err
	}
	d.cur[name] = data
	return d.closeFile(f, name, data)
}

func resized(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// opTruncate truncates by path (a commit point).
func (d *plDriver) opTruncate(name string) error {
	d.counts["truncate"]++
	n := d.rng.IntN(len(d.cur[name]) + 128<<10 + 1)
	d.logf("truncate %s to %d", name, n)
	data := resized(d.cur[name], n)
	d.pm.may(name, crashStateOf(true, data))
	if err := d.call("truncate "+name, func() error { return os.Truncate(d.path(name), int64(n)) }); err != nil {
		return err
	}
	d.cur[name] = data
	return nil
}

// opFtruncate writes a little through a handle, then truncates it (a
// commit point of both), maybe fsyncs, and closes.
func (d *plDriver) opFtruncate(name string) error {
	d.counts["ftruncate"]++
	data := slices.Clone(d.cur[name])
	f, err := d.openFile(name, os.O_RDWR)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		off := d.rng.IntN(len(data))
		buf := randBytes(d.rng.Uint64(), min(len(data)-off, 1+d.rng.IntN(64<<10)))
		if err := d.call(fmt.Sprintf("pwrite %s [%d,%d)", name, off, off+len(buf)), func() error {
			_, err := f.WriteAt(buf, int64(off))
			return err
		}); err != nil {
			return err
		}
		copy(data[off:], buf)
	}
	n := d.rng.IntN(len(data) + 128<<10 + 1)
	d.logf("ftruncate %s to %d", name, n)
	data = resized(data, n)
	d.pm.may(name, crashStateOf(true, data))
	if err := d.call("ftruncate "+name, func() error { return f.Truncate(int64(n)) }); err != nil {
		return err
	}
	if err := d.maybeFsync(f, name, data, false); err != nil {
		return err
	}
	d.cur[name] = data
	return d.closeFile(f, name, data)
}

// opRename renames a file to another name of the pool, maybe over an
// existing file, maybe into the other directory.
func (d *plDriver) opRename(name string) error {
	to := d.anyName()
	if to == name {
		return nil
	}
	d.counts["rename"]++
	d.logf("rename %s %s", name, to)
	data := d.cur[name]
	d.pm.may(to, crashStateOf(true, data))
	d.pm.may(name, crashState{})
	if err := d.call("rename "+name+" "+to, func() error { return os.Rename(d.path(name), d.path(to)) }); err != nil {
		return err
	}
	d.cur[to] = data
	delete(d.cur, name)
	return nil
}

func (d *plDriver) opUnlink(name string) error {
	d.counts["unlink"]++
	d.logf("unlink %s", name)
	d.pm.may(name, crashState{})
	if err := d.call("unlink "+name, func() error { return os.Remove(d.path(name)) }); err != nil {
		return err
	}
	delete(d.cur, name)
	return nil
}

// opFsync opens a file read-only and fsyncs it, as sync(1) FILE does: what
// earlier handles wrote and closed becomes durable too.
func (d *plDriver) opFsync(name string) error {
	d.logf("fsync %s (read-only open)", name)
	f, err := d.openFile(name, os.O_RDONLY)
	if err != nil {
		return err
	}
	data := d.cur[name]
	if err := d.maybeFsync(f, name, data, true); err != nil {
		return err
	}
	return d.closeFile(f, name, data)
}

// opReplace is the atomic pattern: a temp file written, fsync'd, closed
// and renamed over a name of the pool.
func (d *plDriver) opReplace() error {
	d.counts["replace"]++
	d.next++
	target := d.anyName()
	tmp := filepath.Join(filepath.Dir(target), fmt.Sprintf("tmp%d", d.next))
	data := randBytes(d.rng.Uint64(), d.size())
	d.logf("replace %s through %s, %d bytes", target, tmp, len(data))
	d.pm.may(tmp, crashStateOf(true, nil))
	f, err := d.openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	d.cur[tmp] = []byte{}
	if err := d.write(f, tmp, data, 0); err != nil {
		return err
	}
	if err := d.maybeFsync(f, tmp, data, true); err != nil {
		return err
	}
	d.cur[tmp] = data
	if err := d.closeFile(f, tmp, data); err != nil {
		return err
	}
	d.pm.may(target, crashStateOf(true, data))
	d.pm.may(tmp, crashState{})
	if err := d.call("rename "+tmp+" "+target, func() error { return os.Rename(d.path(tmp), d.path(target)) }); err != nil {
		return err
	}
	d.cur[target] = data
	delete(d.cur, tmp)
	return nil
}

// TestPowerLossModel runs random operations (create, rewrite, overwrite,
// append, truncate, ftruncate, rename, unlink, fsync, and the atomic
// temp-file-and-rename) on a few names and cuts the power after a random
// number of calls, often in the middle of an operation with its file
// open; after each cut every name must be in a state the model allows
// (exact if fsync'd after its last change), none unreadable, and the
// tiers must compare and fsck clean. Several rounds run on one data dir;
// the seed is printed, DUALSTORE_SEED replays it.
func TestPowerLossModel(t *testing.T) {
	plRunConfigs(t, func(t *testing.T, cfg plConfig) {
		relRunSeeds(t, relSeeds(t, relPick(1, 2)), func(t *testing.T, seed uint64) {
			plModelRun(t, cfg, seed, relPick(30, 80))
		})
	})
}

func plModelRun(t *testing.T, cfg plConfig, seed uint64, rounds int) {
	start := time.Now()
	m, l := plMount(t, cfg)
	for _, dir := range plDirs {
		if err := os.Mkdir(m.Path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plSyncDir(t, m.Dir)
	d := &plDriver{t: t, root: m.Dir, rng: relRand(seed, 0), pm: newPLModel(m.Dir, plDirs...), cur: map[string][]byte{}, counts: map[string]int{}}
	calls := 0
	for round := range rounds {
		budget := 5 + d.rng.IntN(200)
		d.budget, calls = budget, calls+budget
		d.logf("round %d: %d calls before the cut", round, budget)
		for {
			if err := d.step(); err != nil {
				break // errPLCut: call fails the test on any other error
			}
		}
		plCut(m, l)
		for _, f := range d.open {
			_ = f.Close() // on the dead mount: commits nothing
		}
		d.open = nil
		plRestore(m, l)
		what := fmt.Sprintf("round %d (cut after %d calls)", round, budget)
		t.Logf("%s: %s", what, d.pm.check(t, what))
		failed := t.Failed()
		if failed {
			t.Logf("recent steps:\n  %s", strings.Join(d.log, "\n  "))
		} else {
			// What is there now is what the next round starts from.
			d.cur = map[string][]byte{}
			for name, h := range d.pm.hist {
				if h[0].exists {
					data, err := os.ReadFile(d.path(name))
					if err != nil {
						t.Fatalf("%s: reading %s again: %v", what, name, err)
					}
					d.cur[name] = data
				}
			}
		}
		plCheckStores(t, m, what, failed || round == rounds-1)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds, %d calls in %s: %v", rounds, calls, time.Since(start).Round(time.Millisecond), d.counts)
}
