package vfs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// ErrNotInTiers is returned by Adopt for a chunk neither tier holds: its
// bytes must come in through a write instead.
var ErrNotInTiers = errors.New("the chunk is in neither tier")

// ErrNotEmpty is returned by Adopt for a file that is not empty, or holds
// writes not yet committed.
var ErrNotEmpty = errors.New("the file is not empty")

// Adopt makes the empty regular file ino consist of chunks (ids and holes,
// in order) that the tiers already hold, copying nothing: how `dualstore
// import` references a casync primary's chunks in place. Each chunk is
// read and verified (the dual manager checks every copy against its id)
// and put to a tier that lacks it, all of them are made durable, and only
// then does the index name them, as for any write. While it runs gc
// leaves the chunks alone (held) and the file's readers wait.
func (f *FS) Adopt(ctx context.Context, ino uint64, chunks []index.Chunk) error {
	st, err := f.acquireWith(ctx, ino, nil)
	if err != nil {
		return err
	}
	defer func() { _ = f.release(context.WithoutCancel(ctx), st) }()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.size != 0 || st.dirty || st.streaming() || st.stage != nil {
		return fmt.Errorf("inode %d: %w", ino, ErrNotEmpty)
	}
	maxSize := f.meta.Header().MaxSize
	var held []stores.ID
	defer func() { f.dm.Release(held...) }()
	var off uint64
	for i, c := range chunks {
		if c.Size == 0 || (c.Hole() && c.Size > index.MaxHole) || (!c.Hole() && c.Size > maxSize) {
			return fmt.Errorf("entry %d at %d: %d bytes: want 1..%d for a chunk, up to %d for a hole", i, off, c.Size, maxSize, uint64(index.MaxHole))
		}
		if !c.Hole() {
			f.dm.Hold(c.ID)
			held = append(held, c.ID)
			// A chunk in neither tier is the caller's cue to copy instead:
			// asked with a stat, not a read that counts and logs a failure.
			if _, err := f.dm.Stat(ctx, c.ID); errors.Is(err, stores.ErrNotFound) {
				return fmt.Errorf("chunk %s at %d: %w", c.ID, off, ErrNotInTiers)
			}
			data, err := f.dm.Get(ctx, c.ID)
			if err != nil {
				return fmt.Errorf("chunk %s at %d: %w", c.ID, off, err)
			}
			if len(data) != int(c.Size) {
				return fmt.Errorf("chunk %s at %d: %d bytes, the list says %d", c.ID, off, len(data), c.Size)
			}
			if err := f.dm.Put(stores.WithImmutableData(ctx), c.ID, data); err != nil {
				return fmt.Errorf("chunk %s at %d: %w", c.ID, off, err)
			}
		}
		off += uint64(c.Size)
	}
	if err := f.dm.Sync(ctx); err != nil {
		return err
	}
	st.setChunks(chunks)
	st.size, st.mtime, st.dirty = off, time.Now(), true
	return st.commitLocked(ctx)
}
