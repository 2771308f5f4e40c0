package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Chunk is one content-defined piece of a byte stream.
type Chunk struct {
	// Offset is where the chunk starts in the stream.
	Offset uint64
	// Data is the chunk's bytes, in a fresh slice that the receiver owns:
	// it is never reused or modified by this package.
	Data []byte
	// ID is the HashFunc of Data.
	ID [32]byte
}

// Split cuts data into chunks with p and hash. For the same bytes and
// params it returns exactly the chunks a Stream emits, however the bytes
// are split into Writes. Empty data yields no chunks.
func Split(data []byte, p Params, hash HashFunc) ([]Chunk, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if hash == nil {
		return nil, errors.New("chunker: split: nil HashFunc")
	}
	var chunks []Chunk
	err := cut(bytes.NewReader(data), p, hash, nil, func(c Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return chunks, nil
}

// cut runs restic's chunker over r and hands every chunk to emit, in order,
// until r is exhausted or emit fails. stop, if not nil, is consulted before
// every emit; when it reports true, cut returns ErrAborted.
//
// Memory: restic's read buffer plus one chunk being assembled (at most
// MaxSize, reused) plus the copy handed to emit.
func cut(r io.Reader, p Params, hash HashFunc, stop func() bool, emit func(Chunk) error) error {
	c := chunker.NewWithBoundaries(r, chunker.Pol(p.Polynomial), p.MinSize, p.MaxSize)
	c.SetAverageBits(p.averageBits())
	var (
		buf []byte // restic appends the chunk here; grows once up to about MaxSize
		off uint64
	)
	for {
		rc, err := c.Next(buf)
		if err == io.EOF {
			return nil
		}
		if stop != nil && stop() {
			return ErrAborted
		}
		if err != nil {
			return fmt.Errorf("chunker: cut at offset %d: %w", off, err)
		}
		buf = rc.Data[:0]
		data := bytes.Clone(rc.Data)
		ch := Chunk{Offset: off, Data: data, ID: hash(data)}
		off += uint64(len(data))
		if err := emit(ch); err != nil {
			return fmt.Errorf("chunker: emit chunk at offset %d: %w", ch.Offset, err)
		}
	}
}
