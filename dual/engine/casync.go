package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/chunker/caibx"
	"github.com/dualstore/dualstore/index"
)

// ErrNeedsRehash is returned by CaibxOf for a file desync cannot extract
// from this filesystem's chunks as they are: ids that are not SHA512/256,
// or holes (a .caibx has no holes; they would need zero chunks written).
var ErrNeedsRehash = errors.New("the file's chunks must be re-hashed into a desync store (export --to-store)")

// Resolve finds the inode of a path from the filesystem's root ("/a/b").
func (e *Engine) Resolve(ctx context.Context, p string) (index.Attr, error) {
	a, err := e.Index.GetAttr(ctx, index.RootIno)
	if err != nil {
		return a, err
	}
	for _, name := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if name == "" {
			continue
		}
		if a, err = e.Index.Lookup(ctx, a.Ino, name); err != nil {
			return a, fmt.Errorf("%s: %w", p, err)
		}
	}
	return a, nil
}

// CaibxOf returns the casync blob index of a regular file: its chunks as
// they are in the tiers, so that `desync extract` with a casync-layout
// store of this filesystem (or any store holding these chunks) gives the
// file bit-exact. The chunker's sizes go into the header as casync does.
func (e *Engine) CaibxOf(ctx context.Context, ino uint64) (caibx.Index, error) {
	h := e.Index.Header()
	x := caibx.Index{Min: uint64(h.MinSize), Avg: uint64(h.AvgSize), Max: uint64(h.MaxSize)}
	if h.Hash != chunker.HashSHA512_256 {
		return x, fmt.Errorf("filesystem hash %s: %w", h.Hash, ErrNeedsRehash)
	}
	x.FeatureFlags = caibx.FlagExcludeNoDump | caibx.FlagSHA512_256
	chunks, err := e.Index.Chunks(ctx, ino)
	if err != nil {
		return x, err
	}
	var off uint64
	for _, c := range chunks {
		if c.Hole() {
			return x, fmt.Errorf("inode %d has a hole at %d: %w", ino, off, ErrNeedsRehash)
		}
		x.Chunks = append(x.Chunks, caibx.Chunk{Start: off, Size: uint64(c.Size), ID: c.ID})
		off += uint64(c.Size)
	}
	return x, nil
}
