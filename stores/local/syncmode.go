package local

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"sync"
	"syscall"
)

// The ways Sync makes chunks durable (Options.SyncMode, the config key
// sync).
const (
	// SyncModeAuto picks SyncModeSyncfs where syncfs(2) reaches the
	// store's filesystem and SyncModeFsync where it does not (see
	// noSyncfs). The default.
	SyncModeAuto = "auto"
	// SyncModeSyncfs makes every chunk durable with one syncfs(2) of the
	// store's filesystem: one call however many chunks a file's fsync
	// covers.
	SyncModeSyncfs = "syncfs"
	// SyncModeFsync fsyncs each chunk file written since the last Sync,
	// then each directory whose entries changed: what works on every
	// filesystem, at the price of a call per file.
	SyncModeFsync = "fsync"
)

// noSyncfs lists the filesystems, by statfs(2) f_type, on which syncfs(2)
// returns success without making the data durable, so that auto resolves
// to fsync there. syncfs writes the dirty pages back to the filesystem and
// calls its sync_fs; on these the data then still sits in a daemon, a
// server or its page cache, and only fsync(2) of each file reaches them:
//
//   - FUSE (0x65735546): fuse and fuseblk, so sshfs, rclone, mergerfs,
//     ceph-fuse, go-fuse's loopback and every other FUSE layer. Linux
//     sends the daemon no request for syncfs (FUSE_SYNCFS goes to virtiofs
//     only), but it does send FUSE_FSYNC for an fsync. virtiofs has the
//     same magic number and does take syncfs: there the fallback is
//     correct but slower than it need be, and `sync: syncfs` is the
//     faster choice.
//   - 9p/v9fs (0x01021997): no sync_fs; an fsync sends Tfsync, which makes
//     the server fsync its file.
//   - CIFS (0xFF534D42) and SMB2 (0xFE534D42): writing back sends the
//     data to the server, but only an fsync sends SMB FLUSH, which makes
//     the server write it to its disk.
//
// The list is of filesystems known to drop syncfs; one missing from it
// (an exotic network filesystem) needs `sync: fsync` in the config.
var noSyncfs = map[uint32]string{
	0x65735546: "fuse",
	0x01021997: "9p",
	0xFF534D42: "cifs",
	0xFE534D42: "smb2",
}

// resolveSyncMode returns the mode Sync uses for the configured mode and
// the store filesystem's f_type (known is false where it could not be
// read), and why, for the log.
func resolveSyncMode(mode string, magic uint32, known bool) (resolved, why string) {
	switch {
	case mode == SyncModeSyncfs || mode == SyncModeFsync:
		return mode, "configured"
	case !known:
		// No f_type (statfs failed, or not Linux, where syncFS walks the
		// whole store): fsync of what was written is correct anywhere.
		return SyncModeFsync, "filesystem type unknown"
	}
	if name, ok := noSyncfs[magic]; ok {
		return SyncModeFsync, name + " does not pass syncfs on"
	}
	return SyncModeSyncfs, "syncfs reaches the filesystem"
}

// syncWorkers bounds the fsyncs one Sync runs at once: enough to keep a
// disk's queue or a network filesystem's round trips busy, few enough not
// to pin many threads in a filesystem that hangs.
const syncWorkers = 8

// pending is what a store in fsync mode has written since its last Sync:
// chunk files (by final path) and directories whose entries changed, each
// with the sequence number of its latest change. A Sync removes an entry
// only once it has synced it, and only if nothing changed it again
// meanwhile (same number), so a failed or abandoned Sync leaves the rest
// for the next one. It has its own lock: the file operations of an
// abandoned call update it, and they must not touch the store's.
type pending struct {
	mu    sync.Mutex
	seq   uint64
	files map[string]uint64
	dirs  map[string]uint64
	// limit is how many files it holds before writes sync themselves
	// (maxPending; tests lower it).
	limit int
}

// maxPending bounds the chunk files a store in fsync mode keeps for the
// next Sync, about 10 MiB of paths: tens of GiB of chunks. Past it, each
// write syncs its own file until a Sync empties the set.
const maxPending = 1 << 16

// full reports whether the set holds as many files as it may.
func (p *pending) full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.files) >= p.limit
}

