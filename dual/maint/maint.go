package maint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Index is what maintenance reads and changes in the index: exactly the
// methods it uses. *index.DB implements it.
type Index interface {
	// The tree, for a subtree's chunks.
	Lookup(ctx context.Context, parent uint64, name string) (index.Attr, error)
	GetAttr(ctx context.Context, ino uint64) (index.Attr, error)
	ReadDir(ctx context.Context, parent uint64, after string, limit int) ([]index.DirEntry, error)
	Chunks(ctx context.Context, ino uint64) ([]index.Chunk, error)
	// The chunk table, for comparisons, reports and gc.
	RefChunks(ctx context.Context, after stores.ID, limit int) ([]index.ChunkRef, error)
	Usage(ctx context.Context) (index.Usage, error)
	FilesOfChunk(ctx context.Context, id stores.ID, limit int) ([]string, error)
	UnrefChunksAfter(ctx context.Context, after stores.ID, limit int) ([]index.ChunkRef, error)
	UnrefCount(ctx context.Context) (n, bytes int64, err error)
	ChunkRefs(ctx context.Context, id stores.ID) (known bool, refs int64, err error)
	DeleteChunks(ctx context.Context, ids []stores.ID) (deleted []stores.ID, err error)
	// The index's own consistency, for fsck.
	Check(ctx context.Context, max int) error
	RepairCounts(ctx context.Context) (int64, error)
	// Sync, for gc: what it removes must be unreferenced durably.
	Sync(ctx context.Context) error
	// The mark a restore leaves, for gc (see GCAllowed).
	RestoredFrom(ctx context.Context) (string, error)
	ClearRestored(ctx context.Context) error
}

var _ Index = (*index.DB)(nil)

// Maintenance runs compare, repair, migrate, gc and fsck over an index and
// its dual manager. The mount's `.dualstore/ctl` and the offline CLI (run
// against a data dir while nothing is mounted) use the same code.
type Maintenance struct {
	db Index
	dm *dual.Manager
}

// New returns the maintenance operations over db and dm.
func New(db Index, dm *dual.Manager) *Maintenance {
	return &Maintenance{db: db, dm: dm}
}

// maxFilesPerChunk bounds the files a report names for one chunk.
const maxFilesPerChunk = 20

// dirPage is how many entries one ReadDir of the subtree walk returns.
const dirPage = 1024

// ScrubOptions completes o with the chunks of the files under p (all
// referenced chunks for "/" or ""), their count, and the files of each.
func (x *Maintenance) ScrubOptions(ctx context.Context, o dual.ScrubOptions, p string) (dual.ScrubOptions, error) {
	src, count, err := x.chunkSource(ctx, p)
	if err != nil {
		return o, err
	}
	o.Source, o.Count = src, count
	if p != "" && p != "/" {
		o.Path = p
	}
	o.FilesOf = x.filesOf
	return o, nil
}

// filesOf names the files of a chunk, for reports.
func (x *Maintenance) filesOf(ctx context.Context, id stores.ID) ([]string, error) {
	return x.db.FilesOfChunk(ctx, id, maxFilesPerChunk)
}

// GCAllowed checks that gc may sweep the stores. After `dualstore restore`
// the stores may hold chunks written after the restored point by a newer
// copy of the index that still exists somewhere: gc refuses until the
// caller says (afterRestore) that no such copy exists, and then clears
// the mark. A dry run is always allowed and clears nothing.
func (x *Maintenance) GCAllowed(ctx context.Context, afterRestore, dryRun bool) error {
	note, err := x.db.RestoredFrom(ctx)
	if err != nil || note == "" {
		return err
	}
	if dryRun {
		return nil
	}
	if !afterRestore {
		return fmt.Errorf("gc: this index was %s; the stores may hold chunks written after that point by a newer copy of the index, and gc would delete them: run gc with --after-restore (ctl: gc after-restore) once you are sure no newer copy exists", note)
	}
	return x.db.ClearRestored(ctx)
}

