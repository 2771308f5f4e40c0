package fs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Options configure the filesystem layer.
type Options struct {
	// StagingDir holds the (unlinked) staging files of non-sequential
	// writes. Required; it should be on local disk.
	StagingDir string
	// CacheBytes bounds the chunk cache. Default 64 MiB.
	CacheBytes int64
	// Prefetch is how many chunks ahead sequential reads fetch at most
	// (the window starts at 2 and doubles while reads stay sequential).
	// Default 16.
	Prefetch int
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's
	// caching times. Every change goes through this mount, so the kernel's
	// copies stay right; defaults 1s, 1s, 0.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	// Config renders the effective configuration, secrets redacted, for
	// `.dualstore/config`. Optional.
	Config func() []byte
	// Scrub carries the tuning of the runs ctl starts (compare, repair,
	// migrate, gc): only Concurrency, BatchSize, Rate and MaxDetails are
	// read, as a maint.Tuning (zero fields take maint.DefaultTuning).
	Scrub dual.ScrubOptions
	// Log receives the filesystem's logs.
	Log zerolog.Logger
}

// Validate reports options that are out of range.
func (o Options) Validate() error {
	var errs []error
	if o.StagingDir == "" {
		errs = append(errs, errors.New("fs: StagingDir is required"))
	} else if st, err := os.Stat(o.StagingDir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("fs: staging dir %s: not a directory (%v)", o.StagingDir, err))
	}
	if o.CacheBytes < 0 || o.Prefetch < 0 || o.Prefetch > 64 {
		errs = append(errs, fmt.Errorf("fs: cache_bytes %d / prefetch %d out of range", o.CacheBytes, o.Prefetch))
	}
	return errors.Join(errs...)
}

// FS is a mounted dualstore filesystem: the index holds the tree and each
// file's chunk list, the dual manager holds the chunks.
type FS struct {
	db     *index.DB
	dm     *dual.Manager
	opts   Options
	log    zerolog.Logger
	params chunker.Params
	hash   chunker.HashFunc
	// streamOpts are every chunker stream's options: the predictor.
	streamOpts chunker.StreamOptions
	start      time.Time
	cache      *chunkCache

	filesMu sync.Mutex
	files   map[uint64]*fileState
	// orphans are inodes whose last name went while the kernel or an open
	// file still holds them; true once the kernel has forgotten them. An
	// orphan is purged from the index when both have let go (guarded by
	// filesMu).
	orphans map[uint64]bool
	// closed counts the open-file states dropped (guarded by filesMu,
	// read without it): see entryAttr.
	closed atomic.Uint64
	// kcache decides which opens keep the kernel's page cache.
	kcache keepCache

	prefetchSem chan struct{}

	ctl   control
	ctr   fsCounters
	maint *Maintenance
}

type fsCounters struct {
	chunksCut, dedupHits, dedupBytes atomic.Int64
	chunksPredicted                  atomic.Int64
	bytesWritten, bytesRead          atomic.Int64
	ioErrors                         atomic.Int64
}

// New builds the filesystem over an open index and a dual manager. The
// chunker parameters and hash come from the index header, so the same
// bytes always cut the same way in this filesystem.
func New(db *index.DB, dm *dual.Manager, opts Options) (*FS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = 64 << 20
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = 16
	}
	if opts.EntryTimeout == 0 {
		opts.EntryTimeout = time.Second
	}
	if opts.AttrTimeout == 0 {
		opts.AttrTimeout = time.Second
	}
	h := db.Header()
	params := chunker.Params{Polynomial: h.Polynomial, MinSize: uint(h.MinSize), AvgSize: uint(h.AvgSize), MaxSize: uint(h.MaxSize)}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("fs: index header chunker parameters: %w", err)
	}
	hash, err := chunker.Hasher(h.Hash)
	if err != nil {
		return nil, fmt.Errorf("fs: index header: %w", err)
	}
	f := &FS{
		db: db, dm: dm, opts: opts, params: params, hash: hash, start: time.Now(),
		log:         opts.Log.With().Str("component", "fs").Logger(),
		files:       map[uint64]*fileState{},
		orphans:     map[uint64]bool{},
		prefetchSem: make(chan struct{}, max(4, opts.Prefetch)),
	}
	f.cache = newChunkCache(opts.CacheBytes, dm.Get)
	f.streamOpts = chunker.StreamOptions{Predict: f.predict}
	f.maint = NewMaintenance(db, dm)
	f.ctl.init(f)
	return f, nil
}

