package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

func TestToErrno(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("ctx: %w", err) }
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{wrap(index.ErrNotExist), syscall.ENOENT},
		{wrap(index.ErrExist), syscall.EEXIST},
		{wrap(index.ErrNotEmpty), syscall.ENOTEMPTY},
		{wrap(index.ErrNotDir), syscall.ENOTDIR},
		{wrap(index.ErrIsDir), syscall.EISDIR},
		{wrap(index.ErrNameTooLong), syscall.ENAMETOOLONG},
		{wrap(index.ErrNoData), syscall.ENODATA},
		{wrap(index.ErrInvalid), syscall.EINVAL},
		{wrap(index.ErrPerm), syscall.EPERM},
		{wrap(index.ErrNoSpace), syscall.ENOSPC},
		{wrap(dual.ErrBusy), syscall.EBUSY},
		{wrap(errBadCommand), syscall.EINVAL},
		// A chunk file's ENOENT must not look like a missing file.
		{wrap(fmt.Errorf("local: %w: %w", stores.ErrNotFound, os.ErrNotExist)), syscall.EIO},
		{wrap(stores.ErrCorrupt), syscall.EIO},
		{wrap(dual.ErrWrite), syscall.EIO},
		{wrap(context.Canceled), syscall.EINTR},
		{wrap(syscall.ENOSPC), syscall.ENOSPC},
		{errors.New("store unreachable"), syscall.EIO},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
