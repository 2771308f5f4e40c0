package vfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestModelRandomOps applies seeded random writes, truncates, appends,
// reads and reopens to a file in the file layer and to a byte slice,
// comparing the content after every reopen and every read. It exercises
// the stream, the pend path, the staging overlay and the re-chunking that
// resynchronises with old chunk boundaries. Truncates come both through
// the writing handle and on their own (as setattr does, committed at
// once); reads come through the writing handle and a second one.
// Holes too (#15): truncates and writes past the end, fallocate (grow,
// keep size, punch hole, zero range) and SEEK_DATA/SEEK_HOLE, checked
// against a second model of which bytes must be holes (grown or punched
// and not written since): SEEK_HOLE must report those, and nothing SEEK
// reports as a hole may hold a non-zero byte.
// DUALSTORE_MODEL_SEEDS sets the number of seeds (default 4).
func TestModelRandomOps(t *testing.T) {
	seeds := uint64(4)
	if s := os.Getenv("DUALSTORE_MODEL_SEEDS"); s != "" {
		fmt.Sscan(s, &seeds)
	}
	m := newTestFS(t)
	ctx := context.Background()
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			h := m.createOpen(t, fmt.Sprintf("f%d", seed))
			ino := h.Ino()
			r := m.open(t, ino) // a reader sharing the state
			var model []byte
			var holes []bool // bytes that must read as holes
			setHoles := func(a, b int64, v bool) {
				for i := a; i < b && i < int64(len(holes)); i++ {
					holes[i] = v
				}
			}
			resize := func(n int64) {
				if n < int64(len(model)) {
					model, holes = model[:n], holes[:n]
					return
				}
				old := int64(len(model))
				model = append(model, make([]byte, n-old)...)
				holes = append(holes, make([]bool, n-old)...)
				setHoles(old, n, true)
			}
			var log []string
			fail := func(step int, format string, args ...any) {
				t.Helper()
				t.Fatalf("step %d: %s\nops: %s", step, fmt.Sprintf(format, args...), strings.Join(log, "; "))
			}
			check := func(step int) {
				t.Helper()
				if d := diff(model, readAll(t, h)); d != "" {
					fail(step, "%s", d)
				}
			}
			for step := range 160 {
				size := int64(len(model))
				switch op := rng.IntN(14); {
				case op < 4: // write somewhere (maybe past the end)
					off := rng.Int64N(size + 200<<10 + 1)
					buf := randBytes(rng, 1+rng.IntN(100<<10))
					if rng.IntN(3) == 0 {
						off = size // sequential append
					}
					log = append(log, fmt.Sprintf("write(%d,%d)", off, len(buf)))
					if _, err := h.Write(ctx, buf, off); err != nil {
						fail(step, "write: %v", err)
					}
					if end := off + int64(len(buf)); end > size {
						resize(end)
					}
					copy(model[off:], buf)
					setHoles(off, off+int64(len(buf)), false)
				case op < 6: // truncate
					n := rng.Int64N(size + 100<<10 + 1)
					if rng.IntN(4) == 0 {
						n = 0
					}
					var err error
					if rng.IntN(2) == 0 {
						log = append(log, fmt.Sprintf("truncate(%d)", n))
						err = h.Truncate(ctx, uint64(n))
					} else {
						log = append(log, fmt.Sprintf("setattr-truncate(%d)", n))
						err = m.truncate(ino, uint64(n))
					}
					if err != nil {
						fail(step, "truncate: %v", err)
					}
					resize(n)
				case op < 8: // read a range through one of the handles
					off := rng.Int64N(size + 1)
					n := rng.IntN(200 << 10)
					via := h
					if rng.IntN(2) == 0 {
						via = r
					}
					log = append(log, fmt.Sprintf("read(%d,%d)", off, n))
					want := model[off:min(int(off)+n, len(model))]
					if got := readAt(t, via, off, n); !bytes.Equal(got, want) {
						fail(step, "read(%d,%d) got %d bytes, want %d (or content differs)", off, n, len(got), len(want))
					}
				case op < 9: // fallocate: grow (maybe far), or keep size
					off := rng.Int64N(size + 1)
					n := 1 + rng.Int64N(600<<10)
					mode := uint32(0)
					if rng.IntN(3) == 0 {
						mode = FallocKeepSize
					}
					log = append(log, fmt.Sprintf("fallocate(%d,%d,%#x)", off, n, mode))
					if err := h.Allocate(ctx, uint64(off), uint64(n), mode); err != nil {
						fail(step, "fallocate: %v", err)
					}
					if mode == 0 && off+n > size {
						resize(off + n)
					}
				case op < 11: // punch a hole or zero a range
					if size == 0 {
						continue
					}
					off := rng.Int64N(size)
					n := 1 + rng.Int64N(300<<10)
					mode := uint32(FallocPunchHole | FallocKeepSize)
					if op == 10 {
						mode = FallocZeroRange
						if rng.IntN(2) == 0 {
							mode |= FallocKeepSize
						}
					}
					log = append(log, fmt.Sprintf("fallocate(%d,%d,%#x)", off, n, mode))
					if err := h.Allocate(ctx, uint64(off), uint64(n), mode); err != nil {
						fail(step, "fallocate: %v", err)
					}
					end := min(off+n, size)
					clear(model[off:end])
					setHoles(off, end, true)
					if mode&FallocKeepSize == 0 && off+n > size {
						resize(off + n)
					}
				case op < 12: // SEEK_DATA / SEEK_HOLE
					if size == 0 {
						if _, err := h.Seek(0, SeekHole); !errors.Is(err, ErrNoData) {
							fail(step, "seek in an empty file: %v", err)
						}
						continue
					}
					off := rng.Int64N(size)
					log = append(log, fmt.Sprintf("seek(%d)", off))
					hole, err := h.Seek(uint64(off), SeekHole)
					if err != nil || hole < uint64(off) || hole > uint64(size) {
						fail(step, "SEEK_HOLE(%d) = %d, %v", off, hole, err)
					}
					if holes[off] && hole != uint64(off) {
						fail(step, "SEEK_HOLE(%d) = %d, but %d is a hole", off, hole, off)
					}
					for i := int64(off); i < int64(hole); i++ {
						if holes[i] {
							fail(step, "SEEK_HOLE(%d) = %d skips the hole at %d", off, hole, i)
						}
					}
					data, err := h.Seek(hole, SeekData)
					if errors.Is(err, ErrNoData) || hole == uint64(size) {
						data = uint64(size)
					} else if err != nil || data < hole {
						fail(step, "SEEK_DATA(%d) = %d, %v", hole, data, err)
					}
					for i := hole; i < data; i++ {
						if model[i] != 0 {
							fail(step, "byte %d is %#x, but SEEK reports [%d,%d) as a hole", i, model[i], hole, data)
						}
					}
				default: // close and reopen: commits
					log = append(log, "reopen")
					if err := h.Flush(ctx); err != nil {
						fail(step, "flush: %v", err)
					}
					if err := h.Release(ctx); err != nil {
						fail(step, "release: %v", err)
					}
					if d := diff(model, m.committed(t, ino)); d != "" {
						fail(step, "committed: %s", d)
					}
					h = m.open(t, ino)
					check(step)
				}
			}
			check(-1)
			release(t, h)
			release(t, r)
			// Committed chunk lists must cover the file exactly, and every
			// chunk must be in both tiers (committed checks both).
			if d := diff(model, m.committed(t, ino)); d != "" {
				fail(-1, "committed at the end: %s", d)
			}
			if m.dm.Held() != 0 {
				t.Fatalf("%d chunk ids still held with no file open", m.dm.Held())
			}
			if n := m.stagingFiles(t); n != 0 {
				t.Fatalf("%d names in the staging dir", n)
			}
		})
	}
}

