package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// toErrno is the one place where an error becomes an errno. Store errors
// never reach go-fuse's ToErrno: it would turn a wrapped error into
// ENOSYS, and a chunk file's "no such file" into ENOENT for a file that
// exists.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, index.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, index.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, index.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, index.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, index.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, index.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, index.ErrNoData):
		return syscall.ENODATA
	case errors.Is(err, index.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, index.ErrPerm):
		return syscall.EPERM
	case errors.Is(err, index.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, dual.ErrBusy):
		return syscall.EBUSY
	case errors.Is(err, errBadCommand):
		return syscall.EINVAL
	case errors.Is(err, stores.ErrNotFound), errors.Is(err, stores.ErrCorrupt),
		errors.Is(err, dual.ErrWrite), errors.Is(err, index.ErrCorrupt):
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, syscall.ENOSPC):
		return syscall.ENOSPC
	case errors.Is(err, syscall.EROFS):
		return syscall.EROFS
	case errors.Is(err, vfs.ErrFileTooBig), errors.Is(err, syscall.EFBIG):
		return syscall.EFBIG
	case errors.Is(err, vfs.ErrNoData):
		return syscall.ENXIO
	case errors.Is(err, errors.ErrUnsupported):
		return syscall.EOPNOTSUPP
	case errors.As(err, &e) && e == syscall.EIO:
		return e
	}
	// Anything else (a store that is down, a staging file that failed) is
	// an I/O error to the application: never ENOSYS, never ENOENT.
	return syscall.EIO
}
