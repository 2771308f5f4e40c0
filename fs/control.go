package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/index/replica"
)

// Inode numbers of the virtual control entries: far above any the index
// hands out, as JuiceFS does for its own virtual files.
const (
	ctlIno uint64 = 0x7FFFFFFF00000000 + iota
	ctlStatsIno
	ctlCtlIno
	ctlCompareIno
	ctlConfigIno
	ctlChunksIno
)

type ctlEntry struct {
	name string
	ino  uint64
	mode uint32
}

var ctlEntries = []ctlEntry{
	{"compare", ctlCompareIno, 0444},
	{"config", ctlConfigIno, 0444},
	{"ctl", ctlCtlIno, 0600},
	{"stats", ctlStatsIno, 0444},
}

// control is the state behind `.dualstore/`: the one action that may run
// at a time (like md's sync_action) and the last command's result.
type control struct {
	fs *FS

	mu    sync.Mutex
	scrub *dual.Scrub // running or last compare/repair/migrate/gc
	// auto is set when the background gc started scrub: why it did
	// ("unused 7.2% of live data").
	auto string
	// manual is the last action a command started: once an automatic gc
	// after it is over, `.dualstore/compare` shows it again (the gc's
	// result stays in the stats' auto_gc).
	manual *dual.Scrub
	last   string // "compare: started", "error: …"
}

func (c *control) init(f *FS) { c.fs = f }

func (c *control) stopAction() {
	c.mu.Lock()
	s := c.scrub
	c.mu.Unlock()
	if s != nil && s.Running() {
		s.Stop()
		s.Wait()
	}
}

// status renders what `cat .dualstore/ctl` shows: the current action
// (`idle`, `compare 41% …`) and the last command's result.
func (c *control) status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := "idle"
	if c.scrub != nil && c.scrub.Running() {
		cur = c.scrub.Report().Progress()
		if c.auto != "" {
			// "gc 41% (…)" → "gc (automatic, unused 7.2% of live data) 41% (…)"
			cur = "gc (automatic, " + c.auto + ")" + strings.TrimPrefix(cur, "gc")
		}
	}
	last := c.last
	if last == "" {
		last = "none"
	}
	return fmt.Sprintf("%s\nlast: %s\n", strings.TrimSpace(cur), last)
}

func (c *control) busy() bool {
	return c.scrub != nil && c.scrub.Running()
}

// running reports whether an action runs (busy, taking the lock).
func (c *control) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy()
}

// gcOptions are the options of a gc started on the mount, by the ctl
// command or the background gc alike: the configured tuning with ov,
// refused after a restore unless afterRestore (maint.GCAllowed), sweeping
// the stores, with the mount's durability point before each removal.
func (f *FS) gcOptions(ctx context.Context, ov maint.Overrides, afterRestore, dryRun bool) (dual.GCOptions, error) {
	opts, err := f.opts.Tuning.GC(ov)
	if err != nil {
		return opts, err
	}
	if err := f.maint.GCAllowed(ctx, afterRestore, dryRun); err != nil {
		return opts, err
	}
	opts.DryRun, opts.Sweep = dryRun, true
	opts.Durable = f.vfs.Sync // a durability point, not the index alone
	return f.maint.GCOptions(opts), nil
}

// startAutoRun starts the background gc's run as the action, like a `gc`
// command, throttled to rate; why marks it in the status. Like a second
// command it fails with dual.ErrBusy while an action runs, and like one
// it makes a command sent during the run fail with EBUSY.
func (c *control) startAutoRun(ctx context.Context, why string, rate int64) (*dual.Scrub, error) {
	f := c.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy() {
		return nil, dual.ErrBusy
	}
	opts, err := f.gcOptions(ctx, maint.Overrides{}, false, false)
	if err != nil {
		return nil, err
	}
	opts.Unreferenced = throttle(opts.Unreferenced, rate)
	s, err := f.dm.StartGC(opts)
	if err != nil {
		return nil, err
	}
	c.scrub, c.auto = s, why
	c.last = fmt.Sprintf("gc (automatic, %s): started at %s", why, time.Now().UTC().Format(time.RFC3339))
	return s, nil
}

