package vfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Meta is the metadata the file layer needs: a file's attributes and
// chunk list, committing a new chunk list, what the index knows of a chunk
// (dedup, prediction), purging an unlinked inode and making the index
// durable. *index.DB implements it.
type Meta interface {
	// Header carries the chunker parameters and the hash, so the same
	// bytes always cut the same way in one filesystem.
	Header() index.Header
	GetAttr(ctx context.Context, ino uint64) (index.Attr, error)
	Chunks(ctx context.Context, ino uint64) ([]index.Chunk, error)
	CommitChunks(ctx context.Context, ino uint64, chunks []index.Chunk, mtime time.Time) (index.Attr, error)
	NextChunk(ctx context.Context, id stores.ID) (next index.Chunk, ok bool, err error)
	ChunkRefs(ctx context.Context, id stores.ID) (known bool, refs int64, err error)
	Purge(ctx context.Context, ino uint64) error
	Sync(ctx context.Context) error
	// Durability epochs (see durable.go and index.DB.Seal).
	Seal() uint64
	Settle(ctx context.Context, epoch uint64) (int64, error)
	Unsettled(ctx context.Context) ([]uint64, error)
	Revert(ctx context.Context, ino uint64) (index.Attr, error)
}

var _ Meta = (*index.DB)(nil)

// Options configure the file layer.
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
	// SyncInterval is how often, while files are being committed, a
	// durability point makes them durable without an fsync (like ext4's
	// commit= interval): a power loss takes back at most about this much
	// of closed, not fsync'd work. Default 10s; negative: only fsync and
	// Close make commits durable.
	SyncInterval time.Duration
	// MaxFileSize is the largest file size a write, truncate or fallocate
	// may make (ErrFileTooBig past it). Default DefaultMaxFileSize.
	MaxFileSize uint64
	// AfterSync, when set, runs after every Sync (fsync, a directory's
	// fsync, gc) that succeeded, and its error is Sync's: the index backup
	// with fsync_wait waits there until the point is in both tiers.
	AfterSync func(ctx context.Context) error
	// Log receives the file layer's logs.
	Log zerolog.Logger
}

// MaxPrefetch bounds Options.Prefetch (the bounds table's
// mount.prefetch).
const MaxPrefetch = bounds.MaxPrefetch

// DefaultOptions returns the defaults (StagingDir must still be set). New
// also takes a zero CacheBytes or Prefetch to mean the default.
func DefaultOptions() Options {
	return Options{CacheBytes: 64 << 20, Prefetch: 16, SyncInterval: 10 * time.Second, MaxFileSize: DefaultMaxFileSize, Log: zerolog.Nop()}
}

// Validate reports options that are out of range.
func (o Options) Validate() error {
	var errs []error
	if o.StagingDir == "" {
		errs = append(errs, errors.New("vfs: StagingDir is required"))
	} else if st, err := os.Stat(o.StagingDir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("vfs: staging dir %s: not a directory (%v)", o.StagingDir, err))
	}
	if o.CacheBytes < 0 || o.Prefetch < 0 || o.Prefetch > MaxPrefetch {
		errs = append(errs, fmt.Errorf("vfs: cache_bytes %d / prefetch %d out of range", o.CacheBytes, o.Prefetch))
	}
	return errors.Join(errs...)
}

// FS is the file layer of a dualstore filesystem: the open files, their
// writes streamed through the chunker into the dual manager or staged on
// local disk, their commits to the metadata, the chunk cache and the
// prefetch of sequential reads. It is safe for concurrent use.
type FS struct {
	meta   Meta
	dm     *dual.Manager
	opts   Options
	log    zerolog.Logger
	params chunker.Params
	hash   chunker.HashFunc
	// streamOpts are every chunker stream's options: the predictor.
	streamOpts chunker.StreamOptions
	cache      *chunkCache

	filesMu sync.Mutex
	files   map[uint64]*fileState
	// orphans are inodes whose last name went while the kernel or an open
	// file still holds them; true once the kernel has forgotten them. An
	// orphan is purged from the index when both have let go (guarded by
	// filesMu).
	orphans map[uint64]bool
	// closed counts the open-file states dropped (guarded by filesMu,
	// read without it): see EntryAttr.
	closed atomic.Uint64

	prefetchSem chan struct{}

	ctr counters
	dur durable
}

type counters struct {
	chunksCut, dedupHits, dedupBytes atomic.Int64
	chunksPredicted                  atomic.Int64
	bytesWritten, bytesRead          atomic.Int64
}

