package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Maintenance runs compare, repair, migrate, gc and fsck over an index and
// its dual manager. The mount's `.dualstore/ctl` and the offline CLI (run
// against a data dir while nothing is mounted) use the same code.
type Maintenance struct {
	db *index.DB
	dm *dual.Manager
}

// NewMaintenance returns the maintenance operations over db and dm.
func NewMaintenance(db *index.DB, dm *dual.Manager) *Maintenance {
	return &Maintenance{db: db, dm: dm}
}

// maxFilesPerChunk bounds the files a report names for one chunk.
const maxFilesPerChunk = 20

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
	o.FilesOf = func(ctx context.Context, id stores.ID) ([]string, error) {
		return x.db.FilesOfChunk(ctx, id, maxFilesPerChunk)
	}
	return o, nil
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
				seen[c.ID] = int64(c.Size)
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
	sortChunkInfos(out)
	return out, nil
}

func sortChunkInfos(s []dual.ChunkInfo) {
	slices.SortFunc(s, func(a, b dual.ChunkInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}

// FsckOptions configure a filesystem check.
type FsckOptions struct {
	// Repair recomputes reference counts, link counts and usage totals
	// from the index's own tables. It never deletes a file or a chunk.
	Repair bool
	// Deep reads and verifies every referenced chunk in both tiers
	// instead of checking existence and size.
	Deep bool
	// Concurrency is how many chunks are checked at once. Default 8.
	Concurrency int
	// MaxProblems bounds the problems listed. Default 1000.
	MaxProblems int
	// Progress, if set, is called after each chunk with done/total.
	Progress func(done, total int64)
}

// FsckReport is the result of Fsck. Clean means: the index is well-formed
// and its counts are right (after a repair, if asked), and every
// referenced chunk is held by at least one tier.
type FsckReport struct {
	Clean bool `json:"clean"`
	// IndexProblems are the index's own inconsistencies (before repair).
	IndexProblems []string `json:"index_problems"`
	// Fixed counts the rows a repair corrected.
	Fixed int64 `json:"fixed"`
	// IndexClean says whether the index checks clean now.
	IndexClean bool `json:"index_clean"`
	// Chunks is how many referenced chunks were checked.
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// OneSided are referenced chunks held by one tier only (data is safe,
	// redundancy is not: run repair); Errors are chunks a store failed to
	// answer for.
	OneSided int64 `json:"one_sided"`
	Errors   int64 `json:"errors"`
	// Unrecoverable chunks are in no tier (or corrupt in both), with the
	// files that lose data.
	Unrecoverable      int64         `json:"unrecoverable"`
	UnrecoverableFiles []string      `json:"unrecoverable_files"`
	Details            []dual.Detail `json:"details"`
	DetailsTruncated   bool          `json:"details_truncated"`
	// Unreferenced chunk rows gc would remove.
	Unreferenced int64 `json:"unreferenced"`
}

// Fsck checks the index's invariants, and that every chunk it references
// exists in at least one tier (with its size; Deep verifies the bytes).
// With Repair it first corrects the counts the index can recompute. A
// chunk with no good copy is reported with the files that use it; nothing
// is ever deleted.
func (x *Maintenance) Fsck(ctx context.Context, o FsckOptions) (FsckReport, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 1000
	}
	r := FsckReport{IndexProblems: []string{}, UnrecoverableFiles: []string{}, Details: []dual.Detail{}}
	indexProblems := func() error {
		err := x.db.Check(ctx, o.MaxProblems)
		if err == nil {
			return nil
		}
		if !errors.Is(err, index.ErrCorrupt) {
			return err
		}
		r.IndexProblems = strings.Split(err.Error(), "\n")
		return nil
	}
	if err := indexProblems(); err != nil {
		return r, fmt.Errorf("fsck: index check: %w", err)
	}
	r.IndexClean = len(r.IndexProblems) == 0
	if o.Repair && !r.IndexClean {
		n, err := x.db.RepairCounts(ctx)
		if err != nil {
			return r, fmt.Errorf("fsck: repair counts: %w", err)
		}
		r.Fixed = n
		before := r.IndexProblems
		r.IndexProblems = nil
		if err := indexProblems(); err != nil {
			return r, fmt.Errorf("fsck: index check after repair: %w", err)
		}
		r.IndexClean = len(r.IndexProblems) == 0
		if r.IndexClean {
			r.IndexProblems = before
		}
	}

	u, err := x.db.Usage(ctx)
	if err != nil {
		return r, fmt.Errorf("fsck: %w", err)
	}
	var (
		mu    sync.Mutex
		files = map[string]bool{}
		done  int64
		wg    sync.WaitGroup
		work  = make(chan dual.ChunkInfo, o.Concurrency*2)
	)
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				v := x.dm.CompareChunk(ctx, c, o.Deep)
				d := dual.Detail{Chunk: c.ID.String(), Class: v.Class, Good: v.Good, Note: v.Note, Files: []string{}}
				if v.Err != nil {
					d.Error = v.Err.Error()
				}
				bad := v.Class == dual.ClassMissing
				if bad {
					if fs, err := x.db.FilesOfChunk(ctx, c.ID, maxFilesPerChunk); err == nil {
						d.Files = fs
					}
				}
				mu.Lock()
				done++
				r.Chunks++
				r.Bytes += c.Size
				switch v.Class {
				case dual.ClassMatch:
				case dual.ClassPrimaryOnly, dual.ClassSafetyOnly, dual.ClassMismatch:
					r.OneSided++
				case dual.ClassMissing:
					r.Unrecoverable++
					for _, f := range d.Files {
						files[f] = true
					}
				case dual.ClassError:
					r.Errors++
				}
				if v.Class != dual.ClassMatch {
					if len(r.Details) < o.MaxProblems {
						r.Details = append(r.Details, d)
					} else {
						r.DetailsTruncated = true
					}
				}
				if o.Progress != nil {
					o.Progress(done, u.UniqueChunks)
				}
				mu.Unlock()
			}
		}()
	}
	var after stores.ID
	var srcErr error
	for ctx.Err() == nil {
		refs, err := x.db.RefChunks(ctx, after, 512)
		if err != nil {
			srcErr = err
			break
		}
		if len(refs) == 0 {
			break
		}
		for _, c := range chunkInfos(refs) {
			select {
			case work <- c:
			case <-ctx.Done():
			}
		}
		after = refs[len(refs)-1].ID
	}
	close(work)
	wg.Wait()
	if srcErr != nil {
		return r, fmt.Errorf("fsck: list referenced chunks: %w", srcErr)
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("fsck: %w", err)
	}
	for f := range files {
		r.UnrecoverableFiles = append(r.UnrecoverableFiles, f)
	}
	slices.Sort(r.UnrecoverableFiles)
	if n, _, err := x.db.UnrefCount(ctx); err == nil {
		r.Unreferenced = n
	}
	r.Clean = r.IndexClean && r.Unrecoverable == 0 && r.Errors == 0
	return r, nil
}