// exec runs one parsed command.
func (c *control) exec(ctx context.Context, cmd command) error {
	f := c.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	fail := func(err error) error {
		c.last = fmt.Sprintf("error: %s: %v", cmd.Verb, err)
		return err
	}
	switch cmd.Verb {
	case "compare", "repair", "migrate", "gc":
		if c.busy() {
			return fail(dual.ErrBusy)
		}
		if cmd.Verb == "gc" && f.opts.ReadOnly {
			// Only the ioctl reaches a read-only mount's ctl; gc would
			// remove chunks from the stores.
			return fail(fmt.Errorf("the mount is read-only: %w", syscall.EROFS))
		}
		// The run's options come from the same function as the offline
		// CLI's: the configured tuning with the command's overrides
		// (rate=0 asks for no limit, as --rate 0 does offline).
		t := f.opts.Tuning
		ov := cmd.Tuning
		var s *dual.Scrub
		var err error
		if cmd.Verb == "gc" {
			var opts dual.GCOptions
			if opts, err = f.gcOptions(context.Background(), ov, cmd.AfterRestore, cmd.DryRun); err == nil {
				s, err = f.dm.StartGC(opts)
			}
		} else {
			var opts dual.ScrubOptions
			if opts, err = t.Scrub(ov); err == nil {
				opts.Repair = cmd.Verb == "repair"
				opts.Deep = cmd.Deep
				opts.Migrate = cmd.Direction
				opts, err = f.maint.ScrubOptions(ctx, opts, cmd.Path)
			}
			if err == nil {
				s, err = f.dm.StartScrub(opts)
			}
		}
		if errors.Is(err, maint.ErrOutOfRange) {
			err = fmt.Errorf("%w: %w", errBadCommand, err) // EINVAL
		}
		if err != nil {
			return fail(err)
		}
		c.scrub, c.auto, c.manual = s, "", s
		what := cmd.Verb
		switch {
		case cmd.Deep:
			what += " deep"
		case cmd.DryRun:
			what += " dry-run"
		case cmd.Direction != "":
			what += " " + cmd.Direction
		}
		if cmd.Path != "" && cmd.Path != "/" {
			what += " " + cmd.Path
		}
		c.last = fmt.Sprintf("%s: started at %s", what, time.Now().UTC().Format(time.RFC3339))
	case "stop":
		if c.scrub == nil || !c.scrub.Running() {
			c.last = "stop: nothing running"
			return nil
		}
		s := c.scrub
		c.mu.Unlock()
		s.Stop()
		s.Wait()
		c.mu.Lock()
		c.last = "stop: stopped"
	case "read-preference":
		f.dm.SetReadPreference(cmd.Pref)
		c.last = "read-preference: " + cmd.Pref.String()
	case "reset-stats":
		f.dm.ResetStats()
		f.vfs.ResetCacheStats()
		f.ops.reset()
		c.last = "reset-stats: done"
	}
	f.log.Info().Str("command", cmd.Verb).Str("result", c.last).Msg("control command")
	return nil
}

// Stats is the `.dualstore/stats` document: the dual manager's counters
// plus what the index knows about files and chunks.
type Stats struct {
	dual.Stats
	Files        int64   `json:"files"`
	Dirs         int64   `json:"dirs"`
	LogicalBytes int64   `json:"logical_bytes"`
	UniqueChunks int64   `json:"unique_chunks"`
	UniqueBytes  int64   `json:"unique_bytes"`
	DedupRatio   float64 `json:"dedup_ratio"`
	Cache        struct {
		Hits   int64 `json:"hits"`
		Misses int64 `json:"misses"`
		Bytes  int64 `json:"bytes"`
	} `json:"cache"`
	FS struct {
		OpenFiles int `json:"open_files"`
		// Nodes are the inodes the kernel may hold through the mount
		// (see Options.MaxNodes); NodesPruned how many it was asked to
		// forget.
		Nodes       int   `json:"nodes"`
		NodesPruned int64 `json:"nodes_pruned"`
		ChunksCut   int64 `json:"chunks_cut"`
		DedupHits   int64 `json:"dedup_hits"`
		DedupBytes  int64 `json:"dedup_bytes"`
		// ChunksPredicted are the chunks cut without the rolling hash,
		// because the bytes were a chunk the index knew to come next.
		ChunksPredicted int64 `json:"chunks_predicted"`
		BytesWritten    int64 `json:"bytes_written"`
		BytesRead       int64 `json:"bytes_read"`
		IOErrors        int64 `json:"io_errors"`
		// Syncs are the durability points run (fsync, the sync interval,
		// unmount); SyncErrors those that failed (a store or the index
		// could not sync: what they covered is retried by the next one).
		Syncs      int64 `json:"syncs"`
		SyncErrors int64 `json:"sync_errors"`
		// After an unclean shutdown: files whose chunks were checked,
		// chunks copied back into the tier that had lost them, and files
		// reverted to their last durable content (their newest chunks
		// were in no tier).
		RecoveryChecked  int64 `json:"recovery_checked"`
		RecoveryHealed   int64 `json:"recovery_healed"`
		RecoveryReverted int64 `json:"recovery_reverted"`
	} `json:"fs"`
	// IndexBackup is where the index's copy in each tier stands: its
	// generation and seq, the point in time it holds, the lag (the age of
	// the oldest point a tier lacks) and errors. Absent when it is off.
	IndexBackup *replica.Stats `json:"index_backup,omitempty"`
	// AutoGC is the background gc: its runs, the last one's result, and
	// the unreferenced bytes against its threshold at the last check.
	AutoGC AutoGCStats `json:"auto_gc"`
	Action string      `json:"action"`
	// FSID is the filesystem's id (the index header's).
	FSID string `json:"fsid"`
	// FUSEOps counts the FUSE requests answered, by kind ("read",
	// "lookup"…; only kinds seen), since the mount or reset-stats.
	FUSEOps map[string]FUSEOpStats `json:"fuse_ops"`
	// Health is healthy, or degraded with the problems (CheckHealth).
	Health Health `json:"health"`
	// Maintenance is the running or last action's report, without its
	// details (for the metrics; the JSON has it in `.dualstore/compare`).
	Maintenance dual.Report `json:"-"`
	// Started is when the filesystem was set up for the mount (for the
	// metrics, which want a start time that does not move).
	Started time.Time `json:"-"`
	// ReadOnly says the mount is read-only (Options.ReadOnly).
	ReadOnly bool `json:"read_only"`
	// Warnings are what is unsafe about the setup (Options.Warnings) and
	// what of it failed once mounted (FS.Warn); empty, not absent, when
	// nothing is.
	Warnings []string `json:"warnings"`
}

