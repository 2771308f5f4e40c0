package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is go-fuse's loopback node with file data taken over: names and
// attributes other than the size go to the backing directory at once,
// data goes to files until an fsync.
type node struct {
	*gofs.LoopbackNode
	files *files
}

var (
	_ gofs.NodeWrapChilder    = (*node)(nil)
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeStatxer        = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
	_ gofs.NodeFsyncer        = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.FileReader         = (*handle)(nil)
	_ gofs.FileWriter         = (*handle)(nil)
	_ gofs.FileFlusher        = (*handle)(nil)
	_ gofs.FileFsyncer        = (*handle)(nil)
	_ gofs.FileReleaser       = (*handle)(nil)
	_ gofs.FileAllocater      = (*handle)(nil)
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
	_ gofs.FileReleasedirer   = (*dirHandle)(nil)
	_ gofs.FileFsyncdirer     = (*dirHandle)(nil)
)

// WrapChild makes every node below the root a node of the layer.
func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &node{LoopbackNode: ln, files: n.files}
	}
	return ops
}

// path is the node's backing path.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// overlay puts the size the mount sees into attributes made from the
// backing file st.
func (n *node) overlay(st *syscall.Stat_t, a *fuse.Attr) {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	if size, ok := n.files.size(keyOf(st)); ok {
		a.Size = uint64(size)
		a.Blocks = max(a.Blocks, (uint64(size)+511)/512)
	}
}

// overlayPath is overlay for the backing file at p.
func (n *node) overlayPath(p string, a *fuse.Attr) {
	var st syscall.Stat_t
	if syscall.Lstat(p, &st) == nil {
		n.overlay(&st, a)
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		n.overlayPath(filepath.Join(n.path(), name), &out.Attr)
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	var err error
	if h, ok := f.(*handle); ok {
		err = syscall.Fstat(h.fd(), &st)
	} else if n.IsRoot() {
		err = syscall.Stat(n.path(), &st)
	} else {
		err = syscall.Lstat(n.path(), &st)
	}
	if err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	n.overlay(&st, &out.Attr)
	return 0
}

func (n *node) Statx(ctx context.Context, f gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	var x unix.Statx_t
	var err error
	if h, ok := f.(*handle); ok {
		err = unix.Statx(h.fd(), "", int(flags)|unix.AT_EMPTY_PATH, int(mask), &x)
	} else {
		err = unix.Statx(unix.AT_FDCWD, n.path(), int(flags)|unix.AT_SYMLINK_NOFOLLOW, int(mask), &x)
	}
	if err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatx(&x)
	if x.Mode&unix.S_IFMT == unix.S_IFREG {
		key := fileKey{dev: unix.Mkdev(x.Dev_major, x.Dev_minor), ino: x.Ino}
		if size, ok := n.files.size(key); ok {
			out.Size = uint64(size)
			out.Blocks = max(out.Blocks, (uint64(size)+511)/512)
		}
	}
	return 0
}

// Setattr keeps a size change in memory, like a write, and applies the
// other attributes to the backing file at once, like the other metadata.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*handle)
	rest := *in
	rest.Valid &^= fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_LOCKOWNER
	if h == nil {
		// By path: go-fuse's loopback applies what is left.
		var ignored fuse.AttrOut
		if errno := n.LoopbackNode.Setattr(ctx, nil, &rest, &ignored); errno != 0 {
			return errno
		}
	} else if errno := h.setattr(&rest); errno != 0 {
		return errno
	}
	if size, ok := in.GetSize(); ok {
		if h != nil {
			h.f.truncate(int64(size))
		} else {
			var st syscall.Stat_t
			if err := syscall.Lstat(n.path(), &st); err != nil {
				return gofs.ToErrno(err)
			}
			if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
				return syscall.EINVAL
			}
			key := keyOf(&st)
			fl := n.files.get(key, st.Size, false)
			fl.truncate(int64(size))
			n.files.release(key, fl, false)
		}
	}
	return n.Getattr(ctx, f, out)
}

