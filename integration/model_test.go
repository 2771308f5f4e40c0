package integration

// A model-based random test in the spirit of fsx (issue #7): seeded random
// sequences of open (every flag mix), write at random offsets (holes
// included), sequential write, append, read, seek, mmap read and write,
// truncate, ftruncate, fsync, close, reopen, dup, rename, link, unlink,
// symlink, mkdir, rmdir, chmod and remount are applied both to the mount
// and to a reference directory on plain disk (whatever TMPDIR is, ext4
// here). The reference is the model: every call must succeed or fail with
// the same errno on both, reads must return the same bytes, and after
// every step the two trees must be equal in names, types, sizes, modes,
// link counts and symlink targets, and in the contents of every file the
// step may have changed (all contents every 20 steps and around every
// remount); the mount's mtimes never go backwards and survive a remount.
//
// Every choice comes from the seed, so DUALSTORE_SEED replays a failure
// (the steps are the same; only timing differs). TestModelOps runs in the
// test process; TestModelProcs runs several processes at once on distinct
// directories of one mount, with remounts between rounds.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// modelChunkers are the chunk sizes a seed may pick: tiny chunks make every
// write cross boundaries; the default sizes are what users run.
var modelChunkers = []string{
	"chunker:\n  min_size: 4096\n  avg_size: 8192\n  max_size: 32768\n",
	"",
}

// modelNames is the pool of entry names in every directory: few, so that
// renames, links and creates collide with existing entries.
var modelNames = []string{"a", "b", "c", "d", "e"}

const (
	modelMaxHandles = 8
	modelMaxDirs    = 6
	modelMaxDepth   = 3
	modelBigFile    = 2 << 20 // above this, writes give way to truncates
)

// modelHandle is one file opened on both sides with the same flags.
type modelHandle struct {
	fa, fb int // descriptors: mount, reference
	path   string
	flags  int
}

// modelFS drives one mount directory and one reference directory.
type modelFS struct {
	t        *testing.T
	mnt, ref string
	rng      *rand.Rand
	handles  []modelHandle
	// remount, when set, closes nothing itself: the caller closes the
	// handles first (see opRemount).
	remount func()

	step   int
	log    []string // the recent steps, for failure messages
	mtimes map[uint64]time.Time
	counts map[string]int
	failed bool
	// checkAt: every checkAt steps all contents are compared; in between
	// only those of files the step may have changed (whose reference
	// inode's size, mtime or ctime moved).
	checkAt int
	seen    map[uint64][3]int64 // reference inode → size, mtime, ctime at the last content compare
}

func newModelFS(t *testing.T, mnt, ref string, seed uint64) *modelFS {
	return &modelFS{t: t, mnt: mnt, ref: ref, rng: relRand(seed, 7), mtimes: map[uint64]time.Time{}, counts: map[string]int{}, checkAt: 20, seen: map[uint64][3]int64{}}
}

func (mf *modelFS) logf(format string, args ...any) {
	mf.log = append(mf.log, fmt.Sprintf("%d: ", mf.step)+fmt.Sprintf(format, args...))
	if len(mf.log) > 60 {
		mf.log = mf.log[len(mf.log)-40:]
	}
}

// fatalf fails the run with the recent steps.
func (mf *modelFS) fatalf(format string, args ...any) {
	mf.t.Helper()
	mf.failed = true
	mf.t.Fatalf("step %d: %s\nrecent steps:\n  %s", mf.step, fmt.Sprintf(format, args...), strings.Join(mf.log, "\n  "))
}

func modelErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(0xffff) // not a syscall error: never equal to a real one
}

func modelErrString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// same checks that a call went the same way on both sides and reports
// whether it succeeded.
func (mf *modelFS) same(what string, ea, eb error) bool {
	mf.t.Helper()
	if modelErrno(ea) != modelErrno(eb) {
		mf.fatalf("%s: mount says %s, reference says %s", what, modelErrString(ea), modelErrString(eb))
	}
	return ea == nil
}