// New builds the file layer over the metadata and a dual manager. The
// chunker parameters and hash come from the index header, so the same
// bytes always cut the same way in this filesystem.
func New(meta Meta, dm *dual.Manager, opts Options) (*FS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	def := DefaultOptions()
	if opts.CacheBytes == 0 {
		opts.CacheBytes = def.CacheBytes
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = def.Prefetch
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = def.SyncInterval
	}
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = def.MaxFileSize
	}
	h := meta.Header()
	params := chunker.Params{Polynomial: h.Polynomial, MinSize: uint(h.MinSize), AvgSize: uint(h.AvgSize), MaxSize: uint(h.MaxSize)}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("vfs: index header chunker parameters: %w", err)
	}
	hash, err := chunker.Hasher(h.Hash)
	if err != nil {
		return nil, fmt.Errorf("vfs: index header: %w", err)
	}
	f := &FS{
		meta: meta, dm: dm, opts: opts, params: params, hash: hash,
		log:         opts.Log.With().Str("component", "vfs").Logger(),
		files:       map[uint64]*fileState{},
		orphans:     map[uint64]bool{},
		prefetchSem: make(chan struct{}, max(4, opts.Prefetch)),
	}
	f.cache = newChunkCache(opts.CacheBytes, dm.Get)
	f.streamOpts = chunker.StreamOptions{Predict: f.predict}
	// What a power loss may have left behind is checked before the first
	// file is opened.
	if err := f.recover(context.Background()); err != nil {
		return nil, err
	}
	if opts.SyncInterval > 0 {
		f.dur.stop, f.dur.loopDone = make(chan struct{}), make(chan struct{})
		go f.syncLoop(opts.SyncInterval)
	}
	return f, nil
}

// Options returns the options f runs with (defaults filled in).
func (f *FS) Options() Options { return f.opts }

// Stats is a snapshot of the file layer's counters.
type Stats struct {
	// OpenFiles are the inodes with open-file state (open handles, or a
	// truncate in progress).
	OpenFiles  int
	ChunksCut  int64
	DedupHits  int64
	DedupBytes int64
	// ChunksPredicted are the chunks cut without the rolling hash,
	// because the bytes were a chunk the index knew to come next.
	ChunksPredicted int64
	BytesWritten    int64
	BytesRead       int64
	// CacheHits and CacheMisses count chunk cache lookups; CacheBytes is
	// what the cache holds now.
	CacheHits, CacheMisses, CacheBytes int64
	// Syncs and SyncErrors count durability points (fsync, the background
	// interval, close). After an unclean shutdown, RecoveryChecked files
	// had their chunks checked, RecoveryHealed chunks were copied back
	// into a tier, and RecoveryReverted files lost their newest content.
	Syncs, SyncErrors                                 int64
	RecoveryChecked, RecoveryHealed, RecoveryReverted int64
}

// Stats returns a snapshot of the counters.
func (f *FS) Stats() Stats {
	var s Stats
	s.CacheHits, s.CacheMisses, s.CacheBytes = f.cache.hits.Load(), f.cache.misses.Load(), f.cache.bytes()
	f.filesMu.Lock()
	s.OpenFiles = len(f.files)
	f.filesMu.Unlock()
	s.ChunksCut, s.DedupHits, s.DedupBytes = f.ctr.chunksCut.Load(), f.ctr.dedupHits.Load(), f.ctr.dedupBytes.Load()
	s.ChunksPredicted = f.ctr.chunksPredicted.Load()
	s.BytesWritten, s.BytesRead = f.ctr.bytesWritten.Load(), f.ctr.bytesRead.Load()
	s.Syncs, s.SyncErrors = f.dur.syncs.Load(), f.dur.syncErrors.Load()
	s.RecoveryChecked, s.RecoveryHealed, s.RecoveryReverted = f.dur.checked.Load(), f.dur.healed.Load(), f.dur.reverted.Load()
	return s
}

// ResetCacheStats sets the chunk cache's hit and miss counters to zero.
func (f *FS) ResetCacheStats() {
	f.cache.hits.Store(0)
	f.cache.misses.Store(0)
}

// chunk returns one chunk's bytes (cached), checking its length. The
// stores are told the length the index gives (stores.WithExpectedSize):
// a stored copy of another size is a corrupt one, refused unread, and the
// other tier's is read instead.
func (f *FS) chunk(ctx context.Context, c index.Chunk) ([]byte, error) {
	data, err := f.cache.get(stores.WithExpectedSize(ctx, c.ID, int64(c.Size)), c.ID)
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
		id, size := chunks[i].ID, int64(chunks[i].Size)
		if chunks[i].Hole() || f.cache.contains(id) {
			continue // a hole is read from no store
		}
		select {
		case f.prefetchSem <- struct{}{}:
		default:
			return
		}
		go func() {
			defer func() { <-f.prefetchSem }()
			_, _ = f.cache.get(stores.WithExpectedSize(context.Background(), id, size), id)
		}()
	}
}

// predict is the chunker's predictor (chunker.StreamOptions.Predict): a
// chunk the index has after prev in some file, which is the next cut if
// the next bytes are that chunk's. A second copy of stored data is then
// cut at the speed of hashing instead of the rolling hash.
func (f *FS) predict(prev [32]byte) ([32]byte, uint32, bool) {
	next, ok, err := f.meta.NextChunk(context.Background(), stores.ID(prev))
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
	_, refs, err := f.meta.ChunkRefs(context.Background(), id)
	return err == nil && refs > 0
}
