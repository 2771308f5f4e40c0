package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

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
	err := cut(bytes.NewReader(data), p, hash, nil, nil, func(c Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return chunks, nil
}

// emitQueue is how many hashed chunks may wait for emit while emit is busy
// (a store write pool that is full, say) before the cutting stops too.
const emitQueue = 4

// cut runs restic's chunker over r and hands every chunk to emit, in order,
// until r is exhausted or emit fails. stop, if not nil, is consulted before
// every emit; when it reports true, cut returns ErrAborted. fail, if not
// nil, is called with the error when emit fails, from emit's goroutine: it
// must make r's reads return (with an error) so the cutting stops.
//
// Three goroutines work at once (see Stream): the caller's runs restic's
// rolling hash into one of two chunk buffers; a second copies each chunk
// out (so restic can reuse the buffer) and computes its id; a third calls
// emit. restic never sees a buffer the copy is still reading: the buffers
// go back and forth through free.
func cut(r io.Reader, p Params, hash HashFunc, stop func() bool, fail func(error), emit func(Chunk) error) error {
	c := chunker.NewWithBoundaries(r, chunker.Pol(p.Polynomial), p.MinSize, p.MaxSize)
	c.SetAverageBits(p.averageBits())

	type piece struct {
		off  uint64
		data []byte // in a chunk buffer; goes back through free once copied
	}
	var (
		pieces  = make(chan piece)
		hashed  = make(chan Chunk, emitQueue)
		free    = make(chan []byte, 2)
		failed  atomic.Bool // set by the emit goroutine only
		emitErr error       // the emit goroutine's; read after emitted is closed
		emitted = make(chan struct{})
	)
	free <- nil // restic allocates a buffer on first use and grows it
	free <- nil

	go func() { // copy and hash
		defer close(hashed)
		for pc := range pieces {
			if failed.Load() {
				free <- pc.data[:0]
				continue
			}
			data := bytes.Clone(pc.data)
			free <- pc.data[:0]
			hashed <- Chunk{Offset: pc.off, Data: data, ID: hash(data)}
		}
	}()
	go func() { // emit, in order
		defer close(emitted)
		setErr := func(err error) {
			emitErr = err
			failed.Store(true)
			if fail != nil {
				fail(err)
			}
		}
		for ch := range hashed {
			if failed.Load() {
				continue // drain, so the stages before can finish
			}
			if stop != nil && stop() {
				setErr(ErrAborted)
				continue
			}
			if err := emit(ch); err != nil {
				setErr(fmt.Errorf("chunker: emit chunk at offset %d: %w", ch.Offset, err))
			}
		}
	}()

	var (
		off    uint64
		cutErr error
	)
	for !failed.Load() {
		rc, err := c.Next(<-free)
		if err == io.EOF {
			break
		}
		if err != nil {
			if stop != nil && stop() {
				err = ErrAborted
			} else {
				err = fmt.Errorf("chunker: cut at offset %d: %w", off, err)
			}
			cutErr = err
			break
		}
		pieces <- piece{off: off, data: rc.Data}
		off += uint64(len(rc.Data))
	}
	close(pieces)
	<-emitted
	if emitErr != nil {
		return emitErr
	}
	return cutErr
}
