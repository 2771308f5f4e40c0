package maint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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
	// Tuning shapes the chunk check, which is a compare: its concurrency,
	// batch size and rate (the config's compare section). MaxDetails also
	// bounds the index problems listed.
	Tuning Tuning
	// Progress, if set, is called with the chunk check's report every
	// ProgressInterval while it runs, and once when it ends.
	Progress func(dual.Report)
}

// ProgressInterval is how often Fsck reports progress.
const ProgressInterval = 200 * time.Millisecond

// FsckReport is the result of Fsck; its JSON form is what `dualstore fsck
// --json` prints (fields may be added, never renamed or dropped). Clean
// means: the index is well-formed and its counts are right (after a
// repair, if asked), and every referenced chunk is held by at least one
// tier.
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
//
// The chunk check is a compare run through the dual manager (so it is
// throttled by the tuning's rate, and fails with dual.ErrBusy while
// another action runs); cancelling ctx stops it and Fsck returns an error
// wrapping ctx's.
func (x *Maintenance) Fsck(ctx context.Context, o FsckOptions) (FsckReport, error) {
	r := FsckReport{IndexProblems: []string{}, UnrecoverableFiles: []string{}, Details: []dual.Detail{}}
	so, err := o.Tuning.Scrub(Overrides{})
	if err != nil {
		return r, fmt.Errorf("fsck: %w", err)
	}
	indexProblems := func() error {
		err := x.db.Check(ctx, so.MaxDetails)
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

	so.Deep = o.Deep
	if so, err = x.ScrubOptions(ctx, so, "/"); err != nil {
		return r, fmt.Errorf("fsck: %w", err)
	}
	// Only the unrecoverable chunks' files are named (below): a chunk in
	// one tier loses no data.
	so.FilesOf = nil
	var missing []stores.ID
	so.OnDetail = func(d dual.Detail) { // one call at a time
		if d.Class != dual.ClassMissing {
			return
		}
		if id, err := stores.ParseID(d.Chunk); err == nil {
			missing = append(missing, id)
		}
	}
	sr, err := x.scrub(ctx, so, o.Progress)
	if err != nil {
		return r, fmt.Errorf("fsck: %w", err)
	}
	r.Chunks, r.Bytes = sr.Done, sr.DoneBytes
	r.OneSided = sr.PrimaryOnly + sr.SafetyOnly + sr.Mismatches
	r.Unrecoverable, r.Errors = sr.Missing, sr.Errors
	r.Details, r.DetailsTruncated = sr.Details, sr.DetailsTruncated

	files := map[string][]string{}
	seen := map[string]bool{}
	for _, id := range missing {
		names, err := x.filesOf(ctx, id)
		if err != nil {
			continue // the chunk is still reported, without its files
		}
		files[id.String()] = names
		for _, f := range names {
			if !seen[f] {
				seen[f] = true
				r.UnrecoverableFiles = append(r.UnrecoverableFiles, f)
			}
		}
	}
	slices.Sort(r.UnrecoverableFiles)
	for i, d := range r.Details {
		if names, ok := files[d.Chunk]; ok && d.Class == dual.ClassMissing {
			r.Details[i].Files = names
		}
	}
	if n, _, err := x.db.UnrefCount(ctx); err == nil {
		r.Unreferenced = n
	}
	r.Clean = r.IndexClean && r.Unrecoverable == 0 && r.Errors == 0
	return r, nil
}

// scrub runs a scrub to its end, reporting progress, and stops it when
// ctx is done.
func (x *Maintenance) scrub(ctx context.Context, so dual.ScrubOptions, progress func(dual.Report)) (dual.Report, error) {
	if err := ctx.Err(); err != nil {
		return dual.Report{}, err
	}
	s, err := x.dm.StartScrub(so)
	if err != nil {
		return dual.Report{}, err
	}
	defer context.AfterFunc(ctx, s.Stop)()
	ended := make(chan dual.Report, 1)
	go func() { ended <- s.Wait() }()
	tick := time.NewTicker(ProgressInterval)
	defer tick.Stop()
	var r dual.Report
wait:
	for {
		select {
		case r = <-ended:
			break wait
		case <-tick.C:
			if progress != nil {
				progress(s.Report())
			}
		}
	}
	if progress != nil {
		progress(r)
	}
	switch {
	case ctx.Err() != nil:
		return r, ctx.Err()
	case r.State == "failed":
		return r, errors.New(r.Error)
	case r.State != "done":
		return r, fmt.Errorf("chunk check %s before the end", r.State)
	}
	return r, nil
}
