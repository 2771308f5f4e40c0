package fs

import (
	"context"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/index"
)

// controlName is the reserved name of the control directory at the root.
const controlName = ".dualstore"

// node is a file, directory, symlink or special file stored in the index.
type node struct {
	gofs.Inode
	fs *FS
	// The node's place in FS.nodes, guarded by that list's mutex (fields, not a
	// struct, and in this order, so that the node fits Go's 160-byte size
	// class: there is one per inode the kernel holds).
	lruPrev, lruNext *node
	// noXattr is set on an inode this mount created, which has no extended
	// attributes until Setxattr: Getxattr and Listxattr answer without the
	// index. The kernel asks for security.capability at every write(2), so
	// for a new file that is one index query per write saved.
	noXattr  atomic.Bool
	lruEpoch uint16
	lruIn    bool
}

var (
	_ gofs.InodeEmbedder     = (*node)(nil)
	_ gofs.NodeLookuper      = (*node)(nil)
	_ gofs.NodeGetattrer     = (*node)(nil)
	_ gofs.NodeSetattrer     = (*node)(nil)
	_ gofs.NodeCreater       = (*node)(nil)
	_ gofs.NodeOpener        = (*node)(nil)
	_ gofs.NodeMkdirer       = (*node)(nil)
	_ gofs.NodeMknoder       = (*node)(nil)
	_ gofs.NodeRmdirer       = (*node)(nil)
	_ gofs.NodeUnlinker      = (*node)(nil)
	_ gofs.NodeRenamer       = (*node)(nil)
	_ gofs.NodeSymlinker     = (*node)(nil)
	_ gofs.NodeReadlinker    = (*node)(nil)
	_ gofs.NodeLinker        = (*node)(nil)
	_ gofs.NodeReaddirer     = (*node)(nil)
	_ gofs.NodeStatfser      = (*node)(nil)
	_ gofs.NodeGetxattrer    = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeListxattrer   = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
	_ gofs.NodeOnForgetter   = (*node)(nil)
	_ gofs.NodeFsyncer       = (*node)(nil)
)

func (n *node) ino() uint64 { return n.StableAttr().Ino }

func (n *node) isRoot() bool { return n.ino() == index.RootIno }

// reserved reports whether name in this directory is the control
// directory, which cannot be created, removed or renamed over.
func (n *node) reserved(name string) bool { return n.isRoot() && name == controlName }

// uninterruptible detaches a metadata operation from the kernel's
// FUSE_INTERRUPT. The kernel interrupts a request whenever the calling
// thread gets any signal, and Go programs get SIGURG all the time
// (goroutine preemption): cancelling the index transaction then turned
// stat, rename, unlink… into EINTR, which those calls never return on a
// local filesystem and which C programs do not retry. Index operations
// are short local transactions; a fatal signal still ends the caller at
// once (the kernel stops waiting for the answer).
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

func fillAttr(out *fuse.Attr, a index.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = (a.Size - min(a.Holes, a.Size) + 511) / 512 // holes take no space
	out.Blksize = 4096
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Rdev = a.Rdev
	out.SetTimes(&a.Atime, &a.Mtime, &a.Ctime)
}

func (f *FS) entry(out *fuse.EntryOut, a index.Attr) {
	fillAttr(&out.Attr, a)
	out.SetEntryTimeout(f.opts.EntryTimeout)
	out.SetAttrTimeout(f.opts.AttrTimeout)
}

// newChild returns the go-fuse inode for a named name in n: the one
// go-fuse has under that name if it is a's (the kernel looking the name
// up again), else a new one, which go-fuse replaces with the live one when
// it already knows the inode number (hard links).
func (n *node) newChild(ctx context.Context, name string, a index.Attr) *gofs.Inode {
	n.fs.vfs.Ref(a.Ino)
	id := gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino}
	ch := n.GetChild(name)
	if ch == nil || ch.StableAttr() != id {
		ch = n.NewInode(ctx, &node{fs: n.fs}, id)
	}
	if c, ok := ch.Operations().(*node); ok && n.fs.nodes.touch(c) {
		n.fs.pruneIfOver()
	}
	return ch
}

// Fsync of a directory (FSYNCDIR, and fsync without an open file) makes
// its entries durable: they live in the index, so the index is synced. A
// regular file's handle does its own fsync (chunks, then index).
// "write temp, fsync, rename, fsync the directory" is how careful tools
// replace files; ENOTSUP there makes them fail.
func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if fs, ok := fh.(gofs.FileFsyncer); ok {
		return fs.Fsync(ctx, flags)
	}
	// A durability point, not only the index: syncing the index alone
	// could make commits durable before their chunks.
	if err := n.fs.vfs.Sync(context.WithoutCancel(ctx)); err != nil {
		return n.fs.fail("fsync", n.ino(), err)
	}
	return 0
}

