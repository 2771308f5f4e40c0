package local

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"syscall"

	"github.com/dualstore/dualstore/stores"
)

// openRegular opens p, a chunk file or a meta object, for reading, and
// returns it with its FileInfo. Only a regular file is ever opened, and
// nothing blocks: anything else in its place (a FIFO, a socket, a device,
// a directory, a symbolic link) is refused with an error wrapping
// stores.ErrCorrupt, with fi saying what it is (fi.IsDir() for a
// directory), so that a store damaged by hand or by a hostile process is
// a corrupt copy the tier falls back from and heals, never a hang.
//
//   - Lstat first: a device is never opened (opening one can act on it: a
//     tape rewinds, a watchdog starts), a FIFO never waited on.
//   - O_NONBLOCK: a FIFO swapped in after the Lstat does not block the
//     open (it changes nothing for a regular file).
//   - O_NOFOLLOW: a symbolic link swapped in is refused (ELOOP).
//   - Fstat after the open: what was opened is a regular file too.
//
// A missing file is an error wrapping iofs.ErrNotExist.
func openRegular(p string) (_ *os.File, fi iofs.FileInfo, _ error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, notRegular(p, fi)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, fmt.Errorf("%s: %w: a symbolic link, not a regular file", p, stores.ErrCorrupt)
	}
	if err != nil {
		return nil, nil, err
	}
	ofi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, nil, err
	case !ofi.Mode().IsRegular():
		f.Close()
		return nil, ofi, notRegular(p, ofi)
	}
	// A file renamed into place between the Lstat and the open is the
	// one opened, and checked: a regular file too.
	return f, ofi, nil
}

// notRegular is openRegular's error for fi, which is no regular file.
func notRegular(p string, fi iofs.FileInfo) error {
	what := fi.Mode().Type().String()
	switch t := fi.Mode().Type(); {
	case t&iofs.ModeDir != 0:
		what = "a directory"
	case t&iofs.ModeSymlink != 0:
		what = "a symbolic link"
	case t&iofs.ModeNamedPipe != 0:
		what = "a FIFO"
	case t&iofs.ModeSocket != 0:
		what = "a socket"
	case t&iofs.ModeDevice != 0:
		what = "a device"
	}
	return fmt.Errorf("%s: %w: %s, not a regular file", p, stores.ErrCorrupt, what)
}

// readChunk reads the chunk file p whole. A file that is no regular file,
// or that is larger than limit bytes (more than any stored form of the
// chunk can take), is refused with an error wrapping stores.ErrCorrupt
// without being read; no more than the size it had when opened is read,
// whatever happens to it meanwhile. It reads into rb's buffer (see
// readBuf; nil: a new one).
func readChunk(p string, limit int64, rb *readBuf) ([]byte, error) {
	f, fi, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the chunk can take stored (%d)", p, stores.ErrCorrupt, fi.Size(), limit)
	}
	return readWhole(f, int(fi.Size()), rb)
}

// readPlain reads the first size bytes of f (fewer if it is shorter now)
// into rb's buffer.
func readPlain(f *os.File, size int, rb *readBuf) ([]byte, error) {
	buf := rb.bytes(size)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return buf[:n], nil
}
