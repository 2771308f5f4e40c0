package integration

// Load (issue #7): 8 writers and 8 readers against a daemon built with the
// race detector, on a mix of large and small files, for 20 s (minutes
// under DUALSTORE_STRESS); the daemon's memory must stay bounded, the race
// detector must stay silent, and every byte must check out afterwards,
// after a remount.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loadRSSLimit bounds the daemon's peak resident set (VmHWM) under this
// load; what matters is that it levels off instead of growing with the
// bytes written (which are many times more). Measured on 2 cores with the
// daemon's default GOGC=400: a plain build levels off at ~700 MiB (~270
// MiB with GOGC=100), a -race build at ~1.4 GiB (the race detector's
// shadow memory, and it keeps freed memory longer).
const (
	loadRSSLimit     = 2560 << 20 // with -race
	loadRSSLimitBare = 1024 << 20 // a plain build (DUALSTORE_RACE_BIN=none)
)

// loadRace is the daemon built with -race, once per run.
var loadRace struct {
	once sync.Once
	path string
	err  error
}

// loadRaceBinary returns a dualstore binary built with the race detector:
// DUALSTORE_RACE_BIN, or one built once into the run's temp dir ("none":
// use the binary under test, without the race detector).
func loadRaceBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DUALSTORE_RACE_BIN"); p != "" {
		if p == "none" {
			return ""
		}
		return p
	}
	loadRace.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			loadRace.err = fmt.Errorf("no go command to build the -race daemon (set DUALSTORE_RACE_BIN): %w", err)
			return
		}
		out := filepath.Join(tmpRoot, "bin-race", "dualstore")
		start := time.Now()
		cmd := exec.Command(gobin, "build", "-race", "-o", out, "github.com/dualstore/dualstore/cmd/dualstore")
		if b, err := cmd.CombinedOutput(); err != nil {
			loadRace.err = fmt.Errorf("go build -race: %v\n%s", err, b)
			return
		}
		loadRace.path = out
		fmt.Fprintf(os.Stderr, "integration: built the -race daemon %s in %s\n", out, time.Since(start).Round(time.Millisecond))
	})
	if loadRace.err != nil {
		t.Fatal(loadRace.err)
	}
	return loadRace.path
}

// loadReader is the content of a file: a ChaCha8 stream of its seed, so a
// reader can check any range without the writer's copy.
func loadReader(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	copy(key[8:], "dualstore-load")
	return rand.NewChaCha8(key)
}

// loadFile is a file of the run.
type loadFile struct {
	path string
	seed uint64
	size int64
	// state: 0 being written (a prefix of size bytes may be visible),
	// 1 closed, 2 removed.
	state atomic.Int32
}

// loadSet is the files of the run, shared by writers and readers.
type loadSet struct {
	mu    sync.Mutex
	files []*loadFile
	live  int64 // bytes of closed, not removed files
}

func (s *loadSet) add(f *loadFile) {
	s.mu.Lock()
	s.files = append(s.files, f)
	s.mu.Unlock()
}

// pick draws a file, recent ones more often.
func (s *loadSet) pick(rng *rand.Rand) *loadFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.files)
	if n == 0 {
		return nil
	}
	if rng.IntN(2) == 0 {
		return s.files[n-1-rng.IntN(min(n, 8))]
	}
	return s.files[rng.IntN(n)]
}

// loadStats are the run's counters.
type loadStats struct {
	written, verified     atomic.Int64
	files, removed, reads atomic.Int64
	inflightReads         atomic.Int64
}

// TestLoad runs 8 writers and 8 readers against a -race daemon. Writers
// create files (a fifth of them 16-48 MiB, the rest up to 1 MiB; half the
// large ones repeat earlier content, so dedup is exercised) in uneven
// pieces, and remove old ones past a budget; readers read whole files or
// random ranges, of closed files (which must match exactly), of files
// being written (what they see must be a prefix of the final content) and
// of files being removed; an online gc runs every few seconds among them.
// Afterwards the daemon's VmHWM must be under the bound, its stderr free
// of race reports, and after a remount and a last gc every byte of every
// file must check out and the tiers must agree.
//
// Not parallel: it swaps the package's daemon binary (bin) for the -race
// one while it runs, which is safe only while no other test runs, and it
// wants the machine's cores to itself.
func TestLoad(t *testing.T) {
	requireFUSE(t)
	race := loadRaceBinary(t)
	limit := int64(loadRSSLimitBare)
	if race != "" {
		saved := bin
		bin = race
		t.Cleanup(func() { bin = saved })
		limit = loadRSSLimit
	} else {
		t.Logf("RACE DETECTOR OFF (DUALSTORE_RACE_BIN=none): running the load on %s", bin)
	}
	relRunSeeds(t, relSeeds(t, 1), func(t *testing.T, seed uint64) {
		loadRun(t, seed, relPick(20*time.Second, 8*time.Minute), limit)
	})
}

