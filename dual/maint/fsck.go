package maint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

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