// OnForget runs when the kernel has forgotten the inode: an unlinked one
// can be purged once no file is open on it.
func (n *node) OnForget() {
	n.fs.nodes.remove(n)
	n.fs.kernelForgot(n.ino())
}

// attr returns the inode's attributes, with the size and mtime of an open
// file's unflushed writes (vfs.FS.Attr).
func (n *node) attr(ctx context.Context) (index.Attr, error) {
	return n.fs.vfs.Attr(ctx, n.ino())
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if n.reserved(name) {
		ch := n.fs.controlDir(ctx, n)
		out.Attr = n.fs.controlAttr(ch.StableAttr().Ino, syscall.S_IFDIR|0555)
		return ch, 0
	}
	closed := n.fs.vfs.Closed()
	a, err := n.fs.db.Lookup(ctx, n.ino(), name)
	if err != nil {
		if err2 := toErrno(err); err2 == syscall.ENOENT {
			out.SetEntryTimeout(n.fs.opts.NegativeTimeout)
			return nil, err2
		}
		return nil, n.fs.fail("lookup", n.ino(), err)
	}
	if a, err = n.fs.vfs.EntryAttr(ctx, a, closed); err != nil {
		return nil, n.fs.fail("lookup", n.ino(), err)
	}
	n.fs.entry(out, a)
	return n.newChild(ctx, name, a), 0
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	a, err := n.attr(ctx)
	if err != nil {
		return n.fs.fail("getattr", n.ino(), err)
	}
	fillAttr(&out.Attr, a)
	out.SetTimeout(n.fs.opts.AttrTimeout)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	now := time.Now()
	if size, ok := in.GetSize(); ok {
		if n.Mode()&syscall.S_IFMT != syscall.S_IFREG {
			return syscall.EINVAL
		}
		if err := n.fs.truncate(ctx, n.ino(), size); err != nil {
			// The file may have reverted to its last committed content,
			// which the kernel's page cache may not hold (see
			// handle.reverted).
			go func() { _ = n.NotifyContent(0, 0) }() // best effort: the next open drops the cache anyway
			return n.fs.fail("truncate", n.ino(), err)
		}
	}
	var sa index.SetAttrIn
	sa.Ctime = now
	changed := false
	if m, ok := in.GetMode(); ok {
		m &= 07777
		sa.Mode = &m
		changed = true
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok {
		sa.Uid = &uid
		changed = true
	}
	if gok {
		sa.Gid = &gid
		changed = true
	}
	if (uok || gok) && sa.Mode == nil && n.Mode()&syscall.S_IFMT != syscall.S_IFDIR {
		// chown clears set-user-ID, and set-group-ID on group-executable
		// files, as on every Linux filesystem.
		if a, err := n.fs.db.GetAttr(ctx, n.ino()); err == nil && a.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
			m := a.Mode & 07777 &^ syscall.S_ISUID
			if m&syscall.S_IXGRP != 0 {
				m &^= syscall.S_ISGID
			}
			sa.Mode = &m
		}
	}
	if t, ok := in.GetATime(); ok {
		sa.Atime = &t
		changed = true
	}
	if t, ok := in.GetMTime(); ok {
		sa.Mtime = &t
		changed = true
		n.fs.vfs.SetOpenMtime(n.ino(), t)
	}
	if changed {
		if _, err := n.fs.db.SetAttr(ctx, n.ino(), sa); err != nil {
			return n.fs.fail("setattr", n.ino(), err)
		}
	}
	a, err := n.attr(ctx)
	if err != nil {
		return n.fs.fail("setattr", n.ino(), err)
	}
	fillAttr(&out.Attr, a)
	out.SetTimeout(n.fs.opts.AttrTimeout)
	return 0
}

// newNode fills in owner and group for a new inode: the caller's uid, and
// the caller's gid unless the directory is set-group-ID.
func (n *node) newNode(ctx context.Context, mode uint32) (index.NewNode, error) {
	uid, gid := caller(ctx)
	nn := index.NewNode{Mode: mode, Uid: uid, Gid: gid, Time: time.Now()}
	parent, err := n.fs.db.GetAttr(ctx, n.ino())
	if err != nil {
		return nn, err
	}
	if parent.Mode&syscall.S_ISGID != 0 {
		nn.Gid = parent.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			nn.Mode |= syscall.S_ISGID
		}
	}
	return nn, nil
}

