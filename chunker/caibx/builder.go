package caibx

import (
	"crypto/sha512"
	"errors"
)

// Builder makes the blob index of a file from its content in order, for a
// desync store that gets the chunks: each chunk is hashed with SHA512/256
// and handed to put with its id, and a hole becomes zero chunks of at most
// the header's maximum (a .caibx has no holes). Offline and online export
// build their indexes with it.
type Builder struct {
	x     Index
	put   func(id [32]byte, data []byte) error
	zeros []byte
}

// NewBuilder starts an index with the chunker's sizes (written into the
// header as casync does). put stores one chunk; it may see the same id
// more than once.
func NewBuilder(minSize, avgSize, maxSize uint64, put func(id [32]byte, data []byte) error) *Builder {
	return &Builder{
		x: Index{FeatureFlags: FlagExcludeNoDump | FlagSHA512_256,
			Min: minSize, Avg: avgSize, Max: max(maxSize, 1)},
		put: put,
	}
}

// Data appends a chunk of the file's bytes.
func (b *Builder) Data(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if uint64(len(data)) > b.x.Max {
		return errors.New("caibx: chunk larger than the index's maximum size")
	}
	id := sha512.Sum512_256(data)
	if err := b.put(id, data); err != nil {
		return err
	}
	b.x.Chunks = append(b.x.Chunks, Chunk{Start: b.x.Length(), Size: uint64(len(data)), ID: id})
	return nil
}

// Hole appends n zero bytes.
func (b *Builder) Hole(n uint64) error {
	for n > 0 {
		k := min(n, b.x.Max)
		if uint64(len(b.zeros)) < k {
			b.zeros = make([]byte, k)
		}
		if err := b.Data(b.zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Index returns the index built so far.
func (b *Builder) Index() Index { return b.x }