// GCOptions completes o with the index's side of a garbage collection.
func (x *Maintenance) GCOptions(o dual.GCOptions) dual.GCOptions {
	o.Unreferenced = func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		refs, err := x.db.UnrefChunksAfter(ctx, after, limit)
		if err != nil {
			return nil, err
		}
		return chunkInfos(refs), nil
	}
	o.Refs = x.db.ChunkRefs
	o.Forget = func(ctx context.Context, id stores.ID) error {
		_, err := x.db.DeleteChunks(ctx, []stores.ID{id})
		return err
	}
	if o.Durable == nil {
		// Offline (nothing commits): the stores, then the index. A mount
		// passes its durability point instead (vfs.FS.Sync).
		o.Durable = func(ctx context.Context) error {
			if err := x.dm.Sync(ctx); err != nil && !errors.Is(err, dual.ErrSyncOneSided) {
				return err
			}
			return x.db.Sync(ctx)
		}
	}
	return o
}

func chunkInfos(refs []index.ChunkRef) []dual.ChunkInfo {
	out := make([]dual.ChunkInfo, len(refs))
	for i, r := range refs {
		out[i] = dual.ChunkInfo{ID: r.ID, Size: int64(r.Size)}
	}
	return out
}

// chunkSource returns the chunks a comparison walks: every chunk the
// index references, or those of the files under a path.
func (x *Maintenance) chunkSource(ctx context.Context, p string) (func(context.Context, stores.ID, int) ([]dual.ChunkInfo, error), func(context.Context) (int64, int64, error), error) {
	if p == "/" || p == "" {
		src := func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
			refs, err := x.db.RefChunks(ctx, after, limit)
			if err != nil {
				return nil, err
			}
			return chunkInfos(refs), nil
		}
		count := func(ctx context.Context) (int64, int64, error) {
			u, err := x.db.Usage(ctx)
			return u.UniqueChunks, u.UniqueBytes, err
		}
		return src, count, nil
	}
	// A subtree: collect its files' chunks once, sorted by id.
	ids, err := x.subtreeChunks(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	var total int64
	for _, c := range ids {
		total += c.Size
	}
	src := func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		i, _ := slices.BinarySearchFunc(ids, after, func(c dual.ChunkInfo, id stores.ID) int { return bytes.Compare(c.ID[:], id[:]) })
		for i < len(ids) && ids[i].ID == after {
			i++
		}
		return ids[i:min(len(ids), i+limit)], nil
	}
	count := func(context.Context) (int64, int64, error) { return int64(len(ids)), total, nil }
	return src, count, nil
}

// subtreeChunks resolves p and gathers the distinct chunks of every
// regular file below it, in id order.
func (x *Maintenance) subtreeChunks(ctx context.Context, p string) ([]dual.ChunkInfo, error) {
	ino := index.RootIno
	for _, name := range strings.Split(strings.Trim(path.Clean(p), "/"), "/") {
		if name == "" {
			continue
		}
		a, err := x.db.Lookup(ctx, ino, name)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		ino = a.Ino
	}
	seen := map[stores.ID]int64{}
	var walk func(ino uint64) error
	walk = func(ino uint64) error {
		a, err := x.db.GetAttr(ctx, ino)
		if err != nil {
			return err
		}
		switch a.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			chunks, err := x.db.Chunks(ctx, ino)
			if err != nil {
				return err
			}
			for _, c := range chunks {
				if !c.Hole() { // a hole is no chunk
					seen[c.ID] = int64(c.Size)
				}
			}
		case syscall.S_IFDIR:
			after := ""
			for {
				ents, err := x.db.ReadDir(ctx, ino, after, dirPage)
				if err != nil {
					return err
				}
				for _, e := range ents {
					if err := walk(e.Ino); err != nil {
						return err
					}
				}
				if len(ents) < dirPage {
					return nil
				}
				after = ents[len(ents)-1].Name
			}
		}
		return nil
	}
	if err := walk(ino); err != nil {
		return nil, err
	}
	out := make([]dual.ChunkInfo, 0, len(seen))
	for id, size := range seen {
		out = append(out, dual.ChunkInfo{ID: id, Size: size})
	}
	slices.SortFunc(out, func(a, b dual.ChunkInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out, nil
}
