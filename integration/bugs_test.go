package integration

// Bugs found by the reliability tests of issue #7, each as a minimal
// failing test. They fail until the bug is fixed; then they stay as
// regression tests (each says which commit fixed it).

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestBugFsyncDirectory: fsync(2) of a directory fails with EOPNOTSUPP.
// It must succeed: "write a temp file, fsync it, rename it, fsync the
// directory" is the standard durable-replace pattern (renameio, git,
// PostgreSQL, package managers), and those tools fail hard on the error.
// Found by TestModelOps.
//
// Cause: go-fuse answers FUSE FSYNCDIR with ENOTSUP unless the directory's
// handle implements FileFsyncdirer or the node implements NodeFsyncer, and
// fs.node implemented neither (only the file handle had Fsync). Fixed in
// 6433477.
func TestBugFsyncDirectory(t *testing.T) {
	t.Parallel()
	m := mount(t)
	if err := os.Mkdir(m.Path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, m.Path("d", "f"), []byte("x"))
	for _, dir := range []string{m.Dir, m.Path("d")} {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Fsync(fd); err != nil {
			t.Errorf("fsync of directory %s: %v, want success", dir, err)
		}
		if err := syscall.Fdatasync(fd); err != nil {
			t.Errorf("fdatasync of directory %s: %v, want success", dir, err)
		}
		syscall.Close(fd)
	}
	// A regular file's fsync still works and still commits.
	f, err := os.OpenFile(m.Path("d", "f"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Errorf("fsync of a file: %v", err)
	}
	f.Close()
	if b, err := os.ReadFile(m.Path("d", "f")); err != nil || string(b) != "xy" {
		t.Errorf("d/f: %q, %v", b, err)
	}
}

// TestBugChunkerConfigValidation: chunker sizes the chunker rejects pass
// config validation. The mount then creates the data dir and the index
// with those sizes in its header, fails after that with exit 1 (not 2,
// and without naming the key), and the data dir can never be mounted
// again: the header, not the config, decides the sizes of an existing
// filesystem. Found by a first draft of crash_test.go (avg_size equal to
// min_size).
//
// Fixed in ff97d58 (config names the chunker key, exit 2, nothing is left
// behind).
func TestBugChunkerConfigValidation(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	for _, c := range []struct{ name, yaml, key string }{
		{"avg equal to min", "chunker:\n  min_size: 65536\n  avg_size: 65536\n  max_size: 524288\n", "avg_size"},
		{"avg not a power of two", "chunker:\n  min_size: 65536\n  avg_size: 100000\n  max_size: 524288\n", "avg_size"},
		{"max below min", "chunker:\n  min_size: 1048576\n  avg_size: 2097152\n  max_size: 524288\n", "max_size"},
		{"min below the window", "chunker:\n  min_size: 16\n  avg_size: 4096\n  max_size: 65536\n", "min_size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, c.yaml)
			mountMustFail(t, 2, mp, []string{c.key}, "mount", "--config", cfg, "--data-dir", data, mp)
			mustNotExist(t, data)
		})
	}
}

// bugSignalled runs fn on a locked OS thread while another goroutine sends
// that thread SIGURG every 100µs, as the Go runtime's preemption does to
// any Go program under load (the runtime handles SIGURG harmlessly; the
// handler is installed with SA_RESTART).
func bugSignalled(fn func()) {
	tidc := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tidc <- syscall.Gettid()
		fn()
		close(done)
	}()
	tid := <-tidc
	for {
		select {
		case <-done:
			return
		default:
		}
		_ = syscall.Tgkill(os.Getpid(), tid, syscall.SIGURG)
		time.Sleep(100 * time.Microsecond) // the signal rate under test: not synchronisation
	}
}

// TestBugInterruptedSyscalls: fsync(2) (and, more rarely, read(2)) fails
// with EINTR when the calling thread receives a signal it handles, even
// one installed with SA_RESTART: FUSE does not restart a call the
// filesystem answered with EINTR. A local filesystem never fails these
// calls so; glibc's fsync does not retry, and PostgreSQL and SQLite treat
// a failed fsync as fatal. Go's os package retries EINTR, so Go programs
// only see it through syscall directly.
//
// Cause: go-fuse turns the kernel's FUSE_INTERRUPT into a cancelled
// request context; Fsync passes it to dm.Sync and db.Sync, which check it
// first thing, and fs/errno.go maps context.Canceled to EINTR. The same
// cancellation makes an interrupted close(2) throw a file's writes away:
// TestBugPosixInterruptedCloseLosesWrites in bugs_posix_test.go.
//
// Fixed in 4fbe79b (file I/O ignores FUSE interrupts).
func TestBugInterruptedSyscalls(t *testing.T) {
	t.Parallel()
	m := mount(t)
	big := randBytes(77, 48<<20)
	writeFile(t, m.Path("big"), big)
	m.Remount() // cold chunk cache: reads go to the stores

	var fsyncs, fsyncEINTR, reads, readEINTR int
	bugSignalled(func() {
		deadline := time.Now().Add(3 * time.Second)
		buf := make([]byte, 1<<20)
		for i := 0; time.Now().Before(deadline); i++ {
			fd, err := syscall.Open(m.Path(fmt.Sprintf("f%d", i)), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			if _, err := syscall.Write(fd, buf); err != nil {
				t.Errorf("write: %v", err)
			}
			fsyncs++
			if err := syscall.Fsync(fd); err == syscall.EINTR {
				fsyncEINTR++
			} else if err != nil {
				t.Errorf("fsync: %v", err)
			}
			syscall.Close(fd)
			fd, err = syscall.Open(m.Path("big"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			for off := int64(i%8) << 20; off < int64(len(big)); off += 8 << 20 {
				reads++
				if _, err := syscall.Pread(fd, buf, off); err == syscall.EINTR {
					readEINTR++
				} else if err != nil {
					t.Errorf("pread: %v", err)
				}
			}
			syscall.Close(fd)
		}
	})
	t.Logf("%d fsyncs, %d reads under a stream of SIGURG", fsyncs, reads)
	if fsyncEINTR > 0 {
		t.Errorf("%d of %d fsync(2) calls failed with EINTR", fsyncEINTR, fsyncs)
	}
	if readEINTR > 0 {
		t.Errorf("%d of %d read(2) calls failed with EINTR", readEINTR, reads)
	}
}

// TestBugStagingLeftovers: a kill of the daemon between creating a staging
// file and unlinking it (fs/vfs/file.go toStaging: os.CreateTemp, then
// os.Remove) leaves the file in DATA/staging for good: nothing removes
// staging files at mount. The window is short, but under load the daemon
// is descheduled inside it: TestCrashWriters found one (ino-92-…) in a
// few dozen kills. Each is empty (the truncate comes after the unlink),
// so this only leaks names; the comment "a crash leaves nothing behind" is
// what is wrong. The test plants what such a crash leaves.
//
// Fixed in 6433477 (stale staging files are removed at mount).
func TestBugStagingLeftovers(t *testing.T) {
	t.Parallel()
	m := mount(t)
	writeFile(t, m.Path("f"), []byte("x"))
	m.Kill()
	leftover := filepath.Join(m.Data, "staging", "ino-2-123456789")
	if err := os.WriteFile(leftover, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	if _, err := os.Stat(leftover); err == nil {
		t.Errorf("the mount kept %s, a staging file a crash left behind", leftover)
	}
}