// Stats returns a snapshot for `.dualstore/stats` and `dualstore stats`.
func (f *FS) Stats(ctx context.Context) (Stats, error) {
	s := Stats{Stats: f.dm.Stats()}
	u, err := f.db.Usage(ctx)
	if err != nil {
		return s, err
	}
	s.Files, s.Dirs, s.LogicalBytes, s.UniqueChunks, s.UniqueBytes = u.Files, u.Dirs, u.LogicalBytes, u.UniqueChunks, u.UniqueBytes
	s.DedupRatio = 1
	if u.UniqueBytes > 0 {
		s.DedupRatio = float64(u.LogicalBytes) / float64(u.UniqueBytes)
	}
	v := f.vfs.Stats()
	s.Cache.Hits, s.Cache.Misses, s.Cache.Bytes = v.CacheHits, v.CacheMisses, v.CacheBytes
	s.FS.OpenFiles = v.OpenFiles
	s.FS.Nodes, s.FS.NodesPruned = f.nodes.len(), f.nodes.pruned.Load()
	s.FS.ChunksCut, s.FS.DedupHits, s.FS.DedupBytes = v.ChunksCut, v.DedupHits, v.DedupBytes
	s.FS.ChunksPredicted = v.ChunksPredicted
	s.FS.BytesWritten, s.FS.BytesRead, s.FS.IOErrors = v.BytesWritten, v.BytesRead, f.ioErrors.Load()
	s.FS.Syncs, s.FS.SyncErrors = v.Syncs, v.SyncErrors
	s.FS.RecoveryChecked, s.FS.RecoveryHealed, s.FS.RecoveryReverted = v.RecoveryChecked, v.RecoveryHealed, v.RecoveryReverted
	if f.opts.Backup != nil {
		b := f.opts.Backup()
		s.IndexBackup = &b
	}
	s.AutoGC = f.agc.snapshot()
	s.Action = strings.SplitN(f.ctl.status(), "\n", 2)[0]
	s.FSID = f.db.Header().FSID
	s.Started = f.start
	s.FUSEOps = f.ops.snapshot()
	s.Maintenance = f.CompareReport()
	s.Maintenance.Details = nil
	s.ReadOnly = f.opts.ReadOnly
	s.Warnings = append([]string{}, f.opts.Warnings...)
	f.warnMu.Lock()
	s.Warnings = append(s.Warnings, f.warnings...)
	f.warnMu.Unlock()
	s.Health = CheckHealth(s, f.opts.Health)
	return s, nil
}

// CompareReport returns the running or last comparison/repair.
func (f *FS) CompareReport() dual.Report {
	r, _ := f.compareReport()
	return r
}

