// Package local is the chunk store kept in a directory on a local
// filesystem: `<root>/<first 4 hex of id>/<64 hex id>.chunk`, each chunk
// written to a temp file and renamed into place, optionally
// zstd-compressed and optionally fsynced.
//
// Invariants: a file named `<id>.chunk` is always a complete chunk (rename
// is atomic; a crash leaves only `.tmp-*` files, which are never read as
// chunks). A chunk file is a zstd frame exactly when
// it starts with the zstd magic number, so one store can hold raw and
// compressed chunks side by side and the Compress option can change between
// runs. Paths are built only from ID.String() (64 hex digits), so no id can
// name a file outside the root.
//
// Leftover temp files are found without reading every shard at each open,
// which for a store of millions of chunks would take minutes: New leaves a
// marker file (`.open`) in the root and a clean Close removes it. A marker
// found by New means the last user did not close the store (a crash, a
// kill -9, a power loss), and only then does a background sweep read the
// shards and remove the temp files that are not this instance's own (each
// instance names its temp files with a random token). The marker is also
// locked (flock) while the store is open: only one user at a time, in any
// process, may open a root.
//
// Durability: with Options.Fsync every Put syncs its chunk file and shard
// before it returns. Without it, Sync makes every chunk put so far durable
// in one call, how a file's fsync covers all its chunks: one syncfs(2) of
// the store's filesystem where that reaches the storage, else (FUSE, 9p,
// CIFS/SMB, which return success from syncfs while the data still sits in
// a daemon or on a server; see noSyncfs) an fsync of each chunk file and
// directory written since the last Sync. New picks the mode from the
// filesystem's type (Options.SyncMode "auto"), and SyncMode reports it. A
// clean Close syncs what is left, so the next user trusts the chunks it
// finds; after an unclean one, a Put that finds its chunk in place counts
// as a write for the next Sync.
//
// The casync layout (Options.Layout) is what desync v0.9.6 reads and
// writes for a local store: `<root>/<4 hex>/<64 hex id>.cacnk`, every file
// a zstd frame (even where that is no smaller), so that desync verify,
// extract, chunk-server and prune work on the store as it is. desync
// ignores what else the store keeps (it walks the whole root but takes
// only files named `<64 hex>.cacnk` for chunks, and deletes only its own
// `.tmp-cacnk*` temp files), so the marker, the temp files and _meta stay
// where they are in the dualstore layout; a meta object may not be named
// like a chunk or a desync temp file there, and the sweep never removes a
// desync temp file.
//
// Meta objects (stores.MetaStore: the index backup) are the files
// `<root>/_meta/<name>`, each '/' of the name a subdirectory. `_meta` is no
// shard, so List never reports them and no chunk's path reaches them.
// PutMeta is durable when it returns whatever Fsync says: a temp file
// synced, renamed into place, and its directory synced (and the parents of
// the directories it made). Meta temp files carry "meta~" in their names,
// which no meta name can hold, so the sweep removes them and never an
// object. As in any filesystem, one name cannot be both an object and the
// directory of others ("a" and "a/b"); DeleteMeta removes the directories
// it empties, so a name that was a directory can become an object.
//
// Only a regular file is a chunk file or a meta object: anything else in
// its place (a FIFO, a device, a directory, a symbolic link) is never
// opened or waited on, and is ErrCorrupt (openRegular). Every read is
// bounded by its chunk's stores.Bound: a file larger than any stored form
// of the chunk is ErrCorrupt unread, and a frame never decodes past the
// chunk's size (see the stores README, "Bounded reads").
//
// A call ends when its context does, even if the filesystem hangs (a dead
// NFS server, a wedged disk, a FUSE mount whose server stalls): system calls
// cannot be interrupted, so each call's file operations run on their own
// goroutine, which is abandoned at the deadline and finishes, or not, in the
// background. An abandoned operation never touches the caller's buffers, the
// encoder, the decoder or the store's lock, and at most maxAbandoned of them
// may be outstanding per store; past that, calls fail at once rather than
// pin another thread in the hung filesystem.
package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/internal/zchunk"
)

const (
	// chunkExt ends every chunk file name.
	chunkExt = ".chunk"
	// tmpPrefix starts every temp file name; List and Get never look at
	// such files. The instance's token follows it (see sweep).
	tmpPrefix = ".tmp-"
	// openMarker is the file in the root that exists while the store is
	// open (see the package comment).
	openMarker = ".open"
	// shardLen is how many hex digits of the id name its shard directory:
	// 65536 shards keep directories small up to billions of chunks, and
	// match casync's layout.
	shardLen = 4
	// dirPerm keeps chunk data private to the user running the mount (the
	// chunks are the content of their files); os.CreateTemp makes the files
	// 0600 for the same reason.
	dirPerm = 0o700
	// maxAbandoned bounds the file operations left blocked in a hung
	// filesystem after their calls gave up; each pins an OS thread.
	maxAbandoned = 16
)

// zstdMagic starts every zstd frame.
const zstdMagic = zchunk.Magic

// isZstd reports whether b starts like a zstd frame.
func isZstd(b []byte) bool { return zchunk.IsFrame(b) }

// Options configures a local store.
type Options struct {
	// Root is the directory holding the chunks. Required.
	Root string
	// Name is the store's name in logs and stats; default: Root.
	Name string
	// Compress stores chunks zstd-compressed when that makes them smaller.
	// Reading does not depend on it: compressed chunks are recognised by
	// their content.
	Compress bool
	// Fsync makes Put sync each chunk file and its directory before it
	// returns, so a chunk survives power loss as soon as Put succeeds.
	// Without it, Sync makes everything put so far durable in one call.
	Fsync bool
	// CreateRoot creates Root (and its parents) when it does not exist,
	// instead of failing.
	CreateRoot bool
	// SyncMode is how Sync makes chunks durable: SyncModeSyncfs (one
	// syncfs(2) of the store's filesystem), SyncModeFsync (an fsync of
	// each chunk file and directory written since the last Sync), or
	// SyncModeAuto, the default (""): syncfs unless the filesystem is one
	// that does not pass syncfs on (FUSE, 9p, CIFS/SMB; see noSyncfs).
	SyncMode string
	// Log receives the store's debug messages (the sync mode it chose,
	// and why). The zero Logger discards them.
	Log zerolog.Logger
	// Layout is how chunk files are named and encoded: LayoutDualstore
	// (the default, "") or LayoutCasync, what desync and casync read and
	// write (every chunk a zstd frame in `<id>.cacnk`, whatever Compress
	// says). A store keeps one layout: the other's chunk files are not
	// its chunks.
	Layout string
}

// Validate reports whether the options can be used, without touching the
// filesystem.
func (o Options) Validate() error {
	if o.Root == "" {
		return errors.New("local store: root directory not set")
	}
	if strings.ContainsRune(o.Root, 0) {
		return fmt.Errorf("local store: root %q contains a NUL byte", o.Root)
	}
	switch o.SyncMode {
	case "", SyncModeAuto, SyncModeSyncfs, SyncModeFsync:
	default:
		return fmt.Errorf("local store: sync mode %q: want %s, %s or %s", o.SyncMode, SyncModeAuto, SyncModeSyncfs, SyncModeFsync)
	}
	return validLayout(o.Layout)
}

// Local is a chunk store in a local directory. Safe for concurrent use.
type Local struct {
	root  string
	name  string
	opts  Options
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	rootF *os.File // open for Sync's syncfs
	// syncMode is the mode Sync uses, SyncModeSyncfs or SyncModeFsync:
	// Options.SyncMode with auto resolved.
	syncMode string
	// pending is what Sync must fsync in fsync mode; dirty tells, in
	// syncfs mode, whether anything was written since the last Sync (so
	// that Close syncs only when it has to).
	pending pending
	dirty   atomic.Bool
	// unclean is set when the last user did not close the store: the
	// chunks it left may not be durable, so in fsync mode a Put that
	// finds its chunk in place tracks it as if it had written it.
	unclean bool
	// marker is the open marker, locked (flock) while the store is open.
	marker *os.File
	// casync is set for LayoutCasync; ext ends the chunk files' names.
	casync bool
	ext    string

	// mu is held for reading by every operation and for writing by Close,
	// so Close never frees the encoder or decoder under a running call.
	mu     sync.RWMutex
	closed bool

	// abandoned counts file operations still blocked after their call
	// returned at its context's end.
	abandoned atomic.Int32

	// tmpPrefix is tmpPrefix + this instance's token + "-": the sweep
	// spares files that start with it.
	tmpPrefix string
	// sweepStop ends the sweep of an unclean store's leftovers;
	// sweepDone is closed when it has returned (at once if none ran),
	// and swept tells whether it went through every shard.
	sweepStop context.CancelFunc
	sweepDone chan struct{}
	swept     atomic.Bool
}

var (
	_ stores.Store  = (*Local)(nil)
	_ stores.Lister = (*Local)(nil)
	_ stores.Syncer = (*Local)(nil)
)

