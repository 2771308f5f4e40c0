package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Holes (#15): sparse files through real tools. The time bounds are
// generous (the point is constant time: before holes, truncate -s 8G took
// 29 s and 1 TiB over half an hour); speed itself is for make bench.

// blocks returns st_blocks (512-byte units).
func blocks(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}

// timed runs a command and fails past within.
func timed(t *testing.T, within time.Duration, name string, args ...string) {
	t.Helper()
	start := time.Now()
	runTool(t, name, args...)
	if d := time.Since(start); d > within {
		t.Errorf("%s %s took %s, want well under %s (holes are constant time)", name, strings.Join(args, " "), d.Round(time.Millisecond), within)
	}
}

// zerosAt reads n bytes at off and checks they are zeros.
func zerosAt(t *testing.T, p string, off int64, n int) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		t.Fatalf("read %s at %d: %v", p, off, err)
	}
	if !bytes.Equal(buf, make([]byte, n)) {
		t.Errorf("%s at %d: not zeros", p, off)
	}
}

func TestSparseFiles(t *testing.T) {
	t.Parallel()
	m := mount(t)
	const tib = int64(1) << 40

	t.Run("truncate 1 TiB and back", func(t *testing.T) {
		p := m.Path("big")
		timed(t, 5*time.Second, "truncate", "-s", "1T", p)
		if st, _ := os.Stat(p); st.Size() != tib {
			t.Fatalf("size %d", st.Size())
		}
		if b := blocks(t, p); b > 8 {
			t.Errorf("st_blocks of a 1 TiB hole: %d", b)
		}
		zerosAt(t, p, 600<<30, 1<<20)
		timed(t, 5*time.Second, "truncate", "-s", "0", p)
		timed(t, 5*time.Second, "truncate", "-s", "1T", p)
		timed(t, 5*time.Second, "truncate", "-s", "4096", p)
		zerosAt(t, p, 0, 4096)
	})
	t.Run("fallocate 100G", func(t *testing.T) {
		p := m.Path("prealloc")
		timed(t, 5*time.Second, "fallocate", "-l", "100G", p)
		if st, _ := os.Stat(p); st.Size() != 100<<30 {
			t.Fatalf("size %d", st.Size())
		}
		if b := blocks(t, p); b > 8 {
			t.Errorf("st_blocks after fallocate (no space is promised): %d", b)
		}
		// Punch a hole into data, and zero a range.
		data := randBytes(71, 4<<20)
		writeFile(t, m.Path("punched"), data)
		runTool(t, "fallocate", "--punch-hole", "-o", "1048576", "-l", "1048576", m.Path("punched"))
		runTool(t, "fallocate", "--zero-range", "-o", "3145728", "-l", "524288", m.Path("punched"))
		want := bytes.Clone(data)
		clear(want[1<<20 : 2<<20])
		clear(want[3<<20 : 3<<20+512<<10])
		got, err := os.ReadFile(m.Path("punched"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("punched file differs (%v)", err)
		}
		// Unsupported modes are refused as ext4 without extents would.
		f, err := os.OpenFile(m.Path("punched"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, 1<<20); !errors.Is(err, syscall.EOPNOTSUPP) {
			t.Errorf("fallocate COLLAPSE_RANGE: %v, want EOPNOTSUPP", err)
		}
	})
	t.Run("dd seek far past the end", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "src")
		data := randBytes(72, 1<<20)
		writeFile(t, src, data)
		p := m.Path("seeked")
		timed(t, 5*time.Second, "dd", "if="+src, "of="+p, "bs=1M", "seek=500000", "conv=notrunc", "status=none")
		if st, _ := os.Stat(p); st.Size() != 500000<<20+1<<20 {
			t.Fatalf("size %d", st.Size())
		}
		if b := blocks(t, p); b > 4096 {
			t.Errorf("st_blocks %d for 1 MiB of data", b)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, 1<<20)
		if _, err := f.ReadAt(got, 500000<<20); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the data past the hole: %v", err)
		}
		zerosAt(t, p, 123456789, 1<<20)
	})
	t.Run("SEEK_DATA and SEEK_HOLE, cp --sparse both ways", func(t *testing.T) {
		const hole = 256 << 20
		p := m.Path("layout")
		data := randBytes(73, 1<<20)
		writeFile(t, p, data)
		if err := os.Truncate(p, hole); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(data, hole); err != nil {
			t.Fatal(err)
		}
		f.Close()
		f, err = os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fd := int(f.Fd())
		for _, c := range []struct {
			off    int64
			whence int
			want   int64
		}{
			{0, unix.SEEK_DATA, 0}, {0, unix.SEEK_HOLE, 1 << 20}, {1 << 20, unix.SEEK_DATA, hole},
			{5 << 20, unix.SEEK_HOLE, 5 << 20}, {hole, unix.SEEK_HOLE, hole + 1<<20},
		} {
			if got, err := unix.Seek(fd, c.off, c.whence); err != nil || got != c.want {
				t.Errorf("lseek(%d, %d) = %d, %v; want %d", c.off, c.whence, got, err, c.want)
			}
		}
		if _, err := unix.Seek(fd, hole+1<<20, unix.SEEK_DATA); !errors.Is(err, syscall.ENXIO) {
			t.Errorf("SEEK_DATA at the end: %v, want ENXIO", err)
		}
		out := filepath.Join(t.TempDir(), "copy")
		runTool(t, "cp", "--sparse=always", p, out)
		cmpFiles(t, p, out)
		if b := blocks(t, out); b > 8192 {
			t.Errorf("cp --sparse=always out of the mount: %d blocks, the holes were filled", b)
		}
		back := m.Path("back")
		runTool(t, "cp", "--sparse=always", out, back)
		cmpFiles(t, out, back)
		if b := blocks(t, back); b > 8192 {
			t.Errorf("cp --sparse=always into the mount: %d blocks", b)
		}
		if d, _ := unix.Seek(fd, 1<<20, unix.SEEK_DATA); d != hole {
			t.Errorf("SEEK_DATA in the copy in: %d", d)
		}
		f.Close() // an open file would keep the unmount busy
		m.Remount()
		cmpFiles(t, out, m.Path("layout"))
	})
	// Reading holes asked no store for anything (a hole is no chunk).
	st := m.Stats()
	for _, tier := range []string{primary, safety} {
		if r := st.Tiers[tier].Reads; r.Errors != 0 {
			t.Errorf("tier %s read errors after reading holes: %+v", tier, r)
		}
	}
}

// TestFileTooBig: sizes past the maximum get EFBIG and change nothing;
// another descriptor's unflushed writes survive.
func TestFileTooBig(t *testing.T) {
	t.Parallel()
	m := mount(t)
	p := m.Path("f")
	base := randBytes(80, 3<<20)
	writeFile(t, p, base)
	out, err := exec.Command("truncate", "-s", "999999999999999", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "File too large") {
		t.Errorf("truncate -s 999999999999999: %v %s, want File too large", err, out)
	}
	// Two descriptors: one with unflushed (staged) writes, the other
	// truncating past the maximum.
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := randBytes(81, 64<<10)
	if _, err := w.WriteAt(patch, 1<<20); err != nil {
		t.Fatal(err)
	}
	o, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Truncate(999999999999999); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("ftruncate past the maximum: %v, want EFBIG", err)
	}
	if _, err := o.WriteAt([]byte("x"), 999999999999990); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("pwrite past the maximum: %v, want EFBIG", err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("close of the descriptor that got EFBIG: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close of the other descriptor: %v", err)
	}
	want := bytes.Clone(base)
	copy(want[1<<20:], patch)
	m.Remount()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after EFBIG on another descriptor, the writes of the first: lost (%v)", err)
	}
}