// backingFlags are the flags the layer opens a backing file with: always
// read and write (a read-only descriptor may be fsynced, and a partly
// written page is filled from the file), never truncating (a truncate is
// data), never direct, synchronous or appending (the kernel computes
// offsets and turns O_SYNC into fsyncs).
func backingFlags(flags uint32) uint32 {
	flags &^= unix.O_ACCMODE | unix.O_TRUNC | unix.O_APPEND | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC | fuse.FMODE_EXEC
	return flags | unix.O_RDWR
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	lf, _, errno := n.LoopbackNode.Open(ctx, backingFlags(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	h, errno := n.files.adopt(ctx, lf, flags&unix.O_TRUNC != 0)
	return h, 0, errno
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ch, lf, _, errno := n.LoopbackNode.Create(ctx, name, backingFlags(flags), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	h, errno := n.files.adopt(ctx, lf, flags&unix.O_TRUNC != 0)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.overlayPath(filepath.Join(n.path(), name), &out.Attr)
	return ch, h, 0, 0
}

// Tmpfile is refused: nothing the tests run uses O_TMPFILE.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange is refused with ENOSYS: the kernel then copies through
// reads and writes, which see the data in memory.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// lastLink returns the key of the regular file at p if p is its only
// name.
func lastLink(p string) (fileKey, bool) {
	var st syscall.Stat_t
	if syscall.Lstat(p, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
		return fileKey{}, false
	}
	return keyOf(&st), true
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	key, last := lastLink(filepath.Join(n.path(), name))
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && last {
		n.files.removed(key)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	var src syscall.Stat_t
	srcErr := syscall.Lstat(filepath.Join(n.path(), name), &src)
	key, last := lastLink(filepath.Join(np.path(), newName))
	errno := n.LoopbackNode.Rename(ctx, name, np.LoopbackNode, newName, flags)
	if errno == 0 && last && flags&unix.RENAME_EXCHANGE == 0 && (srcErr != nil || keyOf(&src) != key) {
		n.files.removed(key)
	}
	return errno
}

// Fsync of a file writes its unsynced data to the backing file. Fsync of
// a directory does nothing: names are durable as soon as they change.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}

// OpendirHandle wraps go-fuse's loopback directory stream, for a
// directory fsync that does nothing.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ds, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{ds}, fuseFlags, 0
}

// adopt makes a handle of the layer from the loopback file handle lf,
// which it releases: the handle keeps a duplicate of its descriptor.
// trunc applies an O_TRUNC, in memory.
func (fs *files) adopt(ctx context.Context, lf gofs.FileHandle, trunc bool) (*handle, syscall.Errno) {
	defer func() {
		if r, ok := lf.(gofs.FileReleaser); ok {
			_ = r.Release(ctx) // only closes the descriptor duplicated below
		}
	}()
	// go-fuse hands out the loopback's descriptor only for passthrough;
	// the layer never asks for passthrough, and duplicates it here.
	pf, ok := lf.(gofs.FilePassthroughFder)
	if !ok {
		return nil, syscall.EIO
	}
	fd, ok := pf.PassthroughFd()
	if !ok {
		return nil, syscall.EBADF
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	file := os.NewFile(uintptr(dup), "")
	var st syscall.Stat_t
	if err := syscall.Fstat(dup, &st); err != nil {
		file.Close()
		return nil, gofs.ToErrno(err)
	}
	key := keyOf(&st)
	h := &handle{files: fs, key: key, os: file, f: fs.get(key, st.Size, true)}
	if trunc {
		h.f.truncate(0)
	}
	return h, 0
}

// handle is an open regular file of the layer.
type handle struct {
	files *files
	key   fileKey
	f     *file
	os    *os.File // the backing file, read-write
	once  sync.Once
}

func (h *handle) fd() int { return int(h.os.Fd()) }

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.readAt(h.fd(), dest, off)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if err := h.f.writeAt(h.fd(), data, off); err != nil {
		return 0, gofs.ToErrno(err)
	}
	return uint32(len(data)), 0
}

// Flush (close(2)) makes nothing durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Fsync (fsync(2) and fdatasync(2)) writes the inode's unsynced data to
// the backing file.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return gofs.ToErrno(h.f.sync(h.fd()))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() {
		h.files.release(h.key, h.f, true)
		h.os.Close()
	})
	return 0
}

// Allocate grows the file (in memory) for a plain fallocate; with
// FALLOC_FL_KEEP_SIZE it does nothing, as the space is not what a power
// loss takes. Other modes are refused.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	switch mode {
	case 0:
		h.f.mu.Lock()
		grow := int64(off+size) > h.f.size
		h.f.mu.Unlock()
		if grow {
			h.f.truncate(int64(off + size))
		}
		return 0
	case unix.FALLOC_FL_KEEP_SIZE:
		return 0
	}
	return syscall.EOPNOTSUPP
}

// setattr applies mode, owner and times (not the size) through the
// backing descriptor, which works for an unlinked file too.
func (h *handle) setattr(in *fuse.SetAttrIn) syscall.Errno {
	fd := h.fd()
	if m, ok := in.GetMode(); ok {
		if err := unix.Fchmod(fd, m&07777); err != nil {
			return gofs.ToErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := unix.Fchown(fd, u, g); err != nil {
			return gofs.ToErrno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return 0
}

// dirHandle is go-fuse's loopback directory stream with a directory fsync
// that does nothing.
type dirHandle struct {
	ds gofs.FileHandle
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.ds.(gofs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }
