package index

import (
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Every error a method returns for one of these conditions
// wraps the sentinel (compare with errors.Is) and names the inode or name
// involved.
var (
	// ErrNotExist: the inode, name or parent does not exist.
	ErrNotExist = errors.New("no such file or directory")
	// ErrExist: the name (or xattr, with XattrCreate) already exists.
	ErrExist = errors.New("file exists")
	// ErrNotEmpty: a directory to remove or replace has entries.
	ErrNotEmpty = errors.New("directory not empty")
	// ErrNotDir: a parent, or an operation that needs a directory, got a
	// non-directory.
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir: an operation that needs a non-directory got a directory.
	ErrIsDir = errors.New("is a directory")
	// ErrInvalid: a bad argument (bad name, a directory moved into its own
	// subtree, unknown flags, a chunk list that contradicts itself…).
	ErrInvalid = errors.New("invalid argument")
	// ErrPerm: the operation is not permitted on this kind of inode (a hard
	// link to a directory, like link(2)'s EPERM).
	ErrPerm = errors.New("operation not permitted")
	// ErrNameTooLong: a name longer than MaxNameLen bytes, or a symlink
	// target longer than MaxTargetLen.
	ErrNameTooLong = errors.New("file name too long")
	// ErrNoData: the extended attribute does not exist (ENODATA).
	ErrNoData = errors.New("no such attribute")
	// ErrNoSpace: an extended attribute would take the inode past
	// MaxXattrCount or MaxXattrTotal (ENOSPC, as ext4 when its one xattr
	// block is full).
	ErrNoSpace = errors.New("no space left for extended attributes")
	// ErrCorrupt: the file is not an SQLite database, or a row or the header
	// holds something this package never writes.
	ErrCorrupt = errors.New("index corrupt")
	// ErrForeign: the file is an SQLite database, but not a dualstore index.
	ErrForeign = errors.New("not a dualstore index")
	// ErrVersion: the index was made by a newer format version.
	ErrVersion = errors.New("unsupported index format version")
	// ErrLocked: another process has the index open.
	ErrLocked = errors.New("index in use by another process")
	// ErrClosed is returned by every call on a closed DB.
	ErrClosed = errors.New("index closed")
)

const (
	// MaxNameLen is the longest name, in bytes (NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target, in bytes (PATH_MAX less
	// the terminating NUL).
	MaxTargetLen = 4095
	// MaxXattrNameLen is the longest extended attribute name (XATTR_NAME_MAX).
	MaxXattrNameLen = 255
	// MaxXattrSize is the largest extended attribute value (XATTR_SIZE_MAX).
	MaxXattrSize = 65536
	// MaxXattrCount is the most extended attributes one inode holds. With
	// names of at most MaxXattrNameLen bytes, the list listxattr returns
	// (each name and its NUL) is at most 256 × 256 bytes: it always fits
	// XATTR_LIST_MAX (64 KiB), past which listxattr fails with E2BIG and
	// `cp -a`/`rsync -X` cannot copy a file's attributes. ext4 keeps them
	// all in one 4 KiB block: about 200 empty ones at most.
	MaxXattrCount = 256
	// MaxXattrTotal is the most bytes of names and values one inode's
	// extended attributes take together: 16 values of MaxXattrSize, more
	// than ext4 (one 4 KiB block) or btrfs (16 KiB per attribute) keep,
	// so whatever they hold can be copied in, while what one file can
	// make the index (and every copy of it) hold stays bounded.
	MaxXattrTotal = 1 << 20
)

// ValidateName reports whether name can be a directory entry: non-empty,
// not "." or "..", no '/' or NUL byte (ErrInvalid), at most MaxNameLen bytes
// (ErrNameTooLong). Names are bytes, not necessarily UTF-8.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name: %w", ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains '/' or NUL: %w", name, ErrInvalid)
	}
	return nil
}

func validateXattrName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty xattr name: %w", ErrInvalid)
	case len(name) > MaxXattrNameLen:
		return fmt.Errorf("xattr name of %d bytes: %w", len(name), ErrNameTooLong)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("xattr name %q contains NUL: %w", name, ErrInvalid)
	}
	return nil
}

// sqlErr marks SQLite's own corruption reports with ErrCorrupt, so that a
// damaged page surfaces like a damaged row.
func sqlErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	return err
}
