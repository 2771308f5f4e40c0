package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/dualstore/dualstore/chunker/caibx"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// ErrNeedsRehash is returned for a file to export desync cannot extract
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

// CaibxToStore hands a regular file's content to put, chunk by chunk,
// re-hashed with SHA512/256 (a desync store's naming), and returns its blob
// index: each chunk read from the tiers (verified, falling back as any
// read does); each hole as zero chunks of at most the chunker's maximum
// size. This is how a BLAKE3 filesystem, or a file with holes, exports
// for desync.
func (e *Engine) CaibxToStore(ctx context.Context, ino uint64, put func(id [32]byte, data []byte) error) (caibx.Index, error) {
	h := e.Index.Header()
	b := caibx.NewBuilder(uint64(h.MinSize), uint64(h.AvgSize), uint64(h.MaxSize), put)
	chunks, err := e.Index.Chunks(ctx, ino)
	if err != nil {
		return b.Index(), err
	}
	var off uint64
	for _, c := range chunks {
		if c.Hole() {
			err = b.Hole(uint64(c.Size))
		} else {
			var data []byte
			// The index's size bounds the read: a copy of another size is
			// a corrupt one, refused unread.
			if data, err = e.Dual.Get(stores.WithExpectedSize(ctx, c.ID, int64(c.Size)), c.ID); err != nil {
				return b.Index(), fmt.Errorf("chunk %s at %d: %w", c.ID, off, err)
			}
			err = b.Data(data)
		}
		if err != nil {
			return b.Index(), err
		}
		off += uint64(c.Size)
	}
	return b.Index(), nil
}