// TestModelRandomOpsLong is the long form of TestModelRandomOps for `make
// stress` (DUALSTORE_STRESS=1, with -race): many more seeds.
func TestModelRandomOpsLong(t *testing.T) {
	if s := os.Getenv("DUALSTORE_STRESS"); s == "" || s == "0" {
		t.Skip("long form: runs with DUALSTORE_STRESS=1 (make stress)")
	}
	if os.Getenv("DUALSTORE_MODEL_SEEDS") == "" {
		t.Setenv("DUALSTORE_MODEL_SEEDS", "150")
	}
	TestModelRandomOps(t)
}

// TestConcurrentFiles runs writers of their own files (streamed and
// staged), readers of a shared committed file and a reader of a file
// being streamed, all at once, for the race detector; every file must
// end up with its writer's bytes.
func TestConcurrentFiles(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	shared := randBytes(rand.New(rand.NewPCG(9, 9)), 1<<20)
	sh := m.createOpen(t, "shared")
	writeSeq(t, sh, shared, 0, 256<<10)
	release(t, sh)

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// t.Fatal only from the test's goroutine: the files are made here and
	// checked after the wait.
	const writers = 4
	handles := make([]*Handle, writers)
	models := make([][]byte, writers)
	for w := range writers {
		handles[w] = m.createOpen(t, fmt.Sprintf("w%d", w))
	}
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 10))
			h := handles[w]
			model := randBytes(rng, 512<<10)
			models[w] = model
			for off := 0; off < len(model); off += 32 << 10 {
				if _, err := h.Write(ctx, model[off:off+32<<10], int64(off)); err != nil {
					errs <- err
					return
				}
			}
			patch := randBytes(rng, 10<<10)
			if _, err := h.Write(ctx, patch, 100<<10); err != nil {
				errs <- err
				return
			}
			copy(model[100<<10:], patch)
			if err := h.Release(ctx); err != nil {
				errs <- err
			}
		})
	}
	for r := range 3 {
		wg.Go(func() {
			h, err := m.fs.Open(ctx, sh.Ino())
			if err != nil {
				errs <- err
				return
			}
			defer h.Release(ctx)
			for range 3 {
				dest := make([]byte, 100<<10)
				for off := int64(r * 1000); off < int64(len(shared)); off += int64(len(dest)) {
					slices, n, err := h.Read(ctx, dest, off)
					if err != nil {
						errs <- err
						return
					}
					got := bytes.Join(slices, nil)
					if want := shared[off:min(off+int64(len(dest)), int64(len(shared)))]; n != len(want) || !bytes.Equal(got, want) {
						errs <- fmt.Errorf("reader %d: read at %d differs", r, off)
						return
					}
				}
			}
		})
	}
	// One file written and read at the same time through two handles.
	growing := randBytes(rand.New(rand.NewPCG(11, 11)), 768<<10)
	gw := m.createOpen(t, "growing")
	gr := m.open(t, gw.Ino())
	var written sync.Mutex
	var end int64
	wg.Go(func() {
		for off := 0; off < len(growing); off += 16 << 10 {
			written.Lock()
			_, err := gw.Write(ctx, growing[off:off+16<<10], int64(off))
			end = int64(off + 16<<10)
			written.Unlock()
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for {
			written.Lock()
			e := end
			written.Unlock()
			if e > 0 {
				off := e / 2
				slices, n, err := gr.Read(ctx, make([]byte, 64<<10), off)
				if err != nil {
					errs <- err
					return
				}
				if got := bytes.Join(slices, nil); !bytes.Equal(got, growing[off:off+int64(n)]) {
					errs <- fmt.Errorf("read of a growing file at %d differs", off)
					return
				}
			}
			if e == int64(len(growing)) {
				return
			}
			runtime.Gosched()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range writers {
		if d := diff(models[w], m.committed(t, handles[w].Ino())); d != "" {
			t.Errorf("writer %d: %s", w, d)
		}
	}
	release(t, gw)
	release(t, gr)
	if d := diff(growing, m.committed(t, gw.Ino())); d != "" {
		t.Fatal("growing file: " + d)
	}
}
