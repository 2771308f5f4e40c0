package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"

	"modernc.org/sqlite"
)

// Attr is an inode's attributes.
type Attr struct {
	Ino uint64
	// Mode is the type (syscall.S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO,
	// S_IFCHR, S_IFBLK or S_IFSOCK) and the permission bits, setuid, setgid
	// and sticky included.
	Mode  uint32
	Nlink uint32
	Uid   uint32
	Gid   uint32
	Rdev  uint32
	// Size is the byte length of a regular file (the sum of its chunks),
	// the target length of a symlink, 0 otherwise.
	Size                uint64
	Atime, Mtime, Ctime time.Time // nanosecond precision
	// Holes is how many of a regular file's Size bytes are holes: read as
	// zeros, stored nowhere (st_blocks counts Size - Holes).
	Holes uint64
}

// IsDir reports whether the inode is a directory.
func (a Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// IsRegular reports whether the inode is a regular file.
func (a Attr) IsRegular() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFREG }

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // the inode's full mode (type and permission bits)
}

const (
	modeType = syscall.S_IFMT
	modePerm = 0o7777
)

func validType(mode uint32) bool {
	switch mode & modeType {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO,
		syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK:
		return mode&^(modeType|modePerm) == 0
	}
	return false
}

// inodeCols are the columns scanAttr reads, in order.
const inodeCols = "ino, mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns, holes"

// inodeColsI is inodeCols qualified with the alias i.
const inodeColsI = "i.ino, i.mode, i.nlink, i.uid, i.gid, i.rdev, i.size, i.atime_ns, i.mtime_ns, i.ctime_ns, i.holes"

type scanner interface{ Scan(dest ...any) error }

// scanAttr reads one inodes row. sql.ErrNoRows passes through unwrapped.
func scanAttr(r scanner, extra ...any) (Attr, error) {
	var v [11]int64
	dest := []any{&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return Attr{}, scanErr(err, "inodes")
	}
	return decodeAttr(v)
}

// decodeAttr checks the ranges of a stored inode: the file is not trusted.
func decodeAttr(v [11]int64) (Attr, error) {
	u32 := func(x int64) bool { return x >= 0 && x <= math.MaxUint32 }
	if v[0] <= 0 || !u32(v[1]) || !validType(uint32(v[1])) || !u32(v[2]) || !u32(v[3]) ||
		!u32(v[4]) || !u32(v[5]) || v[6] < 0 || v[10] < 0 || v[10] > v[6] {
		return Attr{}, fmt.Errorf("inodes: row %v out of range: %w", v, ErrCorrupt)
	}
	return Attr{
		Ino: uint64(v[0]), Mode: uint32(v[1]), Nlink: uint32(v[2]),
		Uid: uint32(v[3]), Gid: uint32(v[4]), Rdev: uint32(v[5]), Size: uint64(v[6]),
		Atime: fromNS(v[7]), Mtime: fromNS(v[8]), Ctime: fromNS(v[9]), Holes: uint64(v[10]),
	}, nil
}

// scanErr tells a missing row (returned as is), a database error and a
// value of the wrong type (a corrupt row of table) apart.
func scanErr(err error, table string) error {
	var se *sqlite.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows), errors.As(err, &se),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone):
		return sqlErr(err)
	}
	return fmt.Errorf("%s: bad row: %w: %w", table, ErrCorrupt, err)
}

func getAttr(ctx context.Context, q querier, ino uint64) (Attr, error) {
	a, err := scanAttr(q.QueryRowContext(ctx, "SELECT "+inodeCols+" FROM inodes WHERE ino = ?", int64(ino)))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("inode %d: %w", ino, ErrNotExist)
	}
	return a, err
}

// getDir returns a directory's attributes, ErrNotExist or ErrNotDir.
func getDir(ctx context.Context, q querier, ino uint64) (Attr, error) {
	a, err := getAttr(ctx, q, ino)
	if err != nil {
		return a, err
	}
	if !a.IsDir() {
		return a, fmt.Errorf("inode %d: %w", ino, ErrNotDir)
	}
	return a, nil
}

// entry looks a name up; ok is false if the name does not exist.
func entry(ctx context.Context, q querier, parent uint64, name string) (a Attr, ok bool, err error) {
	a, err = scanAttr(q.QueryRowContext(ctx, "SELECT "+inodeColsI+
		" FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.name = ?",
		int64(parent), []byte(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return a, false, nil
	}
	return a, err == nil, err
}

const (
	sIFREG = syscall.S_IFREG
	sIFDIR = syscall.S_IFDIR
)
