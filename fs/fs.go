package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/index/replica"
)

// Options configure the FUSE front end.
type Options struct {
	// Files are the file layer's options: the staging dir (required), the
	// chunk cache and the prefetch of sequential reads. Its Log is set
	// from Log.
	Files vfs.Options
	// MaxNodes bounds the inodes the kernel holds through the mount:
	// past it the kernel is asked to forget the least recently looked up
	// ones it does not use (see nodes.go), so that a walk of a big tree
	// does not leave the daemon with a node for every file. Default
	// DefaultMaxNodes; negative: no bound.
	MaxNodes int
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's
	// caching times. Every change goes through this mount, so the kernel's
	// copies stay right; defaults 1s, 1s, 0.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// Config renders the effective configuration, secrets redacted, for
	// `.dualstore/config`. Optional.
	Config func() []byte
	// Tuning is how the runs ctl starts (compare, repair, migrate, gc) go
	// unless the command says otherwise: the config's compare section.
	Tuning maint.Tuning
	// ReadOnly mounts the tree read-only: the kernel refuses every change
	// (and the control file's commands) with EROFS before it reaches the
	// daemon, and the background gc does not run. Reads still heal a bad
	// copy from the other tier, and chunks pending backfill are still
	// copied: those add copies of chunks, never change what a file holds.
	ReadOnly bool
	// AutoGC is the background gc (the config's gc section). The zero
	// value is off; DefaultOptions turns it on.
	AutoGC AutoGCOptions
	// Backup reports the index backup's state for the stats (nil: off).
	Backup func() replica.Stats
	// Health bounds the health checks of the stats (zero: defaults).
	Health HealthOptions
	// Warnings are what is unsafe about the setup (a data dir others may
	// write, a config with secrets others may read), listed in the stats.
	Warnings []string
	// Log receives the filesystem's logs.
	Log zerolog.Logger
}

// DefaultMaxNodes is the default of Options.MaxNodes: about 45 MB of
// nodes, and more inodes than most working sets touch.
const DefaultMaxNodes = 100_000

// DefaultOptions returns every default of the front end and the file
// layer (Files.StagingDir must still be set).
func DefaultOptions() Options {
	return Options{Files: vfs.DefaultOptions(), MaxNodes: DefaultMaxNodes, EntryTimeout: time.Second, AttrTimeout: time.Second,
		Tuning: maint.DefaultTuning(), AutoGC: DefaultAutoGC(), Log: zerolog.Nop()}
}

// Validate reports options that are out of range.
func (o Options) Validate() error {
	var errs []error
	if err := o.Files.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.EntryTimeout < 0 || o.AttrTimeout < 0 || o.NegativeTimeout < 0 {
		errs = append(errs, fmt.Errorf("fs: negative kernel cache timeout (entry %s, attr %s, negative %s)", o.EntryTimeout, o.AttrTimeout, o.NegativeTimeout))
	}
	if err := o.Tuning.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("fs: compare tuning: %w", err))
	}
	if err := o.AutoGC.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("fs: automatic gc: %w", err))
	}
	if err := o.Health.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("fs: %w", err))
	}
	return errors.Join(errs...)
}

// FS is a mounted dualstore filesystem: the index holds the tree and each
// file's chunk list, the dual manager holds the chunks. The file layer
// (open files, streaming, staging, commit, cache) is vfs's; FS adapts it
// and the tree to go-fuse.
type FS struct {
	db    Meta
	dm    *dual.Manager
	opts  Options
	log   zerolog.Logger
	start time.Time
	vfs   *vfs.FS

	// kcache decides which opens keep the kernel's page cache.
	kcache keepCache
	// nodes are the nodes the kernel holds, pruned past MaxNodes.
	nodes nodeLRU
	// root is the mounted root node (set by Mount).
	root *node

	ctl      control
	agc      autoGC
	ioErrors atomic.Int64
	maint    *maint.Maintenance
	ops      fuseOps // FUSE requests by kind (fuseops.go)

	// warnMu guards warnings: what went wrong with the setup after New
	// (Warn), listed in the stats after Options.Warnings.
	warnMu   sync.Mutex
	warnings []string
}

// Warn adds a warning to the stats' list for the rest of the mount: a
// part of the setup that failed once the mount was up without stopping
// it (a metrics listener whose port is taken). The caller logs it.
func (f *FS) Warn(msg string) {
	f.warnMu.Lock()
	defer f.warnMu.Unlock()
	f.warnings = append(f.warnings, msg)
}

