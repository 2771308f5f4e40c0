package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestConcurrentWritersReaders has 8 goroutines writing different files
// (random sizes up to 8 MiB, in uneven pieces) while 4 read back every
// file as soon as it is closed; then everything is verified again after a
// remount.
func TestConcurrentWritersReaders(t *testing.T) {
	t.Parallel()
	m := mount(t)
	const writers, readers, filesEach = 8, 4, 2
	type job struct {
		path string
		seed uint64
		size int
	}
	sizeOf := func(seed uint64) int {
		b := randBytes(seed^0xfeed, 4)
		return int(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16) % (8<<20 + 1)
	}
	if err := os.Mkdir(m.Path("c"), 0o755); err != nil {
		t.Fatal(err)
	}

	written := make(chan job, writers*filesEach)
	var all []job
	var allMu sync.Mutex
	var wg, rg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range filesEach {
				j := job{path: m.Path("c", fmt.Sprintf("w%d-%d", w, i)), seed: uint64(100 + w*10 + i)}
				j.size = sizeOf(j.seed)
				data := randBytes(j.seed, j.size)
				f, err := os.Create(j.path)
				if err != nil {
					t.Errorf("create %s: %v", j.path, err)
					return
				}
				piece := 4096 + (w+1)*37813 // uneven writes, never page-aligned
				for off := 0; off < len(data); off += piece {
					if _, err := f.Write(data[off:min(len(data), off+piece)]); err != nil {
						t.Errorf("write %s at %d: %v", j.path, off, err)
						break
					}
				}
				if err := f.Close(); err != nil {
					t.Errorf("close %s: %v", j.path, err)
				}
				allMu.Lock()
				all = append(all, j)
				allMu.Unlock()
				written <- j
			}
		}()
	}
	verify := func(j job) {
		got, err := os.ReadFile(j.path)
		if err != nil {
			t.Errorf("read %s: %v", j.path, err)
			return
		}
		if want := randBytes(j.seed, j.size); !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes read back differ from the %d written", j.path, len(got), len(want))
		}
	}
	for range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for j := range written {
				verify(j)
			}
		}()
	}
	wg.Wait()
	close(written)
	rg.Wait()
	if t.Failed() {
		return
	}

	var total int64
	for _, j := range all {
		total += int64(j.size)
	}
	st := m.Stats()
	if st.Files != writers*filesEach || st.LogicalBytes != total {
		t.Errorf("stats files %d logical_bytes %d, want %d and %d", st.Files, st.LogicalBytes, writers*filesEach, total)
	}
	// Every file's chunks are in both tiers, and the index counts exactly
	// the chunks the files reference. The stores may hold more: a FLUSH in
	// the middle of a write (another goroutine of this process forking a
	// tool closes an inherited copy of the descriptor) cuts the stream
	// early, and the short chunk it stored is replaced by the re-chunked
	// one; such chunks are unreferenced until gc.
	ref := map[string]bool{}
	for _, j := range all {
		data := randBytes(j.seed, j.size)
		for _, tier := range tiers {
			for _, r := range m.FileChunks(tier, data) {
				ref[r.ID] = true
			}
		}
	}
	if st.UniqueChunks != int64(len(ref)) {
		t.Errorf("stats unique_chunks %d, the files reference %d chunks", st.UniqueChunks, len(ref))
	}
	for _, tier := range tiers {
		if extra := len(m.ChunkFiles(tier)) - len(ref); extra != 0 {
			t.Logf("%s holds %d chunk files besides the %d referenced (early cuts by a mid-write FLUSH)", tier, extra, len(ref))
		}
	}
	m.Remount()
	again := make(chan job)
	var vg sync.WaitGroup
	for range readers {
		vg.Add(1)
		go func() {
			defer vg.Done()
			for j := range again {
				verify(j)
			}
		}()
	}
	for _, j := range all {
		again <- j
	}
	close(again)
	vg.Wait()
}

// TestFlushMidWrite interrupts a sequential write with what other
// processes do to a file being written: a FLUSH from closing a duplicated
// descriptor (fork+exec, dup), an fsync, and a read of the bytes just
// written through another descriptor. Readers see every byte, and the
// file ends up chunked exactly as one uninterrupted copy of the same bytes.
func TestFlushMidWrite(t *testing.T) {
	t.Parallel()
	m := mount(t)
	data := randBytes(110, 6<<20+17)
	sp := filepath.Join(t.TempDir(), "src")
	writeFile(t, sp, data)
	runTool(t, "cp", sp, m.Path("whole"))
	whole := m.FileChunks(primary, data)

	f, err := os.Create(m.Path("interrupted"))
	if err != nil {
		t.Fatal(err)
	}
	const piece = 100000
	for i, off := 0, 0; off < len(data); i, off = i+1, off+piece {
		if _, err := f.Write(data[off:min(len(data), off+piece)]); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		written := min(len(data), off+piece)
		switch i % 16 {
		case 5:
			fd, err := syscall.Dup(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Close(fd); err != nil { // FLUSH
				t.Errorf("close of a dup at %d: %v", written, err)
			}
		case 9:
			if err := f.Sync(); err != nil {
				t.Errorf("fsync at %d: %v", written, err)
			}
		case 13:
			got := readRange(t, m.Path("interrupted"), int64(written-150000), int64(written))
			if !bytes.Equal(got, data[written-150000:written]) {
				t.Errorf("reading the last 150000 bytes written while writing (at %d): they differ", written)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cmpFiles(t, sp, m.Path("interrupted"))
	for _, tier := range tiers {
		m.FileChunks(tier, data)
	}
	st := m.Stats()
	if st.UniqueChunks != int64(len(whole)) || st.LogicalBytes != 2*int64(len(data)) {
		t.Errorf("stats unique_chunks %d logical_bytes %d; want %d (the interrupted copy chunked like the whole one) and %d",
			st.UniqueChunks, st.LogicalBytes, len(whole), 2*len(data))
	}
	for _, tier := range tiers {
		if extra := len(m.ChunkFiles(tier)) - len(whole); extra != 0 {
			t.Logf("%s holds %d unreferenced chunk files: the early cuts the interruptions stored", tier, extra)
		}
	}
	m.Remount()
	cmpFiles(t, sp, m.Path("interrupted"))
}
