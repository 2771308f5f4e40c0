package local

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncFS flushes the whole filesystem holding dir (syncfs(2)): every chunk
// written and renamed so far becomes durable in one call.
func syncFS(dir *os.File) error {
	rc, err := dir.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// startWriteback asks the kernel to start writing f's dirty pages to disk
// now, without waiting (sync_file_range(SYNC_FILE_RANGE_WRITE)). Chunk
// files are otherwise written back only at the next Sync, or once the
// kernel's dirty limits are hit; started early, the disk works while the
// data still arrives, and the Sync at a file's fsync finds little left to
// do. It is a hint: errors are ignored.
func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE) })
}

// directMin is the smallest chunk file readDirect reads with O_DIRECT.
const directMin = 128 << 10

// readFile reads a whole chunk file. A big one is read with O_DIRECT: the
// disk writes straight into the returned buffer, without the kernel
// filling its page cache and copying out of it (the daemon keeps what it
// reads in its own chunk cache, and the kernel keeps the FUSE file's
// pages). Where O_DIRECT is refused (tmpfs, some FUSE or network
// filesystems) or the file is small, it is a plain read.
func readFile(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return os.ReadFile(p)
		}
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	size := int(st.Size)
	if size < directMin {
		return os.ReadFile(p)
	}
	const align = 4096
	raw := make([]byte, size+2*align) // room to align and to read a whole last block
	start := align - int(uintptr(unsafe.Pointer(&raw[0]))&(align-1))
	buf := raw[start : start+(size+align-1)/align*align]
	n := 0
	for n < size {
		k, err := unix.Pread(fd, buf[n:], int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EINVAL) {
			return os.ReadFile(p) // the filesystem wants another alignment
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: p, Err: err}
		}
		if k == 0 {
			break // shorter than it was a moment ago
		}
		n += k
	}
	return buf[:n:n], nil
}