// New builds the filesystem over its metadata (the index) and a dual
// manager. The chunker parameters and hash come from the metadata's
// header, so the same bytes always cut the same way in this filesystem.
func New(db Meta, dm *dual.Manager, opts Options) (*FS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.EntryTimeout == 0 {
		opts.EntryTimeout = time.Second
	}
	if opts.AttrTimeout == 0 {
		opts.AttrTimeout = time.Second
	}
	if opts.MaxNodes == 0 {
		opts.MaxNodes = DefaultMaxNodes
	}
	opts.Tuning = opts.Tuning.WithDefaults()
	opts.AutoGC = opts.AutoGC.withDefaults()
	if opts.ReadOnly {
		opts.AutoGC.Enabled = false
	}
	opts.Files.Log = opts.Log // one logger for the mount; vfs tags its own lines
	// vfs takes a zero CacheBytes or Prefetch to mean its default.
	v, err := vfs.New(db, dm, opts.Files)
	if err != nil {
		return nil, err
	}
	opts.Files = v.Options()
	f := &FS{
		db: db, dm: dm, opts: opts, start: time.Now(), vfs: v,
		log: opts.Log.With().Str("component", "fs").Logger(),
	}
	f.nodes.max = max(opts.MaxNodes, 0)
	f.maint = maint.New(db, dm)
	f.ctl.init(f)
	f.agc.opts = opts.AutoGC
	f.startAutoGC()
	return f, nil
}

// MountOptions are what a mount needs besides the filesystem.
type MountOptions struct {
	// AllowOther lets users other than the mounting one in (off by
	// default, as with every FUSE filesystem).
	AllowOther bool
	// Debug logs every FUSE request (very verbose).
	Debug bool
	// FsName is shown in /proc/mounts (default "dualstore").
	FsName string
	// ReadaheadKB is the kernel's readahead for the mount, in KiB: how much
	// one sequential READ asks for. The kernel starts FUSE mounts at 128
	// KiB; default 1024 (one request per MiB, the most MaxPages allows).
	// Negative leaves the kernel's value.
	ReadaheadKB int
	// NoExec mounts noexec: no program on the mount can be executed.
	NoExec bool
}

// Mount mounts f at mountpoint and returns the running server. The
// options are the ones FUSE filesystems learned the hard way: the kernel
// checks permissions (default_permissions) against the modes we store and
// applies the caller's umask, null permissions stay null, and writes
// arrive in pieces of up to 1 MiB.
//
// A mount that fails leaves no mount behind: the root directory, the
// kernel's first question, is read from the index before the kernel
// mount, and if the kernel mount is made but its first requests fail
// (go-fuse's check that it answers), it is unmounted again before Mount
// returns the error. Otherwise the mount point would be left answering
// ENOTCONN to everyone until someone unmounts it by hand.
func (f *FS) Mount(mountpoint string, mo MountOptions) (*fuse.Server, error) {
	if err := CheckRoot(context.Background(), f.db); err != nil {
		return nil, err
	}
	name := mo.FsName
	if name == "" {
		name = "dualstore"
	}
	neg := f.opts.NegativeTimeout
	kernelOpts := []string{"default_permissions"}
	if mo.NoExec {
		kernelOpts = append(kernelOpts, "noexec")
	}
	// go-fuse's own flags, and read-only as a mount flag (so that
	// /proc/mounts says ro, as for any read-only mount); "ro" among the
	// options too, for fusermount (which takes no flags) when a direct
	// mount is not allowed.
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if f.opts.ReadOnly {
		flags |= syscall.MS_RDONLY
		kernelOpts = append(kernelOpts, "ro")
	}
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:           name,
			Name:             "dualstore",
			DirectMount:      true,
			DirectMountFlags: flags,
			AllowOther:       mo.AllowOther,
			MaxWrite:         1 << 20,
			MaxReadAhead:     1 << 20,
			Options:          kernelOpts,
			Debug:            mo.Debug,
			DisableXAttrs:    false,
			// MAP_SHARED on a FOPEN_DIRECT_IO handle (a reader of a file
			// being written, see openHandleWith) instead of ENODEV.
			ExtraCapabilities: fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			// Reads are answered from chunk bytes in memory, never from a
			// file descriptor: without this go-fuse tries a splice pipe
			// for every read reply first (and logs a failure for every
			// 1 MiB one, which does not fit the pipe).
			DisableSplice: true,
			// go-fuse recovers a panic in a request handler and answers
			// EIO; this logs it like every other EIO, with the stack.
			PanicHandler: func(r any) fuse.Status {
				f.ioErrors.Add(1)
				f.log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("internal error in a request handler: answered EIO")
				return fuse.EIO
			},
		},
		EntryTimeout:    &f.opts.EntryTimeout,
		AttrTimeout:     &f.opts.AttrTimeout,
		NegativeTimeout: &neg,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: index.RootIno},
	}
	// gofs.Mount, but keeping the server when its first requests fail, so
	// that the mount can be undone, and counting every request.
	f.root = &node{fs: f}
	before := mountIDs(mountpoint)
	srv, err := fuse.NewServer(f.countingRawFS(opts), mountpoint, &opts.MountOptions)
	if err != nil {
		// NewServer fails after the kernel mount too (its INIT
		// handshake), and then leaves it.
		if uerr := detachNew(mountpoint, before); uerr != nil {
			return nil, fmt.Errorf("%w; and undoing the mount: %w", err, uerr)
		}
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		err = fmt.Errorf("the new mount failed its first requests: %w", err)
		if uerr := unmountFailed(srv, mountpoint); uerr != nil {
			return nil, fmt.Errorf("%w; and unmounting it again: %w", err, uerr)
		}
		return nil, fmt.Errorf("%w (unmounted again)", err)
	}
	ra := mo.ReadaheadKB
	if ra == 0 {
		ra = 1024
	}
	if ra > 0 {
		if err := setReadahead(mountpoint, ra); err != nil {
			f.log.Info().Err(err).Int("readahead_kb", ra).Msg("kept the kernel's readahead")
		}
	}
	return srv, nil
}

