package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A store damaged by hand or by a hostile process: a chunk file grown to
// 64 GiB (sparse, `truncate -s 64G`) or replaced by a FIFO. Damaged in one
// tier, reads return the file's bytes from the other tier and heal the
// damaged copy; damaged in both, reads of that chunk fail with EIO at
// once. Either way the daemon neither allocates the file nor leaves a
// thread blocked on the FIFO, and stays alive.

// daemonThreads reads the daemon's OS thread count (/proc/PID/status).
func (m *Mount) daemonThreads() int {
	m.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.proc.cmd.Process.Pid))
	if err != nil {
		m.t.Fatalf("the daemon's status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				m.t.Fatal(err)
			}
			return n
		}
	}
	m.t.Fatalf("no Threads line in the daemon's status: %v", sc.Err())
	return 0
}

// alive fails the test if the daemon has exited.
func (m *Mount) alive(when string) {
	m.t.Helper()
	select {
	case <-m.proc.done:
		m.t.Fatalf("%s: the daemon died (%v):\n%s", when, m.proc.err, tailLog(m.proc.stderr.String(), 30, 300))
	default:
	}
}

func TestHostileChunkFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, p string)
	}{
		{"sparse 64GiB", func(t *testing.T, p string) {
			if err := os.Truncate(p, 64<<30); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A store timeout far above what a read takes, far below the
			// time the test may run: a read that waits on it fails.
			const storeTimeout = 20 * time.Second
			m := mount(t, withConfig(fmt.Sprintf("dual:\n  store_timeout: %s\n", storeTimeout)))
			data := randBytes(900, 6<<20)
			src := t.TempDir() + "/src"
			writeFile(t, src, data)
			runTool(t, "cp", src, m.Path("f"))
			writeFile(t, src+"2", randBytes(901, 256<<10))
			runTool(t, "cp", src+"2", m.Path("other"))
			refs := m.FileChunks(primary, data)
			if len(refs) < 4 {
				t.Fatalf("a 6 MiB file has %d chunks, want 4 or more", len(refs))
			}
			one, both := refs[1], refs[len(refs)-2]
			m.Remount() // empty caches: every read below goes to the stores
			tc.damage(t, m.ChunkPath(primary, one.ID))
			for _, tier := range []string{primary, safety} {
				tc.damage(t, m.ChunkPath(tier, both.ID))
			}
			cmpFiles(t, src+"2", m.Path("other")) // the daemon warmed up
			threads := m.daemonThreads()

			// Damaged in one tier: the bytes come from the other, and the
			// damaged copy is healed.
			f, err := os.Open(m.Path("f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			readAt := func(off, n int) ([]byte, error) {
				b := make([]byte, n)
				done := make(chan error, 1)
				go func() {
					_, err := f.ReadAt(b, int64(off))
					done <- err
				}()
				select {
				case err := <-done:
					return b, err
				case <-time.After(storeTimeout / 2):
					t.Fatalf("a read at %d did not answer within %s: it waits on the store", off, storeTimeout/2)
					return nil, nil
				}
			}
			from, to := (one.Off+4095)&^4095, (one.Off+one.Size)&^4095
			if got, err := readAt(from, to-from); err != nil || !bytes.Equal(got, data[from:to]) {
				t.Fatalf("reading the chunk damaged in the primary: %v (or wrong bytes)", err)
			}
			m.alive("after the read of the chunk damaged in one tier")
			p := m.ChunkPath(primary, one.ID)
			if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || !chunkOK(p, one.ID, data[one.Off:one.Off+one.Size]) {
				t.Errorf("the damaged primary copy %s was not healed: %v, %v", p, fi, err)
			}

			// Damaged in both: EIO for that chunk's bytes, each time, at
			// once, and no thread left behind.
			from = (both.Off + 4095) &^ 4095
			for i := range 12 {
				if _, err := readAt(from, 4096); !errors.Is(err, syscall.EIO) {
					t.Fatalf("read %d of the chunk damaged in both tiers: %v, want EIO", i, err)
				}
				m.alive(fmt.Sprintf("after read %d of the chunk damaged in both tiers", i))
			}
			n := m.daemonThreads()
			t.Logf("the daemon's OS threads: %d before the reads, %d after", threads, n)
			if n > threads+6 {
				t.Errorf("the daemon had %d OS threads before the reads, %d after 13: calls left blocked", threads, n)
			}
			raw := m.StatsRaw()
			for path, least := range map[string]int64{
				"tiers.primary.reads.checksum_errors": 13,
				"tiers.safety.reads.checksum_errors":  12,
				"self_heals":                          1,
			} {
				if got := sfNum(raw, path); got < least {
					t.Errorf("stats %s = %d, want >= %d", path, got, least)
				}
			}
			// The rest of the file reads as it was.
			for _, r := range refs {
				if r.ID == both.ID {
					continue
				}
				from, to := (r.Off+4095)&^4095, (r.Off+r.Size)&^4095
				if to <= from {
					continue
				}
				if got, err := readAt(from, to-from); err != nil || !bytes.Equal(got, data[from:to]) {
					t.Errorf("chunk at %d: %v (or wrong bytes)", r.Off, err)
				}
			}
		})
	}
}