func (n *node) create(ctx context.Context, name string, nn index.NewNode, out *fuse.EntryOut) (*gofs.Inode, index.Attr, syscall.Errno) {
	if n.reserved(name) {
		return nil, index.Attr{}, syscall.EEXIST
	}
	a, err := n.fs.db.Create(ctx, n.ino(), name, nn)
	if err != nil {
		return nil, a, n.fs.fail("create", n.ino(), err)
	}
	n.fs.entry(out, a)
	ch := n.newChild(ctx, name, a)
	if c, ok := ch.Operations().(*node); ok {
		c.noXattr.Store(true) // a new inode number: no xattr rows
	}
	return ch, a, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	nn, err := n.newNode(ctx, syscall.S_IFREG|(mode&07777))
	if err != nil {
		return nil, nil, 0, n.fs.fail("create", n.ino(), err)
	}
	ch, a, errno := n.create(ctx, name, nn, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// The file is new and empty: O_TRUNC has nothing to do, and handing
	// it on would stamp a second mtime at the first flush, behind the
	// back of the attributes the kernel just cached from this reply.
	h, err := n.fs.openHandleWith(ctx, a.Ino, flags&^syscall.O_TRUNC, &a)
	if err != nil {
		return nil, nil, 0, n.fs.fail("open", a.Ino, err)
	}
	h.inode = ch
	return ch, h, h.fopen, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	nn, err := n.newNode(ctx, syscall.S_IFDIR|(mode&07777))
	if err != nil {
		return nil, n.fs.fail("mkdir", n.ino(), err)
	}
	ch, _, errno := n.create(ctx, name, nn, out)
	return ch, errno
}

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFREG:
	default:
		return nil, syscall.EINVAL
	}
	nn, err := n.newNode(ctx, mode)
	if err != nil {
		return nil, n.fs.fail("mknod", n.ino(), err)
	}
	nn.Rdev = dev
	ch, _, errno := n.create(ctx, name, nn, out)
	return ch, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	nn, err := n.newNode(ctx, syscall.S_IFLNK|0777)
	if err != nil {
		return nil, n.fs.fail("symlink", n.ino(), err)
	}
	nn.Mode = syscall.S_IFLNK | 0777
	nn.Target = target
	ch, _, errno := n.create(ctx, name, nn, out)
	return ch, errno
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx = uninterruptible(ctx)
	t, err := n.fs.db.Readlink(ctx, n.ino())
	if err != nil {
		return nil, n.fs.fail("readlink", n.ino(), err)
	}
	return []byte(t), 0
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if n.reserved(name) {
		return nil, syscall.EEXIST
	}
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EPERM // the control files cannot be linked
	}
	closed := n.fs.vfs.Closed()
	a, err := n.fs.db.Link(ctx, t.ino(), n.ino(), name, time.Now())
	if err != nil {
		return nil, n.fs.fail("link", t.ino(), err)
	}
	if a, err = n.fs.vfs.EntryAttr(ctx, a, closed); err != nil {
		return nil, n.fs.fail("link", t.ino(), err)
	}
	n.fs.entry(out, a)
	return n.newChild(ctx, name, a), 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if n.reserved(name) {
		return syscall.EPERM
	}
	a, err := n.fs.db.Unlink(ctx, n.ino(), name, time.Now())
	if err != nil {
		return n.fs.fail("unlink", n.ino(), err)
	}
	n.fs.vfs.Unlinked(a)
	return 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if n.reserved(name) {
		return syscall.EPERM
	}
	if err := n.fs.db.Rmdir(ctx, n.ino(), name, time.Now()); err != nil {
		return n.fs.fail("rmdir", n.ino(), err)
	}
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EPERM
	}
	if n.reserved(name) || np.reserved(newName) {
		return syscall.EPERM
	}
	replaced, err := n.fs.db.Rename(ctx, n.ino(), name, np.ino(), newName, flags, time.Now())
	if err != nil {
		return n.fs.fail("rename", n.ino(), err)
	}
	if replaced != nil {
		n.fs.vfs.Unlinked(*replaced)
	}
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if n.Mode()&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EINVAL
	}
	h, err := n.fs.openHandle(ctx, n.ino(), flags)
	if err != nil {
		return nil, 0, n.fs.fail("open", n.ino(), err)
	}
	h.inode = n.EmbeddedInode()
	return h, h.fopen, 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return &dirStream{fs: n.fs, ino: n.ino()}, 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	return n.fs.statfs(ctx, out)
}

