package fs

import (
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/stores"
)

// fuseOp names a kind of FUSE request, as the stats and metrics show it.
type fuseOp int

const (
	opLookup fuseOp = iota
	opForget
	opGetattr
	opSetattr
	opMknod
	opMkdir
	opUnlink
	opRmdir
	opRename
	opLink
	opSymlink
	opReadlink
	opAccess
	opGetxattr
	opListxattr
	opSetxattr
	opRemovexattr
	opCreate
	opTmpfile
	opOpen
	opRead
	opLseek
	opGetlk
	opSetlk
	opSetlkw
	opRelease
	opWrite
	opCopyFileRange
	opIoctl
	opFlush
	opFsync
	opFallocate
	opOpendir
	opReaddir
	opReaddirplus
	opReleasedir
	opFsyncdir
	opStatfs
	opStatx
	numFuseOps
)

// fuseOpNames are the lower-case FUSE opcode names (FUSE_LOOKUP →
// "lookup"); WRITE is one name whether go-fuse calls Write or Writev.
var fuseOpNames = [numFuseOps]string{
	"lookup", "forget", "getattr", "setattr", "mknod", "mkdir", "unlink", "rmdir", "rename", "link",
	"symlink", "readlink", "access", "getxattr", "listxattr", "setxattr", "removexattr", "create", "tmpfile", "open",
	"read", "lseek", "getlk", "setlk", "setlkw", "release", "write", "copy_file_range", "ioctl", "flush",
	"fsync", "fallocate", "opendir", "readdir", "readdirplus", "releasedir", "fsyncdir", "statfs", "statx",
}

// fuseOps counts the FUSE requests the mount answered, by kind, with the
// time each took to answer: a histogram per kind (stores.Latency, a few
// atomic adds per request). Safe for concurrent use.
type fuseOps [numFuseOps]stores.Latency

func (o *fuseOps) done(op fuseOp, start time.Time) { o[op].Observe(time.Since(start)) }

func (o *fuseOps) reset() {
	for i := range o {
		o[i].Reset()
	}
}

// FUSEOpStats is one kind of FUSE request: how many the mount answered
// and (for the metrics) how long they took.
type FUSEOpStats struct {
	Count   int64                   `json:"count"`
	Latency stores.LatencyHistogram `json:"-"`
}

// snapshot returns the kinds of request seen so far, by name.
func (o *fuseOps) snapshot() map[string]FUSEOpStats {
	out := map[string]FUSEOpStats{}
	for i := range o {
		if h := o[i].Histogram(); h.Count > 0 {
			out[fuseOpNames[i]] = FUSEOpStats{Count: int64(h.Count), Latency: h}
		}
	}
	return out
}

// countingRawFS is what the mount serves: go-fuse's node
// bridge wrapped in countingFS, so the counting sits in one place instead
// of in every node method, and covers the file handles' requests too.
func (f *FS) countingRawFS(opts *gofs.Options) fuse.RawFileSystem {
	return &countingFS{RawFileSystem: gofs.NewNodeFS(f.root, opts), ops: &f.ops}
}

// countingFS passes every request to go-fuse's bridge and counts it.
type countingFS struct {
	fuse.RawFileSystem
	ops *fuseOps
}

var _ fuse.RawFileSystem = (*countingFS)(nil)

func (c *countingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer c.ops.done(opLookup, time.Now())
	return c.RawFileSystem.Lookup(cancel, h, name, out)
}

func (c *countingFS) Forget(nodeid, nlookup uint64) {
	defer c.ops.done(opForget, time.Now())
	c.RawFileSystem.Forget(nodeid, nlookup)
}

func (c *countingFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer c.ops.done(opGetattr, time.Now())
	return c.RawFileSystem.GetAttr(cancel, in, out)
}

func (c *countingFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer c.ops.done(opSetattr, time.Now())
	return c.RawFileSystem.SetAttr(cancel, in, out)
}

func (c *countingFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.ops.done(opMknod, time.Now())
	return c.RawFileSystem.Mknod(cancel, in, name, out)
}

