package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// loopbackCmd is the hidden subcommand the bench re-executes itself with
// to serve variant (b): `dualstore-bench loopback SRC MNT`. It runs in its
// own process, as the dualstore daemon does, because a process must not do
// I/O on a FUSE mount it serves itself (go-fuse documents the deadlocks),
// and so both daemons pay for the same context switches.
const loopbackCmd = "loopback"

// runLoopback mounts go-fuse's loopback filesystem of src on mnt with
// dualstore's mount options, says "ready" on stdout, and serves until
// SIGINT or SIGTERM.
func runLoopback(src, mnt string) error {
	src, _ = filepath.Abs(src)
	mnt, _ = filepath.Abs(mnt)
	// As in the dualstore daemon: the kernel has already applied the
	// caller's umask to the modes it sends.
	syscall.Umask(0)
	root, err := gofs.NewLoopbackRoot(src)
	if err != nil {
		return fmt.Errorf("loopback root %s: %w", src, err)
	}
	ln, ok := root.(*gofs.LoopbackNode)
	if !ok {
		return fmt.Errorf("loopback root %s: go-fuse returned a %T, want *fs.LoopbackNode", src, root)
	}
	timeout := time.Second
	var negative time.Duration
	// Keep in step with fs.(*FS).Mount: the same options make (b) the
	// floor that dualstore is measured against.
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       "bench-loopback",
			Name:         "dualstore-bench",
			DirectMount:  true,
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			Options:      []string{"default_permissions"},
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &negative,
		NullPermissions: true,
	}
	srv, err := gofs.Mount(mnt, &noPassthroughNode{ln}, opts)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	fmt.Println("ready")

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-sigs:
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Unmount() != nil {
		if time.Now().After(deadline) {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	return nil
}

// noPassthroughNode is go-fuse's LoopbackNode with every file handle
// wrapped in noPassthroughFile. As root on a recent kernel, the plain
// loopback hands its backing file to the kernel (FUSE passthrough), so
// reads and writes never reach the daemon; a chunking filesystem cannot do
// that, so the comparison would measure the wrong thing.
type noPassthroughNode struct {
	*gofs.LoopbackNode
}

var (
	_ gofs.NodeWrapChilder = (*noPassthroughNode)(nil)
	_ gofs.NodeOpener      = (*noPassthroughNode)(nil)
	_ gofs.NodeCreater     = (*noPassthroughNode)(nil)
	_ gofs.NodeTmpfiler    = (*noPassthroughNode)(nil)
)

// WrapChild makes every node below the root a noPassthroughNode too.
func (n *noPassthroughNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &noPassthroughNode{ln}
	}
	return ops
}

func (n *noPassthroughNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	f, errno := hidePassthrough(fh)
	return f, fuseFlags, errno
}

func (n *noPassthroughNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ino, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f, errno := hidePassthrough(fh)
	return ino, f, fuseFlags, errno
}

func (n *noPassthroughNode) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ino, fh, fuseFlags, errno := n.LoopbackNode.Tmpfile(ctx, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f, errno := hidePassthrough(fh)
	return ino, f, fuseFlags, errno
}

func hidePassthrough(fh gofs.FileHandle) (gofs.FileHandle, syscall.Errno) {
	lf, ok := fh.(*gofs.LoopbackFile)
	if !ok {
		// A go-fuse that changed its loopback file type: refuse rather
		// than measure something else.
		if r, ok := fh.(gofs.FileReleaser); ok {
			_ = r.Release(context.Background()) // refusing anyway
		}
		return nil, syscall.ENOTSUP
	}
	return &noPassthroughFile{lf}, 0
}

// noPassthroughFile forwards every file operation of go-fuse's loopback
// file except PassthroughFd (and Ioctl, which dualstore does not serve
// either). It holds the file rather than embedding it, so a capability
// added to LoopbackFile in a later go-fuse does not silently leak in.
// Reads keep go-fuse's splice from the backing fd: that is the floor.
type noPassthroughFile struct {
	lf *gofs.LoopbackFile
}

var (
	_ gofs.FileReader    = (*noPassthroughFile)(nil)
	_ gofs.FileWriter    = (*noPassthroughFile)(nil)
	_ gofs.FileWritever  = (*noPassthroughFile)(nil)
	_ gofs.FileFlusher   = (*noPassthroughFile)(nil)
	_ gofs.FileFsyncer   = (*noPassthroughFile)(nil)
	_ gofs.FileReleaser  = (*noPassthroughFile)(nil)
	_ gofs.FileGetattrer = (*noPassthroughFile)(nil)
	_ gofs.FileSetattrer = (*noPassthroughFile)(nil)
	_ gofs.FileStatxer   = (*noPassthroughFile)(nil)
	_ gofs.FileLseeker   = (*noPassthroughFile)(nil)
	_ gofs.FileAllocater = (*noPassthroughFile)(nil)
	_ gofs.FileGetlker   = (*noPassthroughFile)(nil)
	_ gofs.FileSetlker   = (*noPassthroughFile)(nil)
	_ gofs.FileSetlkwer  = (*noPassthroughFile)(nil)
)

func (f *noPassthroughFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, dest, off)
}

func (f *noPassthroughFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.lf.Write(ctx, data, off)
}

func (f *noPassthroughFile) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	return f.lf.Writev(ctx, data, off)
}

func (f *noPassthroughFile) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

func (f *noPassthroughFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.lf.Fsync(ctx, flags)
}

func (f *noPassthroughFile) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *noPassthroughFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *noPassthroughFile) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Setattr(ctx, in, out)
}

func (f *noPassthroughFile) Statx(ctx context.Context, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return f.lf.Statx(ctx, flags, mask, out)
}

func (f *noPassthroughFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *noPassthroughFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return f.lf.Allocate(ctx, off, size, mode)
}

func (f *noPassthroughFile) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.lf.Getlk(ctx, owner, lk, flags, out)
}

func (f *noPassthroughFile) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlk(ctx, owner, lk, flags)
}

func (f *noPassthroughFile) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlkw(ctx, owner, lk, flags)
}