// compareReport is CompareReport, and whether the background gc started
// the action.
func (f *FS) compareReport() (r dual.Report, auto bool) {
	f.ctl.mu.Lock()
	s, auto := f.ctl.scrub, f.ctl.auto != ""
	if auto && !s.Running() {
		// A finished background gc does not hide the last compare,
		// repair, migrate or gc a command started (its list of
		// differences above all), nor the last comparison kept in the
		// index; the gc's own result is in auto_gc.
		s, auto = f.ctl.manual, false
		if s == nil && f.dm.LastCompare() == nil {
			s, auto = f.ctl.scrub, true // nothing else to show
		}
	}
	f.ctl.mu.Unlock()
	if s == nil {
		// Nothing a command started in this mount: the last comparison
		// kept in the index (an earlier mount's, or an offline one).
		if r := f.dm.LastCompare(); r != nil {
			return *r, false
		}
		return dual.Report{State: "idle", Action: "compare", Details: []dual.Detail{}}, false
	}
	return s.Report(), auto
}

// compareDoc is the `.dualstore/compare` document: the report, marked
// when the background gc started the action, and when it is the
// counts-only form (see countsOnly).
type compareDoc struct {
	dual.Report
	Automatic bool `json:"automatic,omitempty"`
	Redacted  bool `json:"redacted,omitempty"`
}

// render produces the snapshot a control file shows at open, as the
// caller of ctx may see it (see seesNames): every open renders its own,
// and direct I/O keeps one reader's from being served to another.
func (f *FS) render(ctx context.Context, ino uint64) ([]byte, error) {
	switch ino {
	case ctlStatsIno:
		s, err := f.Stats(ctx)
		if err != nil {
			return nil, err
		}
		return jsonLine(statsFor(ctx, s))
	case ctlCompareIno:
		r, auto := f.compareReport()
		return jsonLine(compareFor(ctx, r, auto))
	case ctlConfigIno:
		if f.opts.Config != nil {
			return f.opts.Config(), nil
		}
		return []byte("{}\n"), nil
	case ctlCtlIno:
		return []byte(f.ctl.status()), nil
	}
	return nil, nil
}

func jsonLine(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (f *FS) controlAttr(ino uint64, mode uint32) fuse.Attr {
	t := f.start
	a := fuse.Attr{Ino: ino, Mode: mode, Nlink: 1}
	if mode&syscall.S_IFDIR != 0 {
		a.Nlink = 2
	}
	a.SetTimes(&t, &t, &t)
	a.Uid, a.Gid = uint32(syscall.Getuid()), uint32(syscall.Getgid())
	return a
}

// controlDir returns the inode of `.dualstore`.
func (f *FS) controlDir(ctx context.Context, root *node) *gofs.Inode {
	return root.NewInode(ctx, &ctlDir{fs: f}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ctlIno})
}

// ctlDir is the `.dualstore` directory: fixed contents, nothing can be
// created, removed or renamed in it.
type ctlDir struct {
	gofs.Inode
	fs *FS
}

var (
	_ gofs.NodeLookuper   = (*ctlDir)(nil)
	_ gofs.NodeReaddirer  = (*ctlDir)(nil)
	_ gofs.NodeGetattrer  = (*ctlDir)(nil)
	_ gofs.NodeCreater    = (*ctlDir)(nil)
	_ gofs.NodeMkdirer    = (*ctlDir)(nil)
	_ gofs.NodeUnlinker   = (*ctlDir)(nil)
	_ gofs.NodeRmdirer    = (*ctlDir)(nil)
	_ gofs.NodeRenamer    = (*ctlDir)(nil)
	_ gofs.NodeSetattrer  = (*ctlDir)(nil)
	_ gofs.NodeSymlinker  = (*ctlDir)(nil)
	_ gofs.NodeMknoder    = (*ctlDir)(nil)
	_ gofs.NodeLinker     = (*ctlDir)(nil)
	_ gofs.NodeSetxattrer = (*ctlDir)(nil)
)

