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

// fsMagic returns the f_type statfs(2) reports for the filesystem holding
// dir (see noSyncfs).
func fsMagic(dir *os.File) (uint32, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(dir.Fd()), &st); err != nil {
		return 0, err
	}
	// f_type is a long: CIFS's 0xFF534D42 is negative where that has 32
	// bits. The magic numbers are 32-bit.
	return uint32(st.Type), nil
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

// directMin is the smallest chunk file readWhole reads with O_DIRECT.
const directMin = 128 << 10

// readWhole reads the first size bytes of f, a chunk file of that size
// (fewer if it shrank meanwhile, never more). A big one is read with
// O_DIRECT: the disk writes straight into the returned buffer, without
// the kernel filling its page cache and copying out of it (the daemon
// keeps what it reads in its own chunk cache, and the kernel keeps the
// FUSE file's pages). A small one, or one where O_DIRECT is refused
// (tmpfs, some FUSE or network filesystems), is a plain read. O_DIRECT is
// switched on with fcntl, on the descriptor already open. It reads into
// rb's buffer (see readBuf; nil: a new one).
func readWhole(f *os.File, size int, rb *readBuf) ([]byte, error) {
	if size < directMin || !setDirect(f, true) {
		return readPlain(f, size, rb)
	}
	const align = 4096
	raw := rb.bytes(size + 2*align) // room to align and to read a whole last block
	start := align - int(uintptr(unsafe.Pointer(&raw[0]))&(align-1))
	buf := raw[start : start+(size+align-1)/align*align]
	// pread(2) itself, not File.ReadAt: ReadAt goes on after a short read
	// at an offset that is no longer aligned. A short read is the end.
	fd := int(f.Fd())
	n := 0
	for n < size {
		k, err := unix.Pread(fd, buf[n:], int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EINVAL) && setDirect(f, false) {
			return readPlain(f, size, rb) // the filesystem wants another alignment
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: f.Name(), Err: err}
		}
		n += k
		if k == 0 || n%align != 0 {
			break // the end of the file (or it shrank a moment ago)
		}
	}
	n = min(n, size)
	return buf[:n:n], nil
}

// setDirect turns O_DIRECT on (or off) for f; false if the filesystem
// refuses.
func setDirect(f *os.File, on bool) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err == nil {
			flags &^= unix.O_DIRECT
			if on {
				flags |= unix.O_DIRECT
			}
			_, err = unix.FcntlInt(fd, unix.F_SETFL, flags)
		}
		ok = err == nil
	})
	return ok
}