// New opens (or with CreateRoot, creates) the store at opts.Root, and
// removes the temp files a crash may have left in it.
func New(opts Options) (*Local, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("local %s: %w", opts.Root, err)
	}
	if err := prepareRoot(root, opts.CreateRoot); err != nil {
		return nil, err
	}
	marker, unclean, err := markOpen(root)
	if err != nil {
		return nil, err
	}
	rootF, err := os.Open(root)
	if err != nil {
		marker.Close()
		return nil, fmt.Errorf("local %s: %w", root, err)
	}
	// One encoder and one decoder (zchunk) serve every call. The decoder
	// is bounded: a frame never decodes past its chunk's bound.
	casync := opts.Layout == LayoutCasync
	enc, err := zchunk.NewEncoder(casync)
	if err != nil {
		rootF.Close()
		marker.Close()
		return nil, fmt.Errorf("local %s: zstd encoder: %w", root, err)
	}
	dec, err := zchunk.NewDecoder()
	if err != nil {
		enc.Close()
		rootF.Close()
		marker.Close()
		return nil, fmt.Errorf("local %s: zstd decoder: %w", root, err)
	}
	name := opts.Name
	if name == "" {
		name = root
	}
	magic, magicErr := fsMagic(rootF)
	mode, why := resolveSyncMode(opts.SyncMode, magic, magicErr == nil)
	opts.Log.Debug().Str("component", "local").Str("store", name).Str("root", root).
		Str("sync_mode", mode).Str("why", why).Str("fs_type", fmt.Sprintf("%#x", magic)).AnErr("statfs", magicErr).
		Msg("sync mode")
	var token [8]byte
	rand.Read(token[:])
	ext := chunkExt
	if casync {
		ext = casyncExt
	}
	l := &Local{root: root, name: name, opts: opts, enc: enc, dec: dec, rootF: rootF, marker: marker,
		casync: casync, ext: ext, syncMode: mode, unclean: unclean, pending: pending{limit: maxPending},
		tmpPrefix: tmpPrefix + hex.EncodeToString(token[:]) + "-", sweepDone: make(chan struct{})}
	if !unclean {
		l.swept.Store(true)
		close(l.sweepDone)
		return l, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	l.sweepStop = stop
	go func() {
		defer close(l.sweepDone)
		if sweepTemps(ctx, root, l.tmpPrefix) == nil {
			l.swept.Store(true)
		}
	}()
	return l, nil
}

// markOpen creates the root's open marker and locks it, and reports
// whether it was there already: whether the store's last user did not
// close it. The lock (flock, released by the kernel when a process dies)
// keeps a second user out: two filesystems sharing a store would delete
// each other's chunks in gc, and each sweep would remove the other's
// writes in flight. Where the filesystem has no locks, the store opens
// unlocked.
func markOpen(root string) (_ *os.File, unclean bool, _ error) {
	p := filepath.Join(root, openMarker)
	for attempt := 0; ; attempt++ {
		existed := false
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Close()
		} else if errors.Is(err, iofs.ErrExist) {
			existed = true
		} else {
			return nil, false, fmt.Errorf("local %s: open marker: %w", root, err)
		}
		// The lock is held on a read-only descriptor: a file open for
		// writing would keep the store's filesystem from being remounted
		// read-only while the store is open.
		f, err := os.Open(p)
		if errors.Is(err, iofs.ErrNotExist) && attempt < 3 {
			continue // its holder closed the store meanwhile
		}
		if err != nil {
			return nil, false, fmt.Errorf("local %s: open marker: %w", root, err)
		}
		if err := flockMarker(f); err != nil {
			holder, _ := io.ReadAll(io.LimitReader(f, 200))
			f.Close()
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, false, fmt.Errorf("local %s: the store is in use by %s; a store belongs to one filesystem, mounted once", root, who)
			}
			return nil, false, fmt.Errorf("local %s: lock the open marker: %w", root, err)
		}
		// The holder may have closed the store, removing the marker,
		// between our open and our lock: then we hold a lock on a file
		// nobody else can see, and must start over.
		if fi, err := f.Stat(); err == nil {
			if pi, perr := os.Stat(p); perr != nil || !os.SameFile(fi, pi) {
				f.Close()
				if attempt < 3 {
					continue
				}
				return nil, false, fmt.Errorf("local %s: open marker keeps changing: is another process opening the store?", root)
			}
		}
		// Who holds it, for the error a second user gets (best effort).
		_ = os.WriteFile(p, fmt.Appendf(nil, "dualstore pid %d\n", os.Getpid()), 0o600)
		if !existed {
			// Lost in a power failure, the marker could not tell the next
			// open about the temp files this run leaves.
			if err := syncDir(root); err != nil {
				f.Close()
				return nil, false, fmt.Errorf("local %s: open marker: %w", root, err)
			}
		}
		return f, existed, nil
	}
}

// flockMarker takes the marker's lock without waiting. A filesystem
// without flock counts as locked.
func flockMarker(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return nil
	}
	return err
}

// SweepDone is closed once the sweep of an uncleanly closed store's
// leftover temp files has ended (at once if the store was closed cleanly).
func (l *Local) SweepDone() <-chan struct{} { return l.sweepDone }

