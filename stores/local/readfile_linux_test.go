package local

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestReadFile checks the whole-file read of chunk files (readChunk) (O_DIRECT for big
// ones) returns exactly the bytes, for sizes around the alignment and the
// O_DIRECT threshold, on the test's disk and on tmpfs (where O_DIRECT may
// be refused and a plain read takes over), and right after a buffered
// write that is not on disk yet.
func TestReadFile(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "readfile-*")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 4095, 4096, directMin - 1, directMin, directMin + 1, 777777, 1 << 20, 4<<20 - 3}
	for _, dir := range dirs {
		for _, n := range sizes {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			p := filepath.Join(dir, "chunk")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readChunk(p, int64(n), nil)
			if err != nil {
				t.Fatalf("%s, %d bytes: %v", dir, n, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s, %d bytes: read %d bytes that differ", dir, n, len(got))
			}
		}
	}
	if _, err := readChunk(filepath.Join(dirs[0], "missing"), 1<<20, nil); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
}

// TestReadFileDirect checks that big chunk files really take the O_DIRECT
// path on the test's disk (no silent fallback to a second, plain read),
// when the filesystem allows it.
func TestReadFileDirect(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "chunk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !setDirect(f, true) {
		t.Skip("the test's filesystem refuses O_DIRECT")
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 777777/16+1)[:777777]
	if err := os.WriteFile(f.Name(), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readChunk(f.Name(), int64(len(data)), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("readFile: %d bytes, %v", len(got), err)
	}
	if cap(got) != len(got) || len(got)%4096 == 0 {
		t.Fatalf("cap %d len %d: want the O_DIRECT buffer cut to size", cap(got), len(got))
	}
}
