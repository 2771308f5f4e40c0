package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestFileModel applies random writes, truncates, reads, syncs and power
// losses to a file and to a byte slice: reads see the slice, a sync puts
// it in the backing file, and a power loss (a fresh file from the backing
// one) brings back the state of the last sync.
func TestFileModel(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 1))
		path := filepath.Join(t.TempDir(), "f")
		back, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		fd := int(back.Fd())
		fs := newFiles()
		key := fileKey{1, 1}
		f := fs.get(key, 0, true)
		var want, synced []byte
		for step := range 300 {
			switch op := rng.IntN(100); {
			case op < 40:
				off := rng.IntN(len(want) + 3*pageSize)
				p := make([]byte, 1+rng.IntN(3*pageSize))
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				if err := f.writeAt(fd, p, int64(off)); err != nil {
					t.Fatal(err)
				}
				if end := off + len(p); end > len(want) {
					want = append(want, make([]byte, end-len(want))...)
				}
				copy(want[off:], p)
			case op < 55:
				n := rng.IntN(len(want) + 2*pageSize + 1)
				f.truncate(int64(n))
				if n <= len(want) {
					want = want[:n]
				} else {
					want = append(want, make([]byte, n-len(want))...)
				}
			case op < 70:
				if err := f.sync(fd); err != nil {
					t.Fatal(err)
				}
				synced = bytes.Clone(want)
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, synced) {
					t.Fatalf("seed %d step %d: after sync the backing file holds %d bytes, want %d (equal prefix: %v)",
						seed, step, len(got), len(synced), bytes.HasPrefix(got, synced[:min(len(got), len(synced))]))
				}
			case op < 75:
				// Power loss: everything in memory is gone.
				fs = newFiles()
				f = fs.get(key, int64(len(synced)), true)
				want = bytes.Clone(synced)
			}
			got := make([]byte, len(want)+pageSize)
			n, err := f.readAt(fd, got, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:n], want) {
				t.Fatalf("seed %d step %d: read %d bytes, want %d", seed, step, n, len(want))
			}
			if size, ok := fs.size(key); !ok || size != int64(len(want)) {
				t.Fatalf("seed %d step %d: size %d (%v), want %d", seed, step, size, ok, len(want))
			}
			// A read at a random offset and length.
			off := rng.IntN(len(want) + 1)
			p := make([]byte, rng.IntN(2*pageSize))
			n, err = f.readAt(fd, p, int64(off))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p[:n], want[off:min(len(want), off+len(p))]) {
				t.Fatalf("seed %d step %d: read at %d differs", seed, step, off)
			}
		}
		back.Close()
	}
}

// TestFilesLifetime checks that a file is forgotten once nothing needs it:
// no handle and nothing unsynced, or no name left.
func TestFilesLifetime(t *testing.T) {
	back, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	fd := int(back.Fd())
	fs := newFiles()
	key := fileKey{1, 2}
	known := func() bool { _, ok := fs.size(key); return ok }

	f := fs.get(key, 0, true)
	fs.release(key, f, true)
	if known() {
		t.Error("a clean file without handles is kept")
	}
	f = fs.get(key, 0, true)
	if err := f.writeAt(fd, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	fs.release(key, f, true)
	if !known() {
		t.Fatal("a closed file with unsynced data is forgotten")
	}
	f = fs.get(key, 0, true) // reopened: the unsynced byte is still there
	if size, _ := fs.size(key); size != 1 {
		t.Errorf("reopened: size %d, want 1", size)
	}
	fs.removed(key)
	if !known() {
		t.Error("an unlinked file is forgotten while open")
	}
	fs.release(key, f, true)
	if known() {
		t.Error("an unlinked file is kept after its last handle")
	}
}