// prepareRoot checks that root is a writable directory, creating it if
// allowed, with errors that name it: this is where a typo in a config file
// surfaces.
func prepareRoot(root string, create bool) error {
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, iofs.ErrNotExist) && create:
		if err := os.MkdirAll(root, dirPerm); err != nil {
			return fmt.Errorf("local %s: create root directory: %w", root, err)
		}
	case errors.Is(err, iofs.ErrNotExist):
		return fmt.Errorf("local %s: root directory does not exist (create it, or set CreateRoot): %w", root, err)
	case err != nil:
		return fmt.Errorf("local %s: root directory: %w", root, err)
	case !fi.IsDir():
		return fmt.Errorf("local %s: root is not a directory", root)
	}
	probe, err := os.CreateTemp(root, tmpPrefix+"probe-*")
	if err != nil {
		return fmt.Errorf("local %s: root directory is not writable: %w", root, err)
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return fmt.Errorf("local %s: root directory: %w", root, err)
	}
	return nil
}

// isShard reports whether name is a shard directory's name.
func isShard(name string) bool {
	if len(name) != shardLen {
		return false
	}
	for _, c := range []byte(name) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// sweepTemps removes the temp files in root, its shards and the meta tree
// whose names do not start with keep: the leftovers of Puts and PutMetas
// that a crash interrupted. It stops, with ctx's error, when ctx ends. It
// runs beside the store's own calls, whose temp files start with keep.
func sweepTemps(ctx context.Context, root, keep string) error {
	sweepDir := func(dir string) error {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, tmpPrefix) && !strings.HasPrefix(n, keep) && !strings.HasPrefix(n, desyncTmpPrefix) {
				if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
					return err
				}
			}
		}
		return nil
	}
	if err := sweepDir(root); err != nil {
		return err
	}
	shards, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, sh := range shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sh.IsDir() && isShard(sh.Name()) {
			if err := sweepDir(filepath.Join(root, sh.Name())); err != nil {
				return err
			}
		}
	}
	return sweepMetaTemps(ctx, filepath.Join(root, metaDir), keep)
}