// CheckRoot reads the root directory's attributes from db, what the
// kernel asks for first: an index that cannot give them (a missing or
// damaged root inode, or one that is not a directory) cannot be mounted.
// Mount checks it before the kernel mount; a caller that does more before
// mounting (starting the index backup) checks it before that.
func CheckRoot(ctx context.Context, db Meta) error {
	a, err := db.GetAttr(ctx, index.RootIno)
	if err != nil {
		return fmt.Errorf("the index cannot serve the root directory (inode %d): %w", index.RootIno, err)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("the index's root (inode %d) is not a directory (mode %#o): %w", index.RootIno, a.Mode, index.ErrCorrupt)
	}
	return nil
}

// unmountFailed takes down a mount whose server never served: a plain
// unmount (nothing can be using it), else a lazy one, which the kernel
// completes at once since nothing holds the mount.
func unmountFailed(srv *fuse.Server, mountpoint string) error {
	err := srv.Unmount()
	if err == nil {
		return nil
	}
	if derr := syscall.Unmount(mountpoint, syscall.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmount %s: %w; lazily: %w", mountpoint, err, derr)
	}
	return nil
}

// mountIDs returns the mount ids (the first field of
// /proc/self/mountinfo) of the mounts on mountpoint.
func mountIDs(mountpoint string) map[string]bool {
	ids := map[string]bool{}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ids
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == mountpoint {
			ids[f[0]] = true
		}
	}
	return ids
}

// detachNew lazily unmounts the mounts on mountpoint that were not there
// before (the ids mountIDs returned): ours, made by a mount that failed
// half-way. Nothing else's is touched.
func detachNew(mountpoint string, before map[string]bool) error {
	for id := range mountIDs(mountpoint) {
		if before[id] {
			continue
		}
		if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", mountpoint, err)
		}
	}
	return nil
}

// setReadahead sets the readahead of the mount's backing device info
// (/sys/class/bdi/MAJOR:MINOR/read_ahead_kb); root only. Larger reads mean
// fewer FUSE round trips for every sequential read. The device number
// comes from /proc/self/mountinfo: the daemon never does I/O on its own
// mount.
func setReadahead(mountpoint string, kb int) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == mountpoint {
			dev = f[2] // the last mount on the path wins
		}
	}
	if dev == "" {
		return fmt.Errorf("%s not in /proc/self/mountinfo", mountpoint)
	}
	return os.WriteFile("/sys/class/bdi/"+dev+"/read_ahead_kb", []byte(strconv.Itoa(kb)), 0)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space…) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// Close stops the background gc and any running action. The caller
// closes the dual manager and the index after the server has exited.
func (f *FS) Close() error {
	f.stopAutoGC() // first: no run starts after stopAction
	f.ctl.stopAction()
	f.agc.watchers.Wait()
	// A last durability point: a clean shutdown leaves every commit
	// durable.
	return f.vfs.Close(context.Background())
}