func (d *ctlDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == "chunks" {
		out.Attr = d.fs.controlAttr(ctlChunksIno, syscall.S_IFDIR|0555)
		return d.NewInode(ctx, &chunksDir{ctlDir{fs: d.fs}}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ctlChunksIno}), 0
	}
	for _, e := range ctlEntries {
		if e.name == name {
			out.Attr = d.fs.controlAttr(e.ino, syscall.S_IFREG|e.mode)
			return d.NewInode(ctx, &ctlFile{fs: d.fs, entry: e}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: e.ino}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *ctlDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents := []fuse.DirEntry{{Name: "chunks", Ino: ctlChunksIno, Mode: syscall.S_IFDIR}}
	for _, e := range ctlEntries {
		ents = append(ents, fuse.DirEntry{Name: e.name, Ino: e.ino, Mode: syscall.S_IFREG})
	}
	return gofs.NewListDirStream(ents), 0
}

func (d *ctlDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = d.fs.controlAttr(ctlIno, syscall.S_IFDIR|0555)
	return 0
}

func (d *ctlDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}
func (d *ctlDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}
func (d *ctlDir) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }
func (d *ctlDir) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EPERM }
func (d *ctlDir) Rename(ctx context.Context, name string, np gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}
func (d *ctlDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EPERM
}
func (d *ctlDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}
func (d *ctlDir) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}
func (d *ctlDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}
func (d *ctlDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EPERM
}

// ctlFile is one control file. Each open takes a fresh snapshot, and
// direct I/O keeps the kernel from caching it or trusting its size.
type ctlFile struct {
	gofs.Inode
	fs    *FS
	entry ctlEntry
}

var (
	_ gofs.NodeOpener     = (*ctlFile)(nil)
	_ gofs.NodeGetattrer  = (*ctlFile)(nil)
	_ gofs.NodeSetattrer  = (*ctlFile)(nil)
	_ gofs.NodeSetxattrer = (*ctlFile)(nil)
)

func (c *ctlFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = c.fs.controlAttr(c.entry.ino, syscall.S_IFREG|c.entry.mode)
	return 0
}

// Setattr accepts only the truncation that `echo cmd > ctl` does.
func (c *ctlFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if c.entry.ino != ctlCtlIno || in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_MTIME|fuse.FATTR_MTIME_NOW|fuse.FATTR_ATIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_CTIME) != 0 {
		return syscall.EPERM
	}
	out.Attr = c.fs.controlAttr(c.entry.ino, syscall.S_IFREG|c.entry.mode)
	return 0
}

func (c *ctlFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EPERM
}

func (c *ctlFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY && c.entry.ino != ctlCtlIno {
		// Root passes the kernel's permission check; read-only means
		// read-only for root too.
		return nil, 0, syscall.EACCES
	}
	if c.entry.ino == ctlCtlIno && !seesNames(ctx) {
		// Its mode (0600, the owner's) already keeps others out; its
		// status names the path of the last command.
		return nil, 0, syscall.EACCES
	}
	data, err := c.fs.render(ctx, c.entry.ino)
	if err != nil {
		return nil, 0, c.fs.fail("open "+c.entry.name, c.entry.ino, err)
	}
	return &ctlHandle{fs: c.fs, data: data, ino: c.entry.ino}, fuse.FOPEN_DIRECT_IO, 0
}

type ctlHandle struct {
	fs   *FS
	data []byte
	ino  uint64
}

var (
	_ gofs.FileReader  = (*ctlHandle)(nil)
	_ gofs.FileWriter  = (*ctlHandle)(nil)
	_ gofs.FileIoctler = (*ctlHandle)(nil)
)

// CtlIoctl is the ioctl that carries a control command on a descriptor
// of `ctl` opened read-only: _IOW('D', 1, [maxCommandLen]byte), the
// command NUL-padded. It is how commands reach a read-only mount, where
// the kernel refuses every write to ctl with EROFS (FUSE passes on an
// ioctl whose size its number encodes, on any descriptor).
const CtlIoctl = 1<<30 | maxCommandLen<<16 | 'D'<<8 | 1

// Ioctl runs the command CtlIoctl carries, as a write of it would.
// Anything else is ENOTTY.
func (h *ctlHandle) Ioctl(ctx context.Context, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	if h.ino != ctlCtlIno || cmd != CtlIoctl {
		return 0, syscall.ENOTTY
	}
	line, _, _ := bytes.Cut(input, []byte{0})
	_, errno := h.Write(ctx, line, 0)
	return 0, errno
}

func (h *ctlHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}

// Write runs one command per write; garbage is EINVAL and changes nothing.
func (h *ctlHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	cmd, err := parseCommand(data)
	if err != nil {
		h.fs.ctl.mu.Lock()
		h.fs.ctl.last = "error: " + err.Error()
		h.fs.ctl.mu.Unlock()
		h.fs.log.Warn().Err(err).Msg("rejected control command")
		return 0, syscall.EINVAL
	}
	if err := h.fs.ctl.exec(ctx, cmd); err != nil {
		return 0, toErrno(err)
	}
	return uint32(len(data)), 0
}