// syncEntry is one path for Sync, with the number of the change it covers.
type syncEntry struct {
	path string
	seq  uint64
}

// add records a chunk file put in place (file may be "") and the
// directories whose entries that changed.
func (p *pending) add(file string, dirs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	if p.files == nil {
		p.files, p.dirs = map[string]uint64{}, map[string]uint64{}
	}
	if file != "" {
		p.files[file] = p.seq
	}
	for _, d := range dirs {
		p.dirs[d] = p.seq
	}
}

// snapshot returns the tracked files and directories.
func (p *pending) snapshot() (files, dirs []syncEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := func(m map[string]uint64) []syncEntry {
		out := make([]syncEntry, 0, len(m))
		for path, seq := range m {
			out = append(out, syncEntry{path, seq})
		}
		return out
	}
	return list(p.files), list(p.dirs)
}

// done forgets e if it has not changed since it was synced.
func (p *pending) done(e syncEntry, dir bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.files
	if dir {
		m = p.dirs
	}
	if m[e.path] == e.seq {
		delete(m, e.path)
	}
}

// len returns how many files and directories are tracked.
func (p *pending) len() (files, dirs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.files), len(p.dirs)
}

// syncTracked is Sync in fsync mode: the files written since the last
// Sync, in parallel, then the directories whose entries changed (a
// chunk's name is durable only once its shard is synced after the
// rename, a new shard's once the root is). Each fsync is one call on the
// filesystem (fsDo), abandoned at ctx's end like any other; what was not
// synced stays tracked.
func (l *Local) syncTracked(ctx context.Context) error {
	files, dirs := l.pending.snapshot()
	if err := l.syncAll(ctx, files, false); err != nil {
		return err // the directories wait: their files are not durable yet
	}
	return l.syncAll(ctx, dirs, true)
}

// syncAll fsyncs entries with up to syncWorkers at once. Its error names
// the first file that failed and how many others did.
func (l *Local) syncAll(ctx context.Context, entries []syncEntry, dirs bool) error {
	if len(entries) == 0 {
		return nil
	}
	work := make(chan syncEntry)
	var (
		mu     sync.Mutex
		first  error
		failed int
		wg     sync.WaitGroup
	)
	for range min(syncWorkers, len(entries)) {
		wg.Go(func() {
			for e := range work {
				err := ctx.Err()
				if err == nil {
					err = fsDo(l, ctx, func() error { return l.syncPath(e, dirs) })
				}
				if err != nil {
					mu.Lock()
					if first == nil || errors.Is(first, ctx.Err()) && !errors.Is(err, ctx.Err()) {
						first = err // a real failure says more than the deadline
					}
					failed++
					mu.Unlock()
				}
			}
		})
	}
	sent := 0
feed:
	for _, e := range entries {
		select {
		case work <- e:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && sent < len(entries) {
		first = ctx.Err()
	}
	if first == nil {
		return nil
	}
	if left := failed + len(entries) - sent - 1; left > 0 {
		return fmt.Errorf("%w (and %d more not synced)", first, left)
	}
	return first
}

// syncPath fsyncs one tracked file or directory, and forgets it once
// synced. A path that is gone (a chunk removed by gc meanwhile) has
// nothing left to sync. It runs on fsCall's goroutine: it touches only
// the filesystem and l.pending.
func (l *Local) syncPath(e syncEntry, dir bool) error {
	f, err := openForSync(e.path, dir)
	if errors.Is(err, iofs.ErrNotExist) {
		l.pending.done(e, dir)
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	l.pending.done(e, dir)
	return nil
}

// openForSync opens p to fsync it. A file is opened for writing where
// that is allowed: Linux's CIFS client skips the flush of an fsync on a
// handle not open for writing. Where writing is refused (rclone's mount
// without a cache refuses to open an existing file for writing without
// O_TRUNC), a read-only handle is the best there is.
func openForSync(p string, dir bool) (*os.File, error) {
	if dir {
		return os.Open(p)
	}
	// O_NONBLOCK: a FIFO put in a chunk file's place fails the open
	// (ENXIO, no reader) instead of blocking it.
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS) {
		return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}
	return f, err
}