// Root returns the root node to mount.
func (f *FS) Root() gofs.InodeEmbedder { return &node{fs: f} }

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
}

// Mount mounts f at mountpoint and returns the running server. The
// options are the ones FUSE filesystems learned the hard way: the kernel
// checks permissions (default_permissions) against the modes we store and
// applies the caller's umask, null permissions stay null, and writes
// arrive in pieces of up to 1 MiB.
func (f *FS) Mount(mountpoint string, mo MountOptions) (*fuse.Server, error) {
	name := mo.FsName
	if name == "" {
		name = "dualstore"
	}
	neg := f.opts.NegativeTimeout
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        name,
			Name:          "dualstore",
			DirectMount:   true,
			AllowOther:    mo.AllowOther,
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			Options:       []string{"default_permissions"},
			Debug:         mo.Debug,
			DisableXAttrs: false,
			// MAP_SHARED on a FOPEN_DIRECT_IO handle (a reader of a file
			// being written, see openHandleWith) instead of ENODEV.
			ExtraCapabilities: fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			// Reads are answered from chunk bytes in memory, never from a
			// file descriptor: without this go-fuse tries a splice pipe
			// for every read reply first (and logs a failure for every
			// 1 MiB one, which does not fit the pipe).
			DisableSplice: true,
		},
		EntryTimeout:    &f.opts.EntryTimeout,
		AttrTimeout:     &f.opts.AttrTimeout,
		NegativeTimeout: &neg,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: index.RootIno},
	}
	srv, err := gofs.Mount(mountpoint, f.Root(), opts)
	if err != nil {
		return nil, err
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

// Close stops background actions. The caller closes the dual manager and
// the index after the server has exited.
func (f *FS) Close() error {
	f.ctl.stopAction()
	return nil
}

// fail logs an error that is about to become an errno and returns it.
// Not-found and the like are ordinary answers, logged at debug only.
func (f *FS) fail(op string, ino uint64, err error) syscall.Errno {
	e := toErrno(err)
	if e == syscall.EIO {
		f.ctr.ioErrors.Add(1)
		f.log.Error().Str("op", op).Uint64("ino", ino).Err(err).Msg("I/O error")
	} else {
		f.log.Debug().Str("op", op).Uint64("ino", ino).Err(err).Msg(e.Error())
	}
	return e
}

// chunk returns one chunk's bytes (cached), checking its length.
func (f *FS) chunk(ctx context.Context, c index.Chunk) ([]byte, error) {
	data, err := f.cache.get(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if len(data) != int(c.Size) {
		return nil, fmt.Errorf("chunk %s: %d bytes, index says %d: %w", c.ID, len(data), c.Size, stores.ErrCorrupt)
	}
	return data, nil
}

// prefetch fetches the next chunks of a sequential read in the
// background, without ever blocking the read.
func (f *FS) prefetch(chunks []index.Chunk, from, n int) {
	for i := from; i < len(chunks) && i < from+n; i++ {
		id := chunks[i].ID
		if f.cache.contains(id) {
			continue
		}
		select {
		case f.prefetchSem <- struct{}{}:
		default:
			return
		}
		go func() {
			defer func() { <-f.prefetchSem }()
			_, _ = f.cache.get(context.Background(), id)
		}()
	}
}

// predict is the chunker's predictor (chunker.StreamOptions.Predict): a
// chunk the index has after prev in some file, which is the next cut if
// the next bytes are that chunk's. A second copy of stored data is then
// cut at the speed of hashing instead of the rolling hash.
func (f *FS) predict(prev [32]byte) ([32]byte, uint32, bool) {
	next, ok, err := f.db.NextChunk(context.Background(), stores.ID(prev))
	if err != nil || !ok {
		return [32]byte{}, 0, false
	}
	return [32]byte(next.ID), next.Size, true
}

// known reports whether the index already references the chunk, so its
// write can be skipped (dedup).
//
// Only a referenced chunk counts: an unreferenced row may be one gc has
// already removed from the stores (gc removes the files first, then the
// row). The caller holds id, so a referenced chunk stays stored.
func (f *FS) known(id stores.ID) bool {
	_, refs, err := f.db.ChunkRefs(context.Background(), id)
	return err == nil && refs > 0
}

// acquire returns the shared state of an open file, loading it on first
// open.
func (f *FS) acquire(ctx context.Context, ino uint64) (*fileState, error) {
	return f.acquireWith(ctx, ino, nil)
}

// acquireWith is acquire; created, if not nil, are the attributes of a
// file Create has just made, whose state (empty) is then not read back
// from the index.
func (f *FS) acquireWith(ctx context.Context, ino uint64, created *index.Attr) (*fileState, error) {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	if st, ok := f.files[ino]; ok {
		st.opens++
		return st, nil
	}
	st := &fileState{fs: f, ino: ino, rechunkFrom: math.MaxUint64}
	if created != nil && created.Size == 0 {
		st.setChunks(nil)
		st.mtime = created.Mtime
	} else if err := st.load(ctx); err != nil {
		return nil, err
	}
	st.opens = 1
	f.files[ino] = st
	return st, nil
}

// release drops one reference; the last one commits anything left (a
// safety net: Flush already did) and purges an orphan the kernel has
// already forgotten. It returns the commit's error, which it logs.
func (f *FS) release(ctx context.Context, st *fileState) error {
	f.filesMu.Lock()
	st.opens--
	last := st.opens == 0
	f.filesMu.Unlock()
	if !last {
		return nil
	}
	cerr := st.commit(ctx)
	if cerr != nil {
		f.log.Error().Uint64("ino", st.ino).Err(cerr).Msg("commit at release failed")
	}
	f.filesMu.Lock()
	if st.opens > 0 { // opened again while committing: the state lives on
		f.filesMu.Unlock()
		return cerr
	}
	delete(f.files, st.ino)
	f.closed.Add(1)
	forgotten := f.orphans[st.ino]
	if forgotten {
		delete(f.orphans, st.ino)
	}
	f.filesMu.Unlock()
	st.mu.Lock()
	st.dropOverlay()
	st.mu.Unlock()
	st.releaseHeld() // whatever did not commit is garbage now
	if forgotten {
		f.purge(ctx, st.ino)
	}
	return cerr
}

func (f *FS) isOpen(ino uint64) bool {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	_, ok := f.files[ino]
	return ok
}

// unlinked notes an inode whose last name went (unlink, rename over it).
// It is not purged yet: the kernel still holds it (it resolved the name
// just before, and a path being replaced by rename may be opened through
// it), and so may open files. kernelForgot and the last release purge it,
// whichever comes second. An orphan left by a crash is purged at the next
// mount.
func (f *FS) unlinked(a index.Attr) {
	if a.Nlink != 0 {
		return
	}
	f.filesMu.Lock()
	if _, ok := f.orphans[a.Ino]; !ok {
		f.orphans[a.Ino] = false
	}
	f.filesMu.Unlock()
}

// kernelRef notes that the kernel holds ino again (a lookup answered).
func (f *FS) kernelRef(ino uint64) {
	f.filesMu.Lock()
	if _, ok := f.orphans[ino]; ok {
		f.orphans[ino] = false
	}
	f.filesMu.Unlock()
}

// kernelForgot is go-fuse's OnForget: the kernel dropped its last
// reference to ino. An orphan with no open file is purged now.
func (f *FS) kernelForgot(ino uint64) {
	f.kcache.forget(ino)
	f.filesMu.Lock()
	_, orphan := f.orphans[ino]
	_, open := f.files[ino]
	switch {
	case !orphan:
		f.filesMu.Unlock()
		return
	case open:
		f.orphans[ino] = true
		f.filesMu.Unlock()
		return
	}
	delete(f.orphans, ino)
	f.filesMu.Unlock()
	f.purge(context.Background(), ino)
}

func (f *FS) purge(ctx context.Context, ino uint64) {
	if err := f.db.Purge(context.WithoutCancel(ctx), ino); err != nil {
		f.log.Error().Uint64("ino", ino).Err(err).Msg("purge of unlinked inode failed; it is purged at the next mount")
	}
}

// overlayAttr replaces size and mtime with an open file's unflushed ones.
func (f *FS) overlayAttr(a *index.Attr) {
	f.filesMu.Lock()
	st, ok := f.files[a.Ino]
	f.filesMu.Unlock()
	if !ok {
		return
	}
	st.mu.RLock()
	if st.dirty {
		a.Size = st.size
		a.Mtime = st.mtime
		if st.mtime.After(a.Ctime) {
			a.Ctime = st.mtime
		}
	}
	st.mu.RUnlock()
}

// setOpenMtime keeps an explicit utimes from being overwritten by the
// write time of an open file's next commit.
func (f *FS) setOpenMtime(ino uint64, t time.Time) {
	f.filesMu.Lock()
	st, ok := f.files[ino]
	f.filesMu.Unlock()
	if ok {
		st.mu.Lock()
		st.mtime = t
		st.mu.Unlock()
	}
}

// truncate changes a file's size, open or not, and commits it.
func (f *FS) truncate(ctx context.Context, ino uint64, size uint64) error {
	ctx = context.WithoutCancel(ctx) // see handle.Read
	st, err := f.acquire(ctx, ino)
	if err != nil {
		return err
	}
	defer f.release(ctx, st)
	// The kernel truncates its own cache, but a truncate that fails may
	// revert the file: the next open drops the cache either way.
	f.kcache.change(ino)
	if err := st.truncate(ctx, size); err != nil {
		return err
	}
	return st.commit(ctx)
}

// openHandle opens a file handle (O_TRUNC truncates).
func (f *FS) openHandle(ctx context.Context, ino uint64, flags uint32) (*handle, error) {
	return f.openHandleWith(ctx, ino, flags, nil)
}

// openHandleWith is openHandle; created is as for acquireWith.
func (f *FS) openHandleWith(ctx context.Context, ino uint64, flags uint32, created *index.Attr) (*handle, error) {
	ctx = context.WithoutCancel(ctx) // see handle.Read
	st, err := f.acquireWith(ctx, ino, created)
	if err != nil {
		return nil, err
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if flags&syscall.O_TRUNC != 0 && write {
		f.kcache.change(ino)
		if err := st.truncate(ctx, 0); err != nil {
			f.release(ctx, st)
			return nil, err
		}
	}
	h := &handle{st: st, write: write}
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
	if err := syscall.Statfs(f.opts.StagingDir, &s); err != nil {
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

// handle is one open file description.
type handle struct {
	st   *fileState
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
	f := h.st.fs
	f.kcache.change(h.st.ino)
	if in := h.inode; in != nil {
		go func() {
			if errno := in.NotifyContent(0, 0); errno != 0 && errno != syscall.ENOENT {
				f.log.Debug().Uint64("ino", h.st.ino).Err(errno).Msg("page cache invalidation after a revert")
			}
		}()
	}
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileFsyncer  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// File I/O is not cancelled by the kernel's FUSE_INTERRUPT: the kernel
// interrupts a request whenever the calling thread gets any signal (a Go
// program gets SIGURG all the time), and a cancelled chunk read or write
// used to turn into EINTR, which read/write/close on a local file never
// return and C programs do not retry, or worse into a reverted file. Store
// calls are bounded by store_timeout instead.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	slices, n, err := h.st.readv(context.WithoutCancel(ctx), dest, uint64(off))
	if err != nil {
		return nil, h.st.fs.fail("read", h.st.ino, err)
	}
	h.st.fs.ctr.bytesRead.Add(int64(n))
	return vecResult{slices: slices, size: n}, 0
}

// vecResult is a read reply made of slices of cached chunks: go-fuse
// writes them to the kernel with one writev (its Slices interface), so
// the bytes are not copied into a reply buffer first. The slices are
// never modified (see chunkCache).
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
	if err := h.st.write(context.WithoutCancel(ctx), data, uint64(off)); err != nil {
		return 0, h.st.fs.fail("write", h.st.ino, err)
	}
	h.st.fs.ctr.bytesWritten.Add(int64(len(data)))
	return uint32(len(data)), 0
}

// Flush runs at every close(2) of a descriptor (more than once per handle
// after dup or fork): it commits what was written and reports any write
// error, since the kernel ignores what Release returns.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if err := h.st.commit(context.WithoutCancel(ctx)); err != nil {
		h.reverted()
		return h.st.fs.fail("flush", h.st.ino, err)
	}
	return 0
}

// Fsync commits and then makes the chunks and the index durable, with one
// sync per store and one for the index rather than one per chunk.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx = context.WithoutCancel(ctx)
	f := h.st.fs
	if err := h.st.commit(ctx); err != nil {
		h.reverted()
		return f.fail("fsync", h.st.ino, err)
	}
	if err := f.dm.Sync(ctx); err != nil {
		return f.fail("fsync", h.st.ino, err)
	}
	if err := f.db.Sync(ctx); err != nil {
		return f.fail("fsync", h.st.ino, err)
	}
	return 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() {
		if err := h.st.fs.release(context.WithoutCancel(ctx), h.st); err != nil {
			h.reverted()
		}
		h.st.fs.kcache.release(h.st.ino, h.write)
	})
	return 0
}