func loadRun(t *testing.T, seed uint64, dur time.Duration, rssLimit int64) {
	m := mount(t)
	pid := m.proc.cmd.Process.Pid
	const writers, readers = 8, 8
	// Live bytes kept (older files are removed past it, and gc frees
	// their chunks) and new content written (past it, large files repeat
	// earlier content only): together they bound the disk used.
	liveBudget := relPick(int64(1)<<30, int64(3)<<30)
	novelBudget := relPick(int64(2)<<30, int64(10)<<30)
	var novel atomic.Int64
	pool := make([]uint64, 8)
	for i := range pool {
		pool[i] = seed*1000 + uint64(i)
	}

	set := &loadSet{}
	var st loadStats
	var stop atomic.Bool
	var errMu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 30 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
		stop.Store(true)
	}
	for w := range writers {
		if err := os.Mkdir(m.Path(fmt.Sprintf("w%d", w)), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := relRand(seed, uint64(1000+w))
			for i := 0; !stop.Load(); i++ {
				f := &loadFile{path: m.Path(fmt.Sprintf("w%d", w), fmt.Sprintf("f%05d", i)), seed: rng.Uint64()}
				var size int64
				if rng.IntN(5) == 0 {
					size = 16<<20 + rng.Int64N(32<<20)
					if rng.IntN(2) == 0 || novel.Load() > novelBudget {
						f.seed = pool[rng.IntN(len(pool))]
					}
				} else {
					size = rng.Int64N(1 << 20)
				}
				if err := loadWrite(f, size, rng, set, &st, &novel, pool, &stop); err != nil {
					fail("writer %d: %v", w, err)
					return
				}
				// Past the live budget, remove random closed files.
				for {
					set.mu.Lock()
					over := set.live > liveBudget
					var victim *loadFile
					if over {
						victim = set.files[rng.IntN(len(set.files))]
						if victim.state.Load() != 1 {
							victim = nil
						} else {
							victim.state.Store(2)
							set.live -= victim.size
						}
					}
					set.mu.Unlock()
					if !over {
						break
					}
					if victim != nil {
						if err := os.Remove(victim.path); err != nil {
							fail("writer %d: remove %s: %v", w, victim.path, err)
							return
						}
						st.removed.Add(1)
					}
				}
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := relRand(seed, uint64(2000+r))
			for !stop.Load() {
				f := set.pick(rng)
				if f == nil {
					time.Sleep(10 * time.Millisecond) // nothing written yet: the load's pace, not synchronisation
					continue
				}
				if err := loadRead(f, rng, r%2 == 0, &st); err != nil {
					fail("reader %d: %v", r, err)
					return
				}
			}
		}()
	}

	// gc now and then, racing the writers and readers.
	var gcs, gcRemoved atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := relPick(4*time.Second, 20*time.Second)
		// The sleep is the schedule's tick, not synchronisation.
		for next := time.Now().Add(every); !stop.Load(); time.Sleep(50 * time.Millisecond) {
			if time.Now().Before(next) {
				continue
			}
			next = time.Now().Add(every)
			if err := m.Ctl("gc"); err != nil {
				if !errors.Is(err, syscall.EBUSY) {
					fail("echo gc > ctl: %v", err)
				}
				continue
			}
			var r Report
			var rerr error
			// Generous: a gc under the full load, on a slow machine.
			if err := waitFor(10*time.Minute, func() error {
				b, err := os.ReadFile(m.control("compare"))
				r = Report{}
				if err == nil {
					err = json.Unmarshal(b, &r)
				}
				if err != nil {
					rerr = err
					return nil // reported below
				}
				if r.State == "running" {
					return fmt.Errorf("gc still running: %+v", r)
				}
				return nil
			}); err != nil {
				fail("gc during the load: %v", err)
				return
			}
			if rerr != nil {
				fail("reading the gc's report: %v", rerr)
				return
			}
			if r.State != "done" || r.Errors != 0 {
				fail("gc during the load: %+v", r)
			}
			gcs.Add(1)
			gcRemoved.Add(r.Removed)
		}
	}()

	// Sample the daemon's memory while the load runs.
	start := time.Now()
	var peakRSS int64
	var samples []string
	var rssSamples []int64
	var maxLag float64                       // the index backup's, over both tiers
	every := max(1, int(dur/time.Second)/30) // log about 30 samples
	for time.Since(start) < dur && !stop.Load() {
		time.Sleep(time.Second) // the sampling interval: not synchronisation
		rss, hwm := loadMemory(pid)
		peakRSS = max(peakRSS, hwm)
		rssSamples = append(rssSamples, rss)
		for _, tr := range m.backupStats().Tiers {
			maxLag = max(maxLag, tr.LagSeconds)
		}
		if len(rssSamples)%every == 0 {
			samples = append(samples, fmt.Sprintf("%.0fs %dMiB (%d MiB written)", time.Since(start).Seconds(), rss>>20, st.written.Load()>>20))
		}
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	_, hwm := loadMemory(pid)
	peakRSS = max(peakRSS, hwm)
	for _, e := range errs {
		t.Error(e)
	}
	t.Logf("%s: %d files written (%d MiB, %d MiB new content), %d removed; %d reads (%d of files being written), %d MiB read and verified; daemon VmHWM %d MiB",
		elapsed.Round(time.Millisecond), st.files.Load(), st.written.Load()>>20, novel.Load()>>20, st.removed.Load(),
		st.reads.Load(), st.inflightReads.Load(), st.verified.Load()>>20, peakRSS>>20)
	t.Logf("daemon RSS over time: %s", strings.Join(samples, ", "))
	t.Logf("%d gc runs during the load removed %d chunks", gcs.Load(), gcRemoved.Load())
	// The index backup keeps up: every point reaches both tiers well
	// within index_backup.interval (10 s by default), and at the end both
	// hold the newest.
	t.Logf("index backup: largest lag %.2fs", maxLag)
	if maxLag > 10 {
		t.Errorf("index backup lagged %.1fs behind under the load, over the 10s bound", maxLag)
	}
	m.waitBackup()
	if peakRSS > rssLimit {
		t.Errorf("daemon peak RSS (VmHWM) %d MiB, over the bound of %d MiB", peakRSS>>20, rssLimit>>20)
	}
	// A long run must level off: the second half may not peak much above
	// the first (the ramp-up is over within seconds).
	if n := len(rssSamples); elapsed >= 2*time.Minute && n >= 8 {
		first, second := slices.Max(rssSamples[:n/2]), slices.Max(rssSamples[n/2:])
		if second > first+first/4+64<<20 {
			t.Errorf("daemon RSS still growing: peak %d MiB in the first half of the run, %d MiB in the second", first>>20, second>>20)
		}
	}
	if st.files.Load() < writers || st.reads.Load() < readers {
		t.Errorf("too little work done: %d files, %d reads", st.files.Load(), st.reads.Load())
	}

	// A fresh daemon (cold caches), a last gc: every byte of every file.
	m.Remount()
	loadCheckRaces(t, m)
	if t.Failed() {
		return
	}
	if r := m.Action("gc"); r.State != "done" || r.Errors != 0 {
		t.Errorf("gc after the load: %+v", r)
	}
	var files, nbytes int64
	set.mu.Lock()
	all := append([]*loadFile(nil), set.files...)
	set.mu.Unlock()
	for _, f := range all {
		if f.state.Load() == 2 {
			if _, err := os.Lstat(f.path); !errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("%s was removed, but lstat says %v", f.path, err)
			}
			continue
		}
		if err := loadVerify(f.path, f.seed, f.size); err != nil {
			t.Errorf("after the remount: %v", err)
			continue
		}
		files, nbytes = files+1, nbytes+f.size
	}
	t.Logf("after the remount: %d files, %d MiB verified", files, nbytes>>20)
	s := m.Stats()
	for _, tier := range tiers {
		ts := s.Tiers[tier]
		if ts.Writes.Errors != 0 || ts.Reads.Errors != 0 || ts.Reads.ChecksumErrors != 0 {
			t.Errorf("%s tier errors after the load: writes %+v reads %+v", tier, ts.Writes, ts.Reads)
		}
	}
	if r := m.Compare(relStress()); r.Differences() != 0 {
		t.Errorf("comparison after the load: %s", r.counts())
	}
	m.Unmount()
	loadCheckRaces(t, m)
}