// sweepMetaTemps is sweepTemps for the meta tree, where a temp file is
// told from an object by its metaTempMark (an object may be named
// ".tmp-…").
func sweepMetaTemps(ctx context.Context, metaRoot, keep string) error {
	return filepath.WalkDir(metaRoot, func(p string, d iofs.DirEntry, err error) error {
		switch {
		case errors.Is(err, iofs.ErrNotExist):
			return nil // no meta tree, or a directory DeleteMeta removed
		case err != nil:
			return err
		case d.IsDir():
			return ctx.Err()
		}
		if n := d.Name(); isMetaTemp(n) && !strings.HasPrefix(n, keep) {
			if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// Name returns the configured name, or the root directory.
func (l *Local) Name() string { return l.name }

// Type returns "local".
func (l *Local) Type() string { return "local" }

// Root returns the absolute path of the store's directory.
func (l *Local) Root() string { return l.root }

// SyncMode returns how Sync makes chunks durable: SyncModeSyncfs or
// SyncModeFsync (Options.SyncMode, with auto resolved for the store's
// filesystem). With Options.Fsync set, Sync has nothing to do either way.
func (l *Local) SyncMode() string { return l.syncMode }

// shardDir returns the directory holding id.
func (l *Local) shardDir(id stores.ID) string {
	return filepath.Join(l.root, id.String()[:shardLen])
}

// path returns the file holding id.
func (l *Local) path(id stores.ID) string {
	return filepath.Join(l.shardDir(id), id.String()+l.ext)
}

// begin takes the read lock for an operation and reports whether it may
// run. When it returns nil the caller must call l.mu.RUnlock.
func (l *Local) begin(ctx context.Context, op string, id *stores.ID) error {
	err := l.enter(ctx)
	if err == nil {
		return nil
	}
	if id == nil {
		return fmt.Errorf("local %s: %s: %w", l.root, op, err)
	}
	return fmt.Errorf("local %s: %s %s: %w", l.root, op, id, err)
}

// enter takes the read lock for an operation and returns why it may not
// run (the store is closed, ctx is done), releasing the lock then. When it
// returns nil the caller must call l.mu.RUnlock.
func (l *Local) enter(ctx context.Context) error {
	l.mu.RLock()
	err := ctx.Err()
	if l.closed {
		err = stores.ErrClosed
	}
	if err != nil {
		l.mu.RUnlock()
	}
	return err
}

// errHung is returned, without touching the filesystem, while
// maxAbandoned earlier operations are still blocked in it.
var errHung = errors.New("earlier calls are still blocked in the filesystem (it does not answer)")

// fsCall runs fn, a sequence of blocking file operations, and returns its
// result, or ctx's error as soon as ctx ends (see the package comment).
// fn must use nothing but its own variables and the filesystem.
func fsCall[T any](l *Local, ctx context.Context, fn func() (T, error)) (T, error) {
	return fsCallFlag(l, ctx, nil, fn)
}

// The states of a write's handshake with its caller (see fsCallFlag),
// which decides whether the write may still rename its file into place.
const (
	writeRunning    int32 = iota // neither side has decided yet
	writeCommitting              // the write is renaming its file into place
	writeAbandoned               // the caller gave up first: the write drops its file
)

// commitWait is how long a Put whose context ends while its write is
// renaming the file into place waits for the rename, so that it reports
// what happened and not a failure that left the chunk stored. A rename
// that takes longer is one into a filesystem that hangs: the call then
// returns like any other, and the chunk may yet appear (whole).
const commitWait = time.Second

// fsCallFlag is fsCall for a write that must not take effect once its
// caller was told it failed. state (if not nil) is the write's handshake,
// writeRunning at first: when ctx ends, the caller moves it to
// writeAbandoned and returns ctx's error, and the write, which moves it to
// writeCommitting just before its rename, then drops its file instead. If
// the write got there first, the caller waits (up to commitWait) for the
// write's own result.
func fsCallFlag[T any](l *Local, ctx context.Context, state *atomic.Int32, fn func() (T, error)) (T, error) {
	var zero T
	if ctx.Done() == nil {
		return fn() // cannot be cancelled: no goroutine needed
	}
	if l.abandoned.Load() >= maxAbandoned {
		return zero, fmt.Errorf("%d %w", maxAbandoned, errHung)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // finished meanwhile: keep the real answer
			return r.v, r.err
		default:
		}
		err := ctx.Err()
		if state != nil && !state.CompareAndSwap(writeRunning, writeAbandoned) {
			// The write is renaming its file into place: its result
			// says whether the chunk is stored.
			t := time.NewTimer(commitWait)
			select {
			case r := <-done:
				t.Stop()
				return r.v, r.err
			case <-t.C:
			}
			err = fmt.Errorf("%w (the chunk file was being renamed into place and may yet appear)", err)
		}
		l.abandoned.Add(1)
		go func() {
			<-done
			l.abandoned.Add(-1)
		}()
		return zero, err
	}
}

// fsDo is fsCall for operations that return only an error.
func fsDo(l *Local, ctx context.Context, fn func() error) error {
	_, err := fsCall(l, ctx, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// Get reads the chunk, decompressing it if it is stored compressed. Data
// that does not decode is reported as ErrCorrupt, and so is, in the casync
// layout, a file that is no zstd frame (desync would refuse it, so the
// tier's fallback and heal must replace it); a raw file of the dualstore
// layout is returned as it is. Checking the bytes against the id is the
// caller's job.
//
// Reads are bounded (stores.BoundOf): a chunk file that is no regular
// file (a FIFO, a device, a directory, a symbolic link) or is larger than
// the zstd bound of the chunk's size (its expected size, else the max) is
// ErrCorrupt without being read, and so is a chunk that is not of the
// expected size or decodes past the bound: a damaged store costs neither
// memory nor a blocked call.
func (l *Local) Get(ctx context.Context, id stores.ID) ([]byte, error) {
	if err := l.begin(ctx, "get", &id); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	p := l.path(id)
	b := stores.BoundOf(ctx, id)
	limit := b.StoredLimit()
	// Where chunks are stored as frames (the casync layout, compression),
	// the file is read into a recycled buffer (readBuf), given back once
	// the read has returned: after an error, an abandoned read may still
	// be writing into it. A raw chunk read there is copied out of it; a
	// store of raw chunks reads each into a buffer of its own, returned.
	var rb *readBuf
	if l.casync || l.opts.Compress {
		rb = new(readBuf)
	}
	data, err := fsCall(l, ctx, func() ([]byte, error) { return readChunk(p, limit, rb) })
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("local %s: get %s: %w", l.root, id, stores.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("local %s: get %s: %w", l.root, id, err)
	}
	defer rb.release()
	if !isZstd(data) {
		if l.casync {
			return nil, fmt.Errorf("local %s: get %s: %s: %w: not a zstd frame", l.root, id, p, stores.ErrCorrupt)
		}
		if err := b.Check(int64(len(data))); err != nil {
			return nil, fmt.Errorf("local %s: get %s: %s: %w", l.root, id, p, err)
		}
		if rb != nil {
			data = bytes.Clone(data)
		}
		return data, nil
	}
	out, err := zchunk.Decode(l.dec, data, b)
	if err != nil {
		return nil, fmt.Errorf("local %s: get %s: %s: %w", l.root, id, p, err)
	}
	return out, nil
}

// encode returns what to write for data, and whether that is a frame
// in rb (which the caller releases once the frame is written). In the
// casync layout it is always a zstd frame. Otherwise data that starts
// like a zstd frame is always compressed, even with Compress off, so that
// a file starting with the magic number is always a frame; other data is
// compressed only when asked and only if that makes it smaller.
func (l *Local) encode(data []byte, rb *readBuf) (payload []byte, inBuf bool) {
	if !l.casync && !isZstd(data) && (!l.opts.Compress || len(data) == 0) {
		return data, false
	}
	// Room for the frame of incompressible data (a chunk of random bytes
	// is stored blocks): a smaller buffer grows, and copies, once or twice
	// per chunk, a twentieth of a casync store's write CPU. The buffer is
	// recycled (see readBuf): a fresh one is zeroed by the runtime first.
	dst := rb.bytes(int(stores.CompressedBound(int64(len(data)))))[:0]
	comp := l.enc.EncodeAll(data, dst)
	if !l.casync && !isZstd(data) && len(comp) >= len(data) {
		return data, false
	}
	return comp, true
}

// Put writes the chunk unless the store holds it already: to a temp file
// in the shard directory, renamed into place so no reader ever sees a
// partial chunk.
func (l *Local) Put(ctx context.Context, id stores.ID, data []byte) error {
	if err := l.begin(ctx, "put", &id); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	if err := l.put(ctx, id, data); err != nil {
		return fmt.Errorf("local %s: put %s: %w", l.root, id, err)
	}
	return nil
}

func (l *Local) put(ctx context.Context, id stores.ID, data []byte) error {
	// The frame's buffer goes back to the pool from the filesystem call
	// once the frame is written: that goroutine is its last user, whether
	// or not this call gave up waiting for it. (A call fsCallFlag refuses
	// to start leaves the buffer to the garbage collector.)
	eb := new(readBuf)
	payload, framed := l.encode(data, eb)
	if !framed {
		eb.release()
		eb = nil
	}
	if ctx.Done() != nil && !stores.ImmutableData(ctx) && len(payload) > 0 && len(data) > 0 && &payload[0] == &data[0] {
		// The write may outlive this call (abandoned at the deadline), and
		// the caller may reuse data as soon as Put returns: the goroutine
		// must not read the caller's memory after that (a data race, even
		// if the result were thrown away). Chunk bytes the caller never
		// modifies (stores.WithImmutableData) need no copy.
		payload = bytes.Clone(payload)
	}
	// The check for a copy in place and the write are one call on the
	// filesystem (one goroutine, see fsCall): a small chunk costs little
	// more than its handoffs. An abandoned write is never renamed into
	// place: the caller was told it failed.
	final := l.path(id)
	var state atomic.Int32 // writeRunning
	_, err := fsCallFlag(l, ctx, &state, func() (struct{}, error) {
		defer eb.release()
		if fi, err := os.Lstat(final); err == nil {
			if intact(fi, len(data), payload, l.casync, framed) {
				if !l.unclean {
					return struct{}{}, nil // held already
				}
				// Held already, but maybe written and not yet synced by
				// the user that did not close the store.
				if l.opts.Fsync || l.syncMode == SyncModeFsync && l.pending.full() {
					return struct{}{}, syncChunk(final, l.shardDir(id), l.root)
				}
				l.wrote(final, l.shardDir(id), l.root)
				return struct{}{}, nil
			}
			// A copy of the wrong size, which a power loss leaves behind
			// (the rename was durable, the bytes were not): replaced,
			// or writing the chunk again would never bring it back.
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return struct{}{}, err
		}
		return struct{}{}, l.write(id, payload, &state)
	})
	return err
}

// intact reports whether a chunk file of fi's size can be a whole copy of
// a chunk of n bytes whose stored form is payload: raw (n bytes, not in
// the casync layout, where every chunk is a frame) or as this store
// compresses it now (the encoder is deterministic), with or without the
// frame checksum (zchunk.NewEncoder: written before, and by desync).
// Anything else is rewritten: a copy a power loss left short, or one
// compressed by other settings or by desync (a harmless extra write).
func intact(fi iofs.FileInfo, n int, payload []byte, casync, framed bool) bool {
	if !fi.Mode().IsRegular() {
		return false // a FIFO, a directory… in its place: replaced
	}
	size := fi.Size()
	return !casync && size == int64(n) || size == int64(len(payload)) ||
		framed && size == int64(len(payload))+zchunk.ChecksumSize
}

// write puts payload in place through a temp file. It runs on fsCall's
// goroutine: it uses only paths, options and the filesystem. If the caller
// has given up (state, see fsCallFlag) by the time the bytes are written,
// the temp file is dropped instead of renamed.
func (l *Local) write(id stores.ID, payload []byte, state *atomic.Int32) error {
	final := l.path(id)
	dir := l.shardDir(id)
	pattern := l.tmpPrefix + id.String() + "-*"
	// A write syncs itself with Fsync set, and in fsync mode once the
	// set Sync must fsync is full: a store written for long without a
	// Sync would otherwise grow it without bound.
	syncNow := l.opts.Fsync || l.syncMode == SyncModeFsync && l.pending.full()
	// Most shards exist once a store has some thousands of chunks: try the
	// temp file first and create the shard only when it is missing, rather
	// than a mkdir(2) (which locks the store's root) for every chunk.
	tmp, err := os.CreateTemp(dir, pattern)
	if errors.Is(err, iofs.ErrNotExist) {
		if err := os.Mkdir(dir, dirPerm); err == nil {
			// A new shard's entry in the root must be durable too,
			// whether or not this write gets through.
			if !syncNow {
				l.wrote("", l.root)
			} else if err := syncDir(l.root); err != nil {
				return err
			}
		} else if !errors.Is(err, iofs.ErrExist) {
			return err
		}
		tmp, err = os.CreateTemp(dir, pattern)
	}
	if err != nil {
		return err
	}
	if err := placeTemp(tmp, payload, syncNow, state, final); err != nil {
		return err
	}
	if syncNow {
		return syncDir(dir)
	}
	l.wrote(final, dir)
	return nil
}

// placeTemp writes data into the new temp file tmp, makes it durable
// (sync) or starts its writeback (a big one), closes it and renames it to
// final, unless its caller gave up first (state, see fsCallFlag): whoever
// moves state first decides, the caller, which then reports a failure,
// or this write, whose rename then decides what the call reports. On any
// failure tmp is removed. Syncing the directory is the caller's.
func placeTemp(tmp *os.File, data []byte, sync bool, state *atomic.Int32, final string) error {
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			return err
		}
	} else if len(data) >= writebackMin {
		startWriteback(tmp)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if !state.CompareAndSwap(writeRunning, writeCommitting) {
		os.Remove(tmp.Name())
		done = true
		return errors.New("abandoned at the caller's deadline")
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	done = true
	return nil
}

// wrote records what a write changed, for the next Sync: file, a chunk
// file put in place (or ""), and the directories whose entries changed.
// It runs on fsCall's goroutines (it touches only l.pending and l.dirty).
func (l *Local) wrote(file string, dirs ...string) {
	switch {
	case l.opts.Fsync: // every Put syncs its own
	case l.syncMode == SyncModeFsync:
		l.pending.add(file, dirs...)
	default:
		l.dirty.Store(true)
	}
}

// writebackMin is the smallest chunk file whose writeback starts as soon
// as it is written (see startWriteback). Smaller ones, a small file's
// only chunk say, are left to the kernel to batch.
const writebackMin = 128 << 10

// syncChunk makes a chunk file durable, then the entries of dirs.
func syncChunk(file string, dirs ...string) error {
	f, err := openForSync(file, false)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	for _, d := range dirs {
		if err != nil {
			break
		}
		err = syncDir(d)
	}
	return err
}

// syncDir makes the entries of dir (a new file or directory) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stat returns the chunk's logical size: the file size of a raw chunk, the
// content size in the frame header of a compressed one (-1 if the header
// does not record it). It reads at most a frame header. A chunk file that
// is no regular file, or holds more than the bound's max
// (stores.BoundOf), is ErrCorrupt.
func (l *Local) Stat(ctx context.Context, id stores.ID) (int64, error) {
	if err := l.begin(ctx, "stat", &id); err != nil {
		return 0, err
	}
	defer l.mu.RUnlock()
	p, max := l.path(id), stores.BoundOf(ctx, id).Max
	size, err := fsCall(l, ctx, func() (int64, error) { return statChunk(p, max, l.casync) })
	if errors.Is(err, iofs.ErrNotExist) {
		return 0, fmt.Errorf("local %s: stat %s: %w", l.root, id, stores.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("local %s: stat %s: %w", l.root, id, err)
	}
	return size, nil
}

// statChunk is Stat's work on fsCall's goroutine.
func statChunk(p string, max int64, casync bool) (int64, error) {
	f, fi, err := openRegular(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, zstd.HeaderMaxSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	head = head[:n]
	if !isZstd(head) {
		if casync {
			return 0, fmt.Errorf("%s: %w: not a zstd frame", p, stores.ErrCorrupt)
		}
		if fi.Size() > max {
			return 0, fmt.Errorf("%s: %w: %d bytes, more than any chunk (%d)", p, stores.ErrCorrupt, fi.Size(), max)
		}
		return fi.Size(), nil
	}
	if limit := stores.CompressedBound(max); fi.Size() > limit {
		return 0, fmt.Errorf("%s: %w: %d bytes, more than any compressed chunk (%d)", p, stores.ErrCorrupt, fi.Size(), limit)
	}
	size, err := zchunk.ContentSize(head, max)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return size, nil
}

// Delete removes the chunk; a missing chunk is not an error.
func (l *Local) Delete(ctx context.Context, id stores.ID) error {
	if err := l.begin(ctx, "delete", &id); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	p := l.path(id)
	if err := fsDo(l, ctx, func() error { return os.Remove(p) }); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("local %s: delete %s: %w", l.root, id, err)
	}
	return nil
}

// List calls fn for every chunk file, shard by shard. Temp files and
// anything else that is not `<shard>/<id>.chunk` (`<shard>/<id>.cacnk` in
// the casync layout) are skipped. Chunks put or
// deleted while List runs may or may not be reported.
func (l *Local) List(ctx context.Context, fn func(id stores.ID) error) error {
	if err := l.begin(ctx, "list", nil); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	root := l.root
	shards, err := fsCall(l, ctx, func() ([]iofs.DirEntry, error) { return os.ReadDir(root) })
	if err != nil {
		return fmt.Errorf("local %s: list: %w", l.root, err)
	}
	for _, sh := range shards {
		if !sh.IsDir() || !isShard(sh.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("local %s: list: %w", l.root, err)
		}
		dir := filepath.Join(l.root, sh.Name())
		entries, err := fsCall(l, ctx, func() ([]iofs.DirEntry, error) { return os.ReadDir(dir) })
		if errors.Is(err, iofs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("local %s: list: %w", l.root, err)
		}
		for _, e := range entries {
			hex, ok := strings.CutSuffix(e.Name(), l.ext)
			if !ok || !e.Type().IsRegular() {
				continue
			}
			id, err := stores.ParseID(hex)
			if err != nil || id.String()[:shardLen] != sh.Name() {
				continue // not ours, or misplaced where Get would not find it
			}
			if err := fn(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sync makes every chunk put so far durable. In syncfs mode that is one
// syncfs(2) of the store's filesystem: cheaper than an fsync per chunk
// when a file's fsync covers thousands of chunks. In fsync mode (a
// filesystem that ignores syncfs, see SyncMode) it fsyncs the chunk files
// written since the last Sync, up to syncWorkers at once, then the
// directories whose entries changed; a chunk deleted meanwhile is skipped,
// and what fails, or is not reached before ctx ends, is tried again by the
// next Sync. The error names the file that failed. With Fsync set every
// Put is durable already.
func (l *Local) Sync(ctx context.Context) error {
	if err := l.begin(ctx, "sync", nil); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	if err := l.sync(ctx); err != nil {
		return fmt.Errorf("local %s: sync: %w", l.root, err)
	}
	return nil
}

func (l *Local) sync(ctx context.Context) error {
	switch {
	case l.opts.Fsync:
		return nil
	case l.syncMode == SyncModeFsync:
		return l.syncTracked(ctx)
	}
	// A write that lands after this is in the next Sync's count; one
	// before it is in this syncfs.
	l.dirty.Store(false)
	rootF := l.rootF // an abandoned syncfs keeps its reference to the fd past Close
	if err := fsDo(l, ctx, func() error { return syncFS(rootF) }); err != nil {
		l.dirty.Store(true)
		return err
	}
	return nil
}

// closeSyncTimeout bounds the sync at Close. A filesystem slower than
// that leaves the store marked unclean, which the next open handles.
const closeSyncTimeout = time.Minute

// Close releases the store's resources; later calls fail with ErrClosed.
// It waits for running calls to finish.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("local %s: close: %w", l.root, stores.ErrClosed)
	}
	l.closed = true
	if l.sweepStop != nil {
		l.sweepStop()
	}
	<-l.sweepDone
	// A clean close leaves every chunk put durable, so that the next user
	// may trust the chunks it finds in place. Where calls are still
	// blocked the filesystem hangs: the marker stays, and the next open
	// knows.
	var err error
	synced := false
	if l.abandoned.Load() == 0 {
		nf, nd := l.pending.len()
		if l.dirty.Load() || nf+nd > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), closeSyncTimeout)
			err = l.sync(ctx)
			cancel()
		}
		synced = err == nil
		if err != nil {
			err = fmt.Errorf("sync: %w", err)
		}
	}
	l.dec.Close()
	if cerr := l.enc.Close(); err == nil {
		err = cerr
	}
	if cerr := l.rootF.Close(); err == nil {
		err = cerr
	}
	// A clean close: no temp file is left and every chunk is durable,
	// unless the sweep did not get through, a write abandoned in a hung
	// filesystem may yet leave a temp file, or the last sync failed. Then
	// the marker stays and the next open sweeps (and distrusts the chunks
	// it finds).
	if synced && l.swept.Load() && l.abandoned.Load() == 0 {
		if rerr := os.Remove(filepath.Join(l.root, openMarker)); rerr != nil && !errors.Is(rerr, iofs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	// Unlocks, after the removal: a new user creates a new marker.
	if cerr := l.marker.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("local %s: close: %w", l.root, err)
	}
	return nil
}
