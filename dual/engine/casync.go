package engine

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/chunker/caibx"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
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

// CaibxToStore writes a regular file's content into a desync local store
// (dir/<4 hex>/<id>.cacnk, zstd) and returns its blob index: each chunk
// read from the tiers (verified, falling back as any read does) and
// re-hashed with SHA512/256; each hole as zero chunks of at most the
// chunker's maximum size. A chunk the store already holds is not written
// again. This is how a BLAKE3 filesystem, or a file with holes, exports
// for desync.
func (e *Engine) CaibxToStore(ctx context.Context, ino uint64, dir string) (caibx.Index, error) {
	h := e.Index.Header()
	x := caibx.Index{FeatureFlags: caibx.FlagExcludeNoDump | caibx.FlagSHA512_256,
		Min: uint64(h.MinSize), Avg: uint64(h.AvgSize), Max: uint64(h.MaxSize)}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return x, configErr(fmt.Errorf("--to-store %s: not a directory (%v)", dir, err))
	}
	chunks, err := e.Index.Chunks(ctx, ino)
	if err != nil {
		return x, err
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return x, err
	}
	defer enc.Close()
	var off uint64
	put := func(data []byte) error {
		id := sha512.Sum512_256(data)
		if err := writeCacnk(dir, id, data, enc); err != nil {
			return err
		}
		x.Chunks = append(x.Chunks, caibx.Chunk{Start: off, Size: uint64(len(data)), ID: id})
		off += uint64(len(data))
		return nil
	}
	var zeros []byte
	for _, c := range chunks {
		if !c.Hole() {
			data, err := e.Dual.Get(stores.WithExpectedSize(ctx, c.ID, int64(c.Size)), c.ID)
			if err != nil {
				return x, fmt.Errorf("chunk %s at %d: %w", c.ID, off, err)
			}
			if err := put(data); err != nil {
				return x, err
			}
			continue
		}
		for n := uint64(c.Size); n > 0; {
			k := min(n, x.Max)
			if uint64(len(zeros)) < k {
				zeros = make([]byte, k)
			}
			if err := put(zeros[:k]); err != nil {
				return x, err
			}
			n -= k
		}
	}
	return x, nil
}

// writeCacnk stores one chunk as desync does: zstd, under its id's first
// four hex digits, written to a temp name and renamed (a reader never sees
// a part). A chunk already there is kept.
func writeCacnk(dir string, id [32]byte, data []byte, enc *zstd.Encoder) error {
	name := hex.EncodeToString(id[:])
	shard := filepath.Join(dir, name[:4])
	final := filepath.Join(shard, name+".cacnk")
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	if err := os.MkdirAll(shard, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(shard, ".tmp-cacnk-export-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(enc.EncodeAll(data, nil)); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), final)
}