// fail logs an error that is about to become an errno and returns it.
// Not-found and the like are ordinary answers, logged at debug only.
func (f *FS) fail(op string, ino uint64, err error) syscall.Errno {
	e := toErrno(err)
	if e == syscall.EIO {
		f.ioErrors.Add(1)
		f.log.Error().Str("op", op).Uint64("ino", ino).Err(err).Msg("I/O error")
	} else {
		f.log.Debug().Str("op", op).Uint64("ino", ino).Err(err).Msg(e.Error())
	}
	return e
}

// kernelForgot is go-fuse's OnForget: the kernel dropped its last
// reference to ino, and its page cache with it. An orphan with no open
// file is purged now (vfs.FS.Forgot).
func (f *FS) kernelForgot(ino uint64) {
	f.kcache.forget(ino)
	f.vfs.Forgot(ino)
}

// truncate changes a file's size, open or not, and commits it.
func (f *FS) truncate(ctx context.Context, ino uint64, size uint64) error {
	ctx = context.WithoutCancel(ctx) // see handle.Read
	vh, err := f.vfs.Open(ctx, ino)
	if err != nil {
		return err
	}
	// The Flush below reports the commit; what Release commits after it
	// (nothing, normally) it logs itself.
	defer func() { _ = vh.Release(ctx) }()
	// The kernel truncates its own cache, but a truncate that fails may
	// revert the file: the next open drops the cache either way.
	f.kcache.change(ino)
	if err := vh.Truncate(ctx, size); err != nil {
		return err
	}
	return vh.Flush(ctx)
}

// openHandle opens a file handle (O_TRUNC truncates).
func (f *FS) openHandle(ctx context.Context, ino uint64, flags uint32) (*handle, error) {
	return f.openHandleWith(ctx, ino, flags, nil)
}

// openHandleWith is openHandle; created, if not nil, are the attributes
// of a file Create has just made (see vfs.FS.OpenCreated).
func (f *FS) openHandleWith(ctx context.Context, ino uint64, flags uint32, created *index.Attr) (*handle, error) {
	ctx = context.WithoutCancel(ctx) // see handle.Read
	vh, err := f.vfs.OpenCreated(ctx, ino, created)
	if err != nil {
		return nil, err
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if flags&syscall.O_TRUNC != 0 && write {
		f.kcache.change(ino)
		if err := vh.Truncate(ctx, 0); err != nil {
			_ = vh.Release(ctx) // the truncate's error is the one to report
			return nil, err
		}
	}
	h := &handle{fs: f, vh: vh, write: write}
	keep, writing := f.kcache.open(ino, write)
	switch {
	case keep:
		h.fopen = fuse.FOPEN_KEEP_CACHE
	case writing && !write:
		// A reader of a file someone is writing bypasses the page cache.
		// Through it, a read that races a write(2) in flight could cache
		// the bytes from before that write (zeros past the old end) over
		// the ones the write put there: TestLoad's long form saw runs of
		// 38-113 zeros where one write's bytes belonged, within a minute,
		// and none in 7 minutes with this. mmap still works
		// (CAP_DIRECT_IO_ALLOW_MMAP).
		h.fopen = fuse.FOPEN_DIRECT_IO
	}
	return h, nil
}

func (f *FS) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(f.opts.Files.StagingDir, &s); err != nil {
		return f.fail("statfs", 0, err)
	}
	u, err := f.db.Usage(ctx)
	if err != nil {
		return f.fail("statfs", 0, err)
	}
	out.Bsize = uint32(s.Bsize)
	out.Frsize = uint32(s.Bsize)
	out.Blocks = s.Blocks
	out.Bfree = s.Bfree
	out.Bavail = s.Bavail
	out.Files = uint64(u.Inodes) + s.Ffree
	out.Ffree = s.Ffree
	out.NameLen = 255
	return 0
}

// handle is one open file description: a vfs handle with the kernel's
// page-cache policy around it.
type handle struct {
	fs   *FS
	vh   *vfs.Handle
	once sync.Once
	// write: opened for writing (keepCache counts it until Release).
	write bool
	// fopen are the open flags for the kernel: FOPEN_KEEP_CACHE when the
	// kernel's page cache may be kept (see keepCache).
	fopen uint32
	// inode is the file's inode, for invalidating the kernel's cache of
	// it when a write fails and the file reverts (nil in unit tests).
	inode *gofs.Inode
}