// aclXattr reports POSIX ACL names. dualstore does not implement ACLs:
// storing them as plain xattrs would let `cp -a` set an ACL instead of the
// mode bits, and the kernel would never enforce it. Refusing them makes
// tools fall back to chmod, as on any filesystem without ACLs.
func aclXattr(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if aclXattr(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	if n.noXattr.Load() || trustedXattr(attr) && !callerIsRoot(ctx) {
		return 0, syscall.ENODATA // as the kernel answers others for trusted.*
	}
	v, err := n.fs.db.GetXattr(ctx, n.ino(), attr)
	if err != nil {
		return 0, toErrno(err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	if aclXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	if trustedXattr(attr) && !callerIsRoot(ctx) {
		return syscall.EPERM
	}
	n.noXattr.Store(false) // before the index has the row, not after
	if err := n.fs.db.SetXattr(ctx, n.ino(), attr, data, flags); err != nil {
		return n.fs.fail("setxattr", n.ino(), err)
	}
	return 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if n.noXattr.Load() {
		return 0, 0
	}
	names, err := n.fs.db.ListXattr(ctx, n.ino())
	if err != nil {
		return 0, n.fs.fail("listxattr", n.ino(), err)
	}
	if !callerIsRoot(ctx) {
		// ext4 lists trusted.* to CAP_SYS_ADMIN only; the kernel does not
		// filter a FUSE filesystem's list.
		names = slices.DeleteFunc(names, trustedXattr)
	}
	size := 0
	for _, s := range names {
		size += len(s) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, s := range names {
		off += copy(dest[off:], s)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	ctx = uninterruptible(ctx)
	if trustedXattr(attr) && !callerIsRoot(ctx) {
		return syscall.EPERM
	}
	if err := n.fs.db.RemoveXattr(ctx, n.ino(), attr); err != nil {
		return n.fs.fail("removexattr", n.ino(), err)
	}
	return 0
}

// dirStream pages through a directory in name order, so a directory of a
// million entries never sits in memory at once.
//
// Each entry's offset (the cookie telldir returns) is its position in the
// listing, counted from 1. Seekdir to the start (rewinddir) or into the
// page in memory is immediate; any other position is reached by paging
// from the start again, so seeks are correct for a directory that did not
// change since it was opened, as with any offset-counting filesystem.
type dirStream struct {
	fs    *FS
	ino   uint64
	page  []index.DirEntry
	base  uint64 // position of page[0]: how many entries come before it
	pos   int
	after string
	eof   bool
	err   syscall.Errno
}

const dirPage = 1024

var (
	_ gofs.DirStream     = (*dirStream)(nil)
	_ gofs.FileSeekdirer = (*dirStream)(nil)
)

func (d *dirStream) fill() {
	if d.pos < len(d.page) || d.eof || d.err != 0 {
		return
	}
	page, err := d.fs.db.ReadDir(context.Background(), d.ino, d.after, dirPage)
	if err != nil {
		d.err = d.fs.fail("readdir", d.ino, err)
		return
	}
	d.base += uint64(len(d.page))
	d.page, d.pos = page, 0
	if len(page) < dirPage {
		d.eof = true
	}
	if len(page) > 0 {
		d.after = page[len(page)-1].Name
	}
}

func (d *dirStream) HasNext() bool {
	d.fill()
	return d.pos < len(d.page) || d.err != 0
}

func (d *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	if d.err != 0 {
		return fuse.DirEntry{}, d.err
	}
	e := d.page[d.pos]
	d.pos++
	return fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: d.base + uint64(d.pos)}, 0
}

// Seekdir moves to the position off (0 is the start, n is after the n-th
// entry), for rewinddir and seekdir(3). Without it go-fuse answers
// ENOTSUP to any readdir that does not continue where the last one ended.
func (d *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off >= d.base && off <= d.base+uint64(len(d.page)) && d.err == 0 {
		d.pos = int(off - d.base)
		return 0
	}
	*d = dirStream{fs: d.fs, ino: d.ino}
	for d.base+uint64(len(d.page)) < off {
		d.pos = len(d.page)
		if d.eof {
			// Past the end: the next readdir returns nothing.
			return 0
		}
		d.fill()
		if d.err != 0 {
			return d.err
		}
	}
	d.pos = int(off - d.base)
	return 0
}

func (d *dirStream) Close() {}