// entries lists the reference tree (relative paths, sorted; "" is the
// root), with the directories apart.
func (mf *modelFS) entries() (all, dirs, files []string) {
	dirs = []string{""}
	_ = filepath.WalkDir(mf.ref, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || p == mf.ref {
			return nil
		}
		rel, _ := filepath.Rel(mf.ref, p)
		all = append(all, rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			files = append(files, rel)
		}
		return nil
	})
	return all, dirs, files
}

func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// anyPath draws a path that may or may not exist: a name of the pool in
// an existing directory.
func (mf *modelFS) anyPath() string {
	_, dirs, _ := mf.entries()
	var ok []string
	for _, d := range dirs {
		if depth(d) < modelMaxDepth {
			ok = append(ok, d)
		}
	}
	return filepath.Join(ok[mf.rng.IntN(len(ok))], modelNames[mf.rng.IntN(len(modelNames))])
}

// filePath draws an existing regular file most of the time.
func (mf *modelFS) filePath() string {
	_, _, files := mf.entries()
	if len(files) == 0 || mf.rng.IntN(10) == 0 {
		return mf.anyPath()
	}
	return files[mf.rng.IntN(len(files))]
}

// entryPath draws an existing entry (any type) most of the time.
func (mf *modelFS) entryPath() string {
	all, _, _ := mf.entries()
	if len(all) == 0 || mf.rng.IntN(8) == 0 {
		return mf.anyPath()
	}
	return all[mf.rng.IntN(len(all))]
}