// loadWrite creates f with size bytes of its content (fewer if stop is
// set meanwhile), written in uneven pieces, registered while in flight.
func loadWrite(f *loadFile, size int64, rng *rand.Rand, set *loadSet, st *loadStats, novel *atomic.Int64, pool []uint64, stop *atomic.Bool) error {
	out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	set.add(f)
	src := loadReader(f.seed)
	buf := make([]byte, 1<<20)
	var done int64
	for done < size {
		if stop.Load() {
			size = done // the run is over: the file ends here
			break
		}
		n := min(size-done, 4096+rng.Int64N(1<<20-4096))
		_, _ = src.Read(buf[:n])
		if _, err := out.Write(buf[:n]); err != nil {
			out.Close()
			return fmt.Errorf("write %s at %d: %w", f.path, done, err)
		}
		done += n
		st.written.Add(n)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	isPool := false
	for _, p := range pool {
		isPool = isPool || p == f.seed
	}
	if !isPool {
		novel.Add(size)
	}
	set.mu.Lock()
	f.size = size
	f.state.Store(1)
	set.live += size
	set.mu.Unlock()
	st.files.Add(1)
	return nil
}

// loadRead reads a file: whole (sequentially, in big reads) or a few
// random ranges; a file being written must show a prefix of its content,
// a removed one may be gone.
func loadRead(f *loadFile, rng *rand.Rand, whole bool, st *loadStats) error {
	in, err := os.Open(f.path)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) && f.state.Load() == 2 {
			return nil
		}
		return err
	}
	defer in.Close()
	// Closed or not is decided before the fstat: a file whose writer
	// closes it while the fstat is on its way (or while this goroutine
	// waits to run again after it) may show a size from before its last
	// write, and is still a file being written for this read.
	closed := f.state.Load() != 0
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if !closed {
		st.inflightReads.Add(1)
	} else if size != f.size {
		return fmt.Errorf("%s: %d bytes, want %d", f.path, size, f.size)
	}
	st.reads.Add(1)
	ranges := [][2]int64{{0, size}}
	if !whole && size > 0 {
		ranges = nil
		for range 1 + rng.IntN(4) {
			off := rng.Int64N(size)
			ranges = append(ranges, [2]int64{off, min(size, off+1+rng.Int64N(3<<20))})
		}
	}
	src := loadReader(f.seed)
	var pos int64
	buf := make([]byte, 1<<20)
	skip := make([]byte, 1<<20)
	for _, rg := range ranges {
		if rg[0] < pos {
			src, pos = loadReader(f.seed), 0
		}
		for pos < rg[0] {
			k := min(rg[0]-pos, int64(len(skip)))
			_, _ = src.Read(skip[:k])
			pos += k
		}
		for off := rg[0]; off < rg[1]; {
			n := min(rg[1]-off, int64(len(buf)))
			got, err := in.ReadAt(buf[:n], off)
			if err != nil && !(err == io.EOF && !closed) {
				return fmt.Errorf("read %s [%d, %d): %w", f.path, off, off+n, err)
			}
			want := make([]byte, got)
			_, _ = src.Read(want)
			pos += int64(got)
			if !bytes.Equal(buf[:got], want) {
				i := 0
				for i < got && buf[i] == want[i] {
					i++
				}
				j, zeros := i, true
				for j < got && buf[j] != want[j] {
					zeros = zeros && buf[j] == 0
					j++
				}
				return fmt.Errorf("%s (%s): bytes at %d differ from the content written (%d bytes differ up to %d, all zero: %v; read of %d at %d returned %d)",
					f.path, map[bool]string{true: "closed", false: "being written"}[closed], off+int64(i), j-i, off+int64(j), zeros, n, off, got)
			}
			st.verified.Add(int64(got))
			if got < int(n) {
				break
			}
			off += int64(got)
		}
	}
	return nil
}

// loadVerify checks that path has size bytes, the content of seed.
func loadVerify(path string, seed uint64, size int64) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%s: %d bytes, want %d", path, fi.Size(), size)
	}
	src := loadReader(seed)
	buf, want := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := min(size-off, int64(len(buf)))
		_, _ = src.Read(want[:n])
		if _, err := io.ReadFull(in, buf[:n]); err != nil {
			return fmt.Errorf("read %s at %d: %w", path, off, err)
		}
		if !bytes.Equal(buf[:n], want[:n]) {
			return fmt.Errorf("%s: bytes in [%d, %d) differ from the content written", path, off, off+n)
		}
		off += n
	}
	return nil
}

// loadMemory returns the resident set and its peak (VmRSS, VmHWM) of a
// process, in bytes.
func loadMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// loadCheckRaces fails the test if a daemon of m reported a data race.
func loadCheckRaces(t *testing.T, m *Mount) {
	t.Helper()
	logs := m.Logs()
	if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
		t.Errorf("the race detector reported a data race in the daemon:\n%s", truncate(logs[i:], 8000))
	}
}