// reverted tells the kernel that the file's content may have gone back to
// its last committed state (a failed commit reverts it): its page cache
// may hold the bytes written since, so the next open drops it, and so
// does a notification now, for the descriptors already open. The
// notification is sent from its own goroutine: the kernel may wait in it
// for reads this server has yet to answer.
func (h *handle) reverted() {
	f := h.fs
	ino := h.vh.Ino()
	f.kcache.change(ino)
	if in := h.inode; in != nil {
		go func() {
			if errno := in.NotifyContent(0, 0); errno != 0 && errno != syscall.ENOENT {
				f.log.Debug().Uint64("ino", ino).Err(errno).Msg("page cache invalidation after a revert")
			}
		}()
	}
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
	_ gofs.FileLseeker   = (*handle)(nil)
)

// File I/O is not cancelled by the kernel's FUSE_INTERRUPT: the kernel
// interrupts a request whenever the calling thread gets any signal (a Go
// program gets SIGURG all the time), and a cancelled chunk read or write
// used to turn into EINTR, which read/write/close on a local file never
// return and C programs do not retry, or worse into a reverted file. Store
// calls are bounded by store_timeout instead.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	slices, n, err := h.vh.Read(context.WithoutCancel(ctx), dest, off)
	if err != nil {
		return nil, h.fs.fail("read", h.vh.Ino(), err)
	}
	return vecResult{slices: slices, size: n}, 0
}

// vecResult is a read reply made of slices of cached chunks: go-fuse
// writes them to the kernel with one writev (its Slices interface), so
// the bytes are not copied into a reply buffer first. The slices are
// never modified (see vfs.Handle.Read).
type vecResult struct {
	slices [][]byte
	size   int
}

func (r vecResult) Slices() ([][]byte, fuse.Status) { return r.slices, fuse.OK }
func (r vecResult) Size() int                       { return r.size }
func (r vecResult) Done()                           {}

// Bytes is for callers that want one buffer.
func (r vecResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(r.slices) == 1 {
		return r.slices[0], fuse.OK
	}
	if cap(buf) < r.size {
		buf = make([]byte, r.size)
	}
	buf = buf[:0]
	for _, s := range r.slices {
		buf = append(buf, s...)
	}
	return buf, fuse.OK
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.vh.Write(context.WithoutCancel(ctx), data, off)
	if err != nil && n == 0 {
		return 0, h.fs.fail("write", h.vh.Ino(), err)
	}
	if err != nil {
		// A short write: the kernel returns n, and the caller's retry of
		// the rest gets the error.
		h.fs.log.Warn().Uint64("ino", h.vh.Ino()).Int("written", n).Int("asked", len(data)).Err(err).Msg("short write")
	}
	return uint32(n), 0
}

// Allocate is fallocate(2): holes, nothing reserved in the stores (see
// vfs.Handle.Allocate); unsupported modes get EOPNOTSUPP.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	h.fs.kcache.change(h.vh.Ino())
	if err := h.vh.Allocate(context.WithoutCancel(ctx), off, size, mode); err != nil {
		return h.fs.fail("fallocate", h.vh.Ino(), err)
	}
	return 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE, so cp --sparse, tar -S and rsync
// --sparse keep holes; the kernel handles the other whences itself.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	switch whence {
	case vfs.SeekData, vfs.SeekHole:
	default:
		return 0, syscall.EINVAL
	}
	p, err := h.vh.Seek(off, int(whence))
	if err != nil {
		return 0, toErrno(err)
	}
	return p, 0
}

// Flush runs at every close(2) of a descriptor (more than once per handle
// after dup or fork): it commits what was written and reports any write
// error, since the kernel ignores what Release returns.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if err := h.vh.Flush(context.WithoutCancel(ctx)); err != nil {
		h.reverted()
		return h.fs.fail("flush", h.vh.Ino(), err)
	}
	return 0
}

// Fsync commits and then makes the chunks and the index durable, with one
// sync per store and one for the index rather than one per chunk.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx = context.WithoutCancel(ctx)
	if err := h.vh.Flush(ctx); err != nil {
		h.reverted()
		return h.fs.fail("fsync", h.vh.Ino(), err)
	}
	if err := h.fs.vfs.Sync(ctx); err != nil {
		return h.fs.fail("fsync", h.vh.Ino(), err)
	}
	return 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() {
		if err := h.vh.Release(context.WithoutCancel(ctx)); err != nil {
			h.reverted()
		}
		h.fs.kcache.release(h.vh.Ino(), h.write)
	})
	return 0
}