func (mf *modelFS) refSize(rel string) int64 {
	fi, err := os.Lstat(filepath.Join(mf.ref, rel))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (mf *modelFS) fdSize(fd int) int64 {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Size
}

// both runs fn on the mount side and on the reference side.
func (mf *modelFS) both(what string, fn func(root string) error) bool {
	mf.t.Helper()
	ea := fn(mf.mnt)
	eb := fn(mf.ref)
	return mf.same(what, ea, eb)
}

// writeLen draws the length of a write.
func (mf *modelFS) writeLen() int {
	switch r := mf.rng.IntN(100); {
	case r < 65:
		return 1 + mf.rng.IntN(16<<10)
	case r < 95:
		return 16<<10 + mf.rng.IntN(240<<10)
	default:
		return 256<<10 + mf.rng.IntN(1<<20)
	}
}

// offset draws a write or read offset for a file of size n: mostly
// inside or just past the end, sometimes far past it (a hole).
func (mf *modelFS) offset(n int64) int64 {
	switch r := mf.rng.IntN(100); {
	case r < 15:
		return n // append
	case r < 90:
		return mf.rng.Int64N(n + 64<<10 + 1)
	default:
		return n + mf.rng.Int64N(2<<20)
	}
}

// handle draws an open handle, or -1.
func (mf *modelFS) handle() int {
	if len(mf.handles) == 0 {
		return -1
	}
	return mf.rng.IntN(len(mf.handles))
}

// stepOnce draws and applies one operation.
func (mf *modelFS) stepOnce() {
	mf.t.Helper()
	mf.step++
	type op struct {
		name   string
		weight int
		fn     func()
	}
	ops := []op{
		{"open", 12, mf.opOpen},
		{"close", 7, mf.opClose},
		{"pwrite", 18, mf.opPwrite},
		{"write", 8, mf.opWrite},
		{"read", 10, mf.opRead},
		{"seek", 2, mf.opSeek},
		{"mmap-read", 3, mf.opMmapRead},
		{"mmap-write", 3, mf.opMmapWrite},
		{"truncate", 4, mf.opTruncate},
		{"ftruncate", 4, mf.opFtruncate},
		{"fsync", 1, mf.opFsync},
		{"reopen", 4, mf.opReopen},
		{"dup", 2, mf.opDup},
		{"rename", 6, mf.opRename},
		{"link", 4, mf.opLink},
		{"unlink", 5, mf.opUnlink},
		{"symlink", 1, mf.opSymlink},
		{"mkdir", 2, mf.opMkdir},
		{"rmdir", 2, mf.opRmdir},
		{"chmod", 2, mf.opChmod},
	}
	if mf.remount != nil {
		ops = append(ops, op{"remount", 0, mf.opRemount})
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	// Remounts are rare: one step in 250.
	if mf.remount != nil && mf.rng.IntN(250) == 0 {
		mf.counts["remount"]++
		mf.opRemount()
	} else {
		r := mf.rng.IntN(total)
		for _, o := range ops {
			if r < o.weight {
				mf.counts[o.name]++
				o.fn()
				break
			}
			r -= o.weight
		}
	}
	mf.check(mf.step%mf.checkAt == 0)
}

func (mf *modelFS) opOpen() {
	if len(mf.handles) >= modelMaxHandles {
		mf.opClose()
		return
	}
	p := mf.filePath()
	flags := []int{syscall.O_RDONLY, syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDWR}[mf.rng.IntN(4)]
	if mf.rng.IntN(2) == 0 {
		flags |= syscall.O_CREAT
		if mf.rng.IntN(6) == 0 {
			flags |= syscall.O_EXCL
		}
	}
	// O_TRUNC with O_RDONLY is unspecified by POSIX: not drawn.
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY && mf.rng.IntN(5) == 0 {
		flags |= syscall.O_TRUNC
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY && mf.rng.IntN(5) == 0 {
		flags |= syscall.O_APPEND
	}
	mode := uint32([]int{0o644, 0o600, 0o755}[mf.rng.IntN(3)])
	mf.logf("open %s %#o", p, flags)
	fa, ea := syscall.Open(filepath.Join(mf.mnt, p), flags|syscall.O_CLOEXEC, mode)
	fb, eb := syscall.Open(filepath.Join(mf.ref, p), flags|syscall.O_CLOEXEC, mode)
	if !mf.same("open "+p, ea, eb) {
		return
	}
	mf.handles = append(mf.handles, modelHandle{fa: fa, fb: fb, path: p, flags: flags})
}

func (mf *modelFS) closeHandle(i int) {
	h := mf.handles[i]
	mf.handles = slices.Delete(mf.handles, i, i+1)
	mf.logf("close %s", h.path)
	ea := syscall.Close(h.fa)
	eb := syscall.Close(h.fb)
	mf.same("close "+h.path, ea, eb)
}

func (mf *modelFS) opClose() {
	if i := mf.handle(); i >= 0 {
		mf.closeHandle(i)
	}
}

// opReopen closes a handle and opens its path again with the same flags
// (less O_CREAT, O_EXCL and O_TRUNC): what was written must be there.
func (mf *modelFS) opReopen() {
	i := mf.handle()
	if i < 0 {
		mf.opOpen()
		return
	}
	h := mf.handles[i]
	mf.closeHandle(i)
	flags := h.flags &^ (syscall.O_CREAT | syscall.O_EXCL | syscall.O_TRUNC)
	mf.logf("reopen %s %#o", h.path, flags)
	fa, ea := syscall.Open(filepath.Join(mf.mnt, h.path), flags|syscall.O_CLOEXEC, 0)
	fb, eb := syscall.Open(filepath.Join(mf.ref, h.path), flags|syscall.O_CLOEXEC, 0)
	if mf.same("reopen "+h.path, ea, eb) {
		mf.handles = append(mf.handles, modelHandle{fa: fa, fb: fb, path: h.path, flags: flags})
	}
}

// opDup duplicates a descriptor: both share one open file description,
// and closing either flushes it (Flush runs more than once per handle).
func (mf *modelFS) opDup() {
	i := mf.handle()
	if i < 0 || len(mf.handles) >= modelMaxHandles {
		mf.opClose()
		return
	}
	h := mf.handles[i]
	mf.logf("dup %s", h.path)
	fa, ea := syscall.Dup(h.fa)
	fb, eb := syscall.Dup(h.fb)
	if mf.same("dup "+h.path, ea, eb) {
		syscall.CloseOnExec(fa)
		syscall.CloseOnExec(fb)
		mf.handles = append(mf.handles, modelHandle{fa: fa, fb: fb, path: h.path, flags: h.flags})
	}
}

func (mf *modelFS) opPwrite() {
	i := mf.handle()
	if i < 0 {
		mf.opOpen()
		return
	}
	h := mf.handles[i]
	size := mf.fdSize(h.fb)
	if size > modelBigFile {
		mf.opFtruncate()
		return
	}
	off := mf.offset(size)
	buf := randBytes(mf.rng.Uint64(), mf.writeLen())
	mf.logf("pwrite %s off %d len %d", h.path, off, len(buf))
	na, ea := syscall.Pwrite(h.fa, buf, off)
	nb, eb := syscall.Pwrite(h.fb, buf, off)
	if mf.same("pwrite "+h.path, ea, eb) && na != nb {
		mf.fatalf("pwrite %s: mount wrote %d bytes, reference %d", h.path, na, nb)
	}
}

// opWrite writes at the descriptor's offset (the end, with O_APPEND).
func (mf *modelFS) opWrite() {
	i := mf.handle()
	if i < 0 {
		mf.opOpen()
		return
	}
	h := mf.handles[i]
	if mf.fdSize(h.fb) > modelBigFile {
		mf.opFtruncate()
		return
	}
	buf := randBytes(mf.rng.Uint64(), mf.writeLen())
	mf.logf("write %s len %d", h.path, len(buf))
	na, ea := syscall.Write(h.fa, buf)
	nb, eb := syscall.Write(h.fb, buf)
	if mf.same("write "+h.path, ea, eb) && na != nb {
		mf.fatalf("write %s: mount wrote %d bytes, reference %d", h.path, na, nb)
	}
}

func (mf *modelFS) opRead() {
	i := mf.handle()
	if i < 0 {
		mf.opOpen()
		return
	}
	h := mf.handles[i]
	size := mf.fdSize(h.fb)
	off := mf.rng.Int64N(size + 4096)
	if mf.rng.IntN(3) == 0 {
		off = 0
	}
	n := 1 + mf.rng.IntN(300<<10)
	a, b := make([]byte, n), make([]byte, n)
	mf.logf("pread %s off %d len %d", h.path, off, n)
	na, ea := syscall.Pread(h.fa, a, off)
	nb, eb := syscall.Pread(h.fb, b, off)
	if !mf.same("pread "+h.path, ea, eb) {
		return
	}
	if na != nb || !bytes.Equal(a[:na], b[:nb]) {
		mf.fatalf("pread %s off %d len %d: mount read %d bytes, reference %d; %s", h.path, off, n, na, nb, modelDiff(a[:max(na, 0)], b[:max(nb, 0)]))
	}
}

// isDir reports whether a handle is of a directory.
func (mf *modelFS) isDir(h modelHandle) bool {
	var st syscall.Stat_t
	return syscall.Fstat(h.fb, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR
}

func (mf *modelFS) opSeek() {
	i := mf.handle()
	if i < 0 {
		return
	}
	h := mf.handles[i]
	if mf.isDir(h) {
		return // directory offsets are opaque cookies, different on every filesystem
	}
	off, whence := mf.rng.Int64N(mf.fdSize(h.fb)+8192), 0
	if mf.rng.IntN(3) == 0 {
		off, whence = 0, 2
	}
	mf.logf("lseek %s %d %d", h.path, off, whence)
	pa, ea := syscall.Seek(h.fa, off, whence)
	pb, eb := syscall.Seek(h.fb, off, whence)
	if mf.same("lseek "+h.path, ea, eb) && pa != pb {
		mf.fatalf("lseek %s %d %d: mount at %d, reference at %d", h.path, off, whence, pa, pb)
	}
}

// mapRange draws a range inside a file of size n for a mapping.
func (mf *modelFS) mapRange(n int64) (off, length int64) {
	off = mf.rng.Int64N(n)
	return off, 1 + mf.rng.Int64N(min(n-off, 512<<10))
}

// opMmapRead maps a file shared and read-only on both sides and compares
// a range: the page cache must agree with what reads return.
func (mf *modelFS) opMmapRead() {
	i := mf.handle()
	if i < 0 || mf.isDir(mf.handles[i]) {
		return
	}
	h := mf.handles[i]
	size := mf.fdSize(h.fb)
	if size == 0 {
		return
	}
	off, n := mf.mapRange(size)
	mf.logf("mmap read %s [%d, %d)", h.path, off, off+n)
	ma, ea := syscall.Mmap(h.fa, 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	mb, eb := syscall.Mmap(h.fb, 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	ok := mf.same("mmap "+h.path, ea, eb)
	defer func() {
		if ea == nil {
			syscall.Munmap(ma)
		}
		if eb == nil {
			syscall.Munmap(mb)
		}
	}()
	if ok && !bytes.Equal(ma[off:off+n], mb[off:off+n]) {
		mf.fatalf("mmap read %s [%d, %d): %s", h.path, off, off+n, modelDiff(ma[off:off+n], mb[off:off+n]))
	}
}

// opMmapWrite changes a range through a shared writable mapping on both
// sides, then msyncs and unmaps: the kernel writes the dirty pages back
// through FUSE.
func (mf *modelFS) opMmapWrite() {
	i := mf.handle()
	if i < 0 || mf.isDir(mf.handles[i]) {
		return
	}
	h := mf.handles[i]
	size := mf.fdSize(h.fb)
	if size == 0 {
		return
	}
	off, n := mf.mapRange(size)
	buf := randBytes(mf.rng.Uint64(), int(n))
	mf.logf("mmap write %s [%d, %d)", h.path, off, off+n)
	ma, ea := syscall.Mmap(h.fa, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	mb, eb := syscall.Mmap(h.fb, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if !mf.same("mmap shared writable "+h.path, ea, eb) {
		if ea == nil {
			syscall.Munmap(ma)
		}
		if eb == nil {
			syscall.Munmap(mb)
		}
		return
	}
	for _, m := range [][]byte{ma, mb} {
		copy(m[off:], buf)
		msErr := unix.Msync(m, unix.MS_SYNC)
		unErr := syscall.Munmap(m)
		if msErr != nil || unErr != nil {
			mf.fatalf("mmap write %s: msync %v, munmap %v", h.path, msErr, unErr)
		}
	}
}

func (mf *modelFS) newSize(old int64) int64 {
	switch r := mf.rng.IntN(10); {
	case r < 2:
		return 0
	case r < 7:
		return mf.rng.Int64N(old + 1)
	default:
		return old + mf.rng.Int64N(1<<20)
	}
}

func (mf *modelFS) opTruncate() {
	p := mf.filePath()
	n := mf.newSize(mf.refSize(p))
	mf.logf("truncate %s %d", p, n)
	mf.both("truncate "+p, func(root string) error { return syscall.Truncate(filepath.Join(root, p), n) })
}

func (mf *modelFS) opFtruncate() {
	i := mf.handle()
	if i < 0 {
		mf.opTruncate()
		return
	}
	h := mf.handles[i]
	n := mf.newSize(mf.fdSize(h.fb))
	if mf.fdSize(h.fb) > modelBigFile {
		n = mf.rng.Int64N(modelBigFile / 2)
	}
	mf.logf("ftruncate %s %d", h.path, n)
	ea := syscall.Ftruncate(h.fa, n)
	eb := syscall.Ftruncate(h.fb, n)
	mf.same("ftruncate "+h.path, ea, eb)
}

func (mf *modelFS) opFsync() {
	i := mf.handle()
	if i < 0 {
		return
	}
	h := mf.handles[i]
	mf.logf("fsync %s", h.path)
	ea := syscall.Fsync(h.fa)
	eb := syscall.Fsync(h.fb)
	mf.same("fsync "+h.path, ea, eb)
}

func (mf *modelFS) opRename() {
	from, to := mf.entryPath(), mf.anyPath()
	if mf.rng.IntN(3) == 0 {
		to = mf.entryPath()
	}
	mf.logf("rename %s %s", from, to)
	mf.both("rename "+from+" "+to, func(root string) error {
		return syscall.Rename(filepath.Join(root, from), filepath.Join(root, to))
	})
}

func (mf *modelFS) opLink() {
	from, to := mf.filePath(), mf.anyPath()
	mf.logf("link %s %s", from, to)
	mf.both("link "+from+" "+to, func(root string) error {
		return syscall.Link(filepath.Join(root, from), filepath.Join(root, to))
	})
}

func (mf *modelFS) opUnlink() {
	p := mf.entryPath()
	mf.logf("unlink %s", p)
	mf.both("unlink "+p, func(root string) error { return syscall.Unlink(filepath.Join(root, p)) })
}

func (mf *modelFS) opSymlink() {
	target := []string{"a", "../b", "/nonexistent/x", strings.Repeat("long/", 30) + "end"}[mf.rng.IntN(4)]
	p := mf.anyPath()
	mf.logf("symlink %s %s", target, p)
	mf.both("symlink "+p, func(root string) error { return syscall.Symlink(target, filepath.Join(root, p)) })
}

func (mf *modelFS) opMkdir() {
	_, dirs, _ := mf.entries()
	if len(dirs) >= modelMaxDirs {
		mf.opRmdir()
		return
	}
	p := mf.anyPath()
	mode := uint32([]int{0o755, 0o700, 0o777}[mf.rng.IntN(3)])
	mf.logf("mkdir %s %#o", p, mode)
	mf.both("mkdir "+p, func(root string) error { return syscall.Mkdir(filepath.Join(root, p), mode) })
}

func (mf *modelFS) opRmdir() {
	_, dirs, _ := mf.entries()
	p := mf.anyPath()
	if len(dirs) > 1 && mf.rng.IntN(3) != 0 {
		p = dirs[1+mf.rng.IntN(len(dirs)-1)]
	}
	mf.logf("rmdir %s", p)
	mf.both("rmdir "+p, func(root string) error { return syscall.Rmdir(filepath.Join(root, p)) })
}

func (mf *modelFS) opChmod() {
	p := mf.entryPath()
	mode := uint32([]int{0o644, 0o600, 0o755, 0o444, 0o640, 0o711}[mf.rng.IntN(6)])
	fi, err := os.Lstat(filepath.Join(mf.ref, p))
	if err == nil && fi.Mode()&iofs.ModeSymlink != 0 {
		return // chmod follows symlinks; their targets may lie outside
	}
	mf.logf("chmod %s %#o", p, mode)
	mf.both("chmod "+p, func(root string) error { return syscall.Chmod(filepath.Join(root, p), mode) })
}

// opRemount closes every handle, remounts (a fresh daemon with cold
// caches) and checks that everything, mtimes included, survived.
func (mf *modelFS) opRemount() {
	for len(mf.handles) > 0 {
		mf.closeHandle(len(mf.handles) - 1)
	}
	mf.check(true)
	before := mf.mountMtimes()
	mf.logf("remount")
	mf.remount()
	mf.check(true)
	after := mf.mountMtimes()
	for p, t := range before {
		if !after[p].Equal(t) {
			mf.fatalf("mtime of %s was %s before the remount, %s after", p, t.Format(time.RFC3339Nano), after[p].Format(time.RFC3339Nano))
		}
	}
}

// mountMtimes returns the mtime of every regular file in the mount.
func (mf *modelFS) mountMtimes() map[string]time.Time {
	out := map[string]time.Time{}
	_, _, files := mf.entries()
	for _, p := range files {
		if fi, err := os.Lstat(filepath.Join(mf.mnt, p)); err == nil {
			out[p] = fi.ModTime()
		}
	}
	return out
}

// modelDiff describes where two byte slices first differ.
func modelDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at byte %d (mount has %d bytes, reference %d)", i, len(got), len(want))
}

// check compares the two trees: names, types, modes, sizes, link counts,
// symlink targets, and the bytes of every file that changed (of all files
// with contents); the mount's mtimes must not go backwards.
func (mf *modelFS) check(contents bool) {
	mf.t.Helper()
	var walk func(rel string)
	walk = func(rel string) {
		ra, ea := os.ReadDir(filepath.Join(mf.mnt, rel))
		rb, eb := os.ReadDir(filepath.Join(mf.ref, rel))
		if ea != nil || eb != nil {
			mf.fatalf("listing %q: mount %v, reference %v", rel, ea, eb)
		}
		names := func(es []os.DirEntry) []string {
			var out []string
			for _, e := range es {
				out = append(out, e.Name())
			}
			sort.Strings(out)
			return out
		}
		if na, nb := names(ra), names(rb); !slices.Equal(na, nb) {
			mf.fatalf("directory %q lists %q in the mount, %q in the reference", rel, na, nb)
		}
		for _, e := range rb {
			p := filepath.Join(rel, e.Name())
			var sa, sb syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(mf.mnt, p), &sa); err != nil {
				mf.fatalf("lstat %s in the mount: %v", p, err)
			}
			if err := syscall.Lstat(filepath.Join(mf.ref, p), &sb); err != nil {
				mf.fatalf("lstat %s in the reference: %v", p, err)
			}
			if sa.Mode != sb.Mode || sa.Nlink != sb.Nlink {
				mf.fatalf("%s: mount mode %#o nlink %d, reference mode %#o nlink %d", p, sa.Mode, sa.Nlink, sb.Mode, sb.Nlink)
			}
			switch sb.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				walk(p)
			case syscall.S_IFLNK:
				la, ea := os.Readlink(filepath.Join(mf.mnt, p))
				lb, eb := os.Readlink(filepath.Join(mf.ref, p))
				if ea != nil || eb != nil || la != lb || sa.Size != sb.Size {
					mf.fatalf("symlink %s: mount %q (%v, size %d), reference %q (%v, size %d)", p, la, ea, sa.Size, lb, eb, sb.Size)
				}
			case syscall.S_IFREG:
				if sa.Size != sb.Size {
					mf.fatalf("%s: size %d in the mount, %d in the reference", p, sa.Size, sb.Size)
				}
				mt := time.Unix(sa.Mtim.Unix())
				if last, ok := mf.mtimes[sa.Ino]; ok && mt.Before(last) {
					mf.fatalf("%s (inode %d): mtime went back from %s to %s", p, sa.Ino, last.Format(time.RFC3339Nano), mt.Format(time.RFC3339Nano))
				}
				mf.mtimes[sa.Ino] = mt
				key := [3]int64{sb.Size, sb.Mtim.Nano(), sb.Ctim.Nano()}
				if last, ok := mf.seen[sb.Ino]; contents || !ok || last != key {
					mf.seen[sb.Ino] = key
					a, ea := os.ReadFile(filepath.Join(mf.mnt, p))
					b, eb := os.ReadFile(filepath.Join(mf.ref, p))
					if ea != nil || eb != nil {
						mf.fatalf("reading %s: mount %v, reference %v", p, ea, eb)
					}
					if !bytes.Equal(a, b) {
						mf.fatalf("%s: contents differ: %s", p, modelDiff(a, b))
					}
				}
			}
		}
	}
	walk("")
}

// run applies n steps, then closes every handle and compares everything.
func (mf *modelFS) run(n int) {
	mf.t.Helper()
	for range n {
		mf.stepOnce()
	}
	for len(mf.handles) > 0 {
		mf.closeHandle(len(mf.handles) - 1)
	}
	mf.check(true)
}

func (mf *modelFS) summary() string {
	var parts []string
	for _, k := range sortedKeys(mf.counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, mf.counts[k]))
	}
	return strings.Join(parts, ", ")
}

// TestModelOps runs seeded random operations on the mount and on a
// reference directory in this process, comparing after every step, with
// remounts now and then.
func TestModelOps(t *testing.T) {
	t.Parallel()
	steps := relPick(1500, 12000)
	relRunSeeds(t, relSeeds(t, relPick(2, 5)), func(t *testing.T, seed uint64) {
		chunker := modelChunkers[seed%uint64(len(modelChunkers))]
		m := mount(t, withConfig(chunker))
		ref := filepath.Join(t.TempDir(), "ref")
		if err := os.Mkdir(ref, 0o755); err != nil {
			t.Fatal(err)
		}
		mf := newModelFS(t, m.Dir, ref, seed)
		mf.remount = m.Remount
		start := time.Now()
		mf.run(steps)
		t.Logf("%d steps in %s (chunker %q): %s", steps, time.Since(start).Round(time.Millisecond), strings.TrimSpace(chunker), mf.summary())
		if st := m.Stats(); st.Tiers[primary].Writes.Errors+st.Tiers[safety].Writes.Errors != 0 {
			t.Errorf("store write errors: %+v", st.Tiers)
		}
		if r := m.Compare(true); r.Differences() != 0 {
			t.Errorf("deep comparison after the run: %s", r.counts())
		}
	})
}

// modelChildEnv carries a child's job (JSON) to TestModelChild.
const modelChildEnv = "DUALSTORE_MODEL_CHILD"

type modelChildJob struct {
	Mnt, Ref string
	Seed     uint64
	Steps    int
}

// TestModelProcs runs the model in several processes at once (this test
// binary re-executed), each on its own directory of one mount and its own
// reference directory; between rounds the parent compares every tree and
// remounts.
func TestModelProcs(t *testing.T) {
	t.Parallel()
	procs, rounds, steps := 4, relPick(3, 8), relPick(300, 2000)
	relRunSeeds(t, relSeeds(t, 1), func(t *testing.T, seed uint64) {
		m := mount(t, withConfig(modelChunkers[0]))
		refRoot := t.TempDir()
		var jobs []modelChildJob
		for p := range procs {
			j := modelChildJob{Mnt: m.Path(fmt.Sprintf("p%d", p)), Ref: filepath.Join(refRoot, fmt.Sprintf("p%d", p))}
			for _, d := range []string{j.Mnt, j.Ref} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			jobs = append(jobs, j)
		}
		start := time.Now()
		for round := range rounds {
			var wg sync.WaitGroup
			for p := range jobs {
				jobs[p].Seed = seed + uint64(1000*round+p)
				jobs[p].Steps = steps
				wg.Add(1)
				go func() {
					defer wg.Done()
					modelRunChild(t, jobs[p])
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			for p, j := range jobs {
				mf := newModelFS(t, j.Mnt, j.Ref, 0)
				mf.check(true)
				if t.Failed() {
					t.Fatalf("round %d, process %d", round, p)
				}
			}
			m.Remount()
			for _, j := range jobs {
				newModelFS(t, j.Mnt, j.Ref, 0).check(true)
			}
		}
		t.Logf("%d processes × %d rounds × %d steps in %s", procs, rounds, steps, time.Since(start).Round(time.Millisecond))
		if r := m.Compare(true); r.Differences() != 0 {
			t.Errorf("deep comparison after the run: %s", r.counts())
		}
	})
}

// modelRunChild runs one child process to its end, with a deadline.
func modelRunChild(t *testing.T, j modelChildJob) {
	b, _ := json.Marshal(j)
	cmd := exec.Command(os.Args[0], "-test.run=^TestModelChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), modelChildEnv+"="+string(b), "DUALSTORE_BIN="+bin)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Errorf("starting a model process: %v", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "--- PASS: TestModelChild") {
			t.Errorf("model process on %s (seed %d) failed: %v\n%s", j.Mnt, j.Seed, err, tailLog(out.String(), 80, 2000))
		}
	case <-time.After(10 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("model process on %s (seed %d) did not finish within 10 minutes\n%s", j.Mnt, j.Seed, tailLog(out.String(), 80, 2000))
	}
}

// TestModelChild is the body of one TestModelProcs process; it skips
// unless started by it.
func TestModelChild(t *testing.T) {
	env := os.Getenv(modelChildEnv)
	if env == "" {
		t.Skip("runs only as a process of TestModelProcs")
	}
	var j modelChildJob
	if err := json.Unmarshal([]byte(env), &j); err != nil {
		t.Fatalf("%s: %v", modelChildEnv, err)
	}
	mf := newModelFS(t, j.Mnt, j.Ref, j.Seed)
	mf.check(true)
	mf.run(j.Steps)
	t.Logf("pid %d, %s, seed %d: %d steps: %s", os.Getpid(), j.Mnt, j.Seed, j.Steps, mf.summary())
}
