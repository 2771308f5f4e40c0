package vfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Durability: every commit becomes durable at a durability point, and a
// power loss can only take the commits since the last one back to their
// last durable content, never leave a file unreadable.
//
// A commit (at close) is in the index at once (it survives kill -9), but
// its chunks are in the stores' page cache, and the index's log may reach
// the disk before them. So the index keeps, with each commit, what the file
// was at the last durability point (index.DB.Seal). A point
//
//  1. seals the epoch: commits from now on belong to the next one;
//  2. syncs both tiers (the chunks of every sealed commit are durable);
//  3. syncs the index (the sealed commits are durable);
//  4. settles the sealed epoch: its undo records go, the log is
//     checkpointed into the database file (SQLite never checkpoints on its
//     own: only here, after the stores).
//
// fsync(2) and a directory's fsync run a point (Sync), and so does a
// background loop every SyncInterval while anything was committed, so a
// closed file is durable within about that long even if nobody fsyncs it.
// After a power loss, recover (run by New) checks the chunks of every file
// committed since the last point in both tiers, heals a tier whose copy is
// missing or short from the other, and reverts a file whose newer chunks
// neither tier holds to its last durable content.

// durable is the durability state of a file layer.
type durable struct {
	// mu serialises points.
	mu sync.Mutex
	// begun and done count points started and completed: a Sync that
	// began before a point began is covered by it (group commit).
	begun, done atomic.Uint64
	// dirty is set by every commit and cleared by a point that seals
	// after it: the background loop skips idle intervals.
	dirty atomic.Bool

	stop     chan struct{}
	loopDone chan struct{}
	closed   atomic.Bool

	syncs, syncErrors, checked, healed, reverted atomic.Int64
}

// Sync makes every commit that returned before the call, and the chunks
// it references, durable: a durability point, or one that began after
// this call did. Concurrent callers share points.
func (f *FS) Sync(ctx context.Context) error {
	if err := f.sync(ctx); err != nil {
		return err
	}
	if f.opts.AfterSync != nil {
		if err := f.opts.AfterSync(ctx); err != nil {
			f.dur.syncErrors.Add(1)
			return fmt.Errorf("durability point: %w", err)
		}
	}
	return nil
}

func (f *FS) sync(ctx context.Context) error {
	want := f.dur.begun.Load() + 1
	f.dur.mu.Lock()
	defer f.dur.mu.Unlock()
	if f.dur.done.Load() >= want {
		return nil // a point that began after this call finished meanwhile
	}
	return f.pointLocked(ctx)
}

// pointLocked runs one durability point. Caller holds dur.mu.
func (f *FS) pointLocked(ctx context.Context) error {
	f.dur.begun.Add(1)
	f.dur.dirty.Store(false)
	e := f.meta.Seal()
	err := f.dm.Sync(ctx)
	// A tier that require does not name failed to sync: the chunks are
	// durable where a write needs them, so the point succeeds for its
	// callers, but it does not settle: the undo records stay, and recovery
	// after a power loss checks those files in both tiers.
	oneSided := errors.Is(err, dual.ErrSyncOneSided)
	if oneSided {
		f.log.Warn().Err(err).Msg("a tier failed to sync; the undo records stay until it does")
		err = nil
	}
	if err == nil {
		err = f.meta.Sync(ctx)
	}
	if err == nil && !oneSided {
		_, err = f.meta.Settle(ctx, e)
	}
	if err != nil || oneSided {
		f.dur.dirty.Store(true) // what was sealed is still to be settled
		f.dur.syncErrors.Add(1)
	}
	if err != nil {
		return fmt.Errorf("durability point: %w", err)
	}
	f.dur.syncs.Add(1)
	f.dur.done.Store(f.dur.begun.Load())
	return nil
}

// committed notes a commit, for the background loop.
func (f *FS) committed() { f.dur.dirty.Store(true) }

// syncLoop runs a point every interval in which something was committed.
func (f *FS) syncLoop(interval time.Duration) {
	defer close(f.dur.loopDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-f.dur.stop:
			return
		case <-t.C:
		}
		if !f.dur.dirty.Load() {
			continue
		}
		if err := f.sync(context.Background()); err != nil {
			f.log.Warn().Err(err).Msg("background durability point failed; retried at the next interval")
		}
	}
}

// Close stops the background points and runs a last one, so a clean
// shutdown leaves every commit durable and no undo record behind. Later
// calls return nil.
func (f *FS) Close(ctx context.Context) error {
	if f.dur.closed.Swap(true) {
		return nil
	}
	if f.dur.stop != nil {
		close(f.dur.stop)
		<-f.dur.loopDone
	}
	f.dur.mu.Lock()
	defer f.dur.mu.Unlock()
	return f.pointLocked(ctx)
}

// recover checks what a power loss or crash may have left behind: the
// chunks of every file committed since the last durability point. A chunk
// missing, short or corrupt in one tier is healed from the other; a file
// with a chunk that no tier holds goes back to its last durable content.
// Then a point settles it all. Store failures (neither copy could be read,
// but neither is known bad) leave a file as it is, with a warning: its
// chunks may come back with the store.
func (f *FS) recover(ctx context.Context) error {
	inos, err := f.meta.Unsettled(ctx)
	if err != nil {
		return fmt.Errorf("vfs: recovery: %w", err)
	}
	if len(inos) == 0 {
		return nil
	}
	f.log.Warn().Int("files", len(inos)).Msg("checking the files committed since the last durability point (unclean shutdown)")
	lost := map[stores.ID]bool{} // verdict per chunk, shared by files
	for _, ino := range inos {
		chunks, err := f.meta.Chunks(ctx, ino)
		if errors.Is(err, index.ErrNotExist) {
			continue // purged: Settle drops its records
		}
		if err != nil {
			return fmt.Errorf("vfs: recovery: inode %d: %w", ino, err)
		}
		f.dur.checked.Add(1)
		bad := 0
		for _, c := range chunks {
			if c.Hole() {
				continue
			}
			isLost, seen := lost[c.ID]
			if !seen {
				isLost = f.heal(ctx, ino, c)
				lost[c.ID] = isLost
			}
			if isLost {
				bad++
			}
		}
		if bad == 0 {
			continue
		}
		a, err := f.meta.Revert(ctx, ino)
		if err != nil {
			return fmt.Errorf("vfs: recovery: revert inode %d: %w", ino, err)
		}
		f.dur.reverted.Add(1)
		f.log.Error().Uint64("ino", ino).Int("lost_chunks", bad).Uint64("size", a.Size).
			Msg("a file's newest content was lost with the power (no tier holds its chunks): reverted to its last durable content")
	}
	f.dur.mu.Lock()
	defer f.dur.mu.Unlock()
	return f.pointLocked(ctx)
}

// heal makes both tiers hold a verified copy of a chunk of ino and
// reports whether the chunk is lost (no tier holds a copy that verifies).
func (f *FS) heal(ctx context.Context, ino uint64, c index.Chunk) bool {
	v, wrote, err := f.dm.RepairChunk(ctx, dual.ChunkInfo{ID: c.ID, Size: int64(c.Size)})
	switch {
	case errors.Is(err, dual.ErrUnrecoverable):
		return true
	case err != nil:
		f.log.Warn().Uint64("ino", ino).Str("chunk", c.ID.String()).Err(err).
			Msg("recovery could not check a chunk in both tiers; left as it is")
	case wrote:
		f.dur.healed.Add(1)
		f.log.Warn().Uint64("ino", ino).Str("chunk", c.ID.String()).Str("found", string(v.Class)).
			Msg("healed a chunk the power loss left missing or short in one tier")
	}
	return false
}