func (c *countingFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.ops.done(opMkdir, time.Now())
	return c.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (c *countingFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer c.ops.done(opUnlink, time.Now())
	return c.RawFileSystem.Unlink(cancel, h, name)
}

func (c *countingFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer c.ops.done(opRmdir, time.Now())
	return c.RawFileSystem.Rmdir(cancel, h, name)
}

func (c *countingFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer c.ops.done(opRename, time.Now())
	return c.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (c *countingFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.ops.done(opLink, time.Now())
	return c.RawFileSystem.Link(cancel, in, name, out)
}

func (c *countingFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	defer c.ops.done(opSymlink, time.Now())
	return c.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (c *countingFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	defer c.ops.done(opReadlink, time.Now())
	return c.RawFileSystem.Readlink(cancel, h)
}

func (c *countingFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	defer c.ops.done(opAccess, time.Now())
	return c.RawFileSystem.Access(cancel, in)
}

func (c *countingFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer c.ops.done(opGetxattr, time.Now())
	return c.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (c *countingFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer c.ops.done(opListxattr, time.Now())
	return c.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (c *countingFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer c.ops.done(opSetxattr, time.Now())
	return c.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (c *countingFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	defer c.ops.done(opRemovexattr, time.Now())
	return c.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (c *countingFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer c.ops.done(opCreate, time.Now())
	return c.RawFileSystem.Create(cancel, in, name, out)
}

func (c *countingFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	defer c.ops.done(opTmpfile, time.Now())
	return c.RawFileSystem.Tmpfile(cancel, in, out)
}

func (c *countingFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer c.ops.done(opOpen, time.Now())
	return c.RawFileSystem.Open(cancel, in, out)
}

func (c *countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer c.ops.done(opRead, time.Now())
	return c.RawFileSystem.Read(cancel, in, buf)
}

func (c *countingFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer c.ops.done(opLseek, time.Now())
	return c.RawFileSystem.Lseek(cancel, in, out)
}

func (c *countingFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	defer c.ops.done(opGetlk, time.Now())
	return c.RawFileSystem.GetLk(cancel, in, out)
}

func (c *countingFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer c.ops.done(opSetlk, time.Now())
	return c.RawFileSystem.SetLk(cancel, in)
}

func (c *countingFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer c.ops.done(opSetlkw, time.Now())
	return c.RawFileSystem.SetLkw(cancel, in)
}

func (c *countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer c.ops.done(opRelease, time.Now())
	c.RawFileSystem.Release(cancel, in)
}

func (c *countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer c.ops.done(opWrite, time.Now())
	return c.RawFileSystem.Write(cancel, in, data)
}

func (c *countingFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := c.RawFileSystem.Writev(cancel, in, data)
	if st != fuse.ENOSYS { // else go-fuse calls Write, which counts it
		c.ops.done(opWrite, start)
	}
	return n, st
}

func (c *countingFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	defer c.ops.done(opCopyFileRange, time.Now())
	return c.RawFileSystem.CopyFileRange(cancel, in)
}

func (c *countingFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	defer c.ops.done(opIoctl, time.Now())
	return c.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (c *countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer c.ops.done(opFlush, time.Now())
	return c.RawFileSystem.Flush(cancel, in)
}

func (c *countingFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer c.ops.done(opFsync, time.Now())
	return c.RawFileSystem.Fsync(cancel, in)
}

func (c *countingFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer c.ops.done(opFallocate, time.Now())
	return c.RawFileSystem.Fallocate(cancel, in)
}

func (c *countingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer c.ops.done(opOpendir, time.Now())
	return c.RawFileSystem.OpenDir(cancel, in, out)
}

func (c *countingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer c.ops.done(opReaddir, time.Now())
	return c.RawFileSystem.ReadDir(cancel, in, out)
}

func (c *countingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer c.ops.done(opReaddirplus, time.Now())
	return c.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (c *countingFS) ReleaseDir(in *fuse.ReleaseIn) {
	defer c.ops.done(opReleasedir, time.Now())
	c.RawFileSystem.ReleaseDir(in)
}

func (c *countingFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer c.ops.done(opFsyncdir, time.Now())
	return c.RawFileSystem.FsyncDir(cancel, in)
}

func (c *countingFS) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer c.ops.done(opStatfs, time.Now())
	return c.RawFileSystem.StatFs(cancel, in, out)
}

func (c *countingFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	defer c.ops.done(opStatx, time.Now())
	return c.RawFileSystem.Statx(cancel, in, out)
}
