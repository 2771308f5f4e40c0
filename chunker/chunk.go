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
	}, cutPredict{})
	if err != nil {
		return nil, err
	}
	return chunks, nil
}

// emitQueue is how many hashed chunks may wait for emit while emit is busy
// (a store write pool that is full, say) before the cutting stops too.
const emitQueue = 4

// cutPredict is what cut needs to take predicted cuts: the predictor and
// the inbox the stream reads from (to read a predicted chunk without
// restic, and to go back when the prediction was wrong). Zero for Split.
type cutPredict struct {
	in   *inbox
	pred Predictor
	hits *atomic.Int64 // counts the predicted chunks taken
}

// maxProbeGap bounds how many chunks cut goes without asking whether the
// data it cuts is known (see cut).
const maxProbeGap = 64

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
//
// With a predictor (pp), the caller's goroutine also follows known data:
// after a chunk whose id it knows, it asks the predictor for the next
// chunk, reads that many bytes from the inbox and hashes them; if they
// are the predicted chunk, that is the next cut, and restic is not run
// over them. Otherwise restic starts again at the same offset. While the
// data is new it asks only now and then,
// hashing one of restic's chunks itself to know its id: right after a
// wrong prediction and twice more, then after 1, 2, 4 … 64 chunks.
func cut(r io.Reader, p Params, hash HashFunc, stop func() bool, fail func(error), emit func(Chunk) error, pp cutPredict) error {
	c := chunker.NewWithBoundaries(r, chunker.Pol(p.Polynomial), p.MinSize, p.MaxSize)
	c.SetAverageBits(p.averageBits())

	type piece struct {
		off    uint64
		data   []byte // in a chunk buffer, going back through free once copied; or owned
		owned  bool   // data is a fresh copy (a predicted chunk): no copy, no free
		hashed bool   // id is set
		id     [32]byte
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
			data := pc.data
			if !pc.owned {
				if failed.Load() {
					free <- pc.data[:0]
					continue
				}
				data = bytes.Clone(pc.data)
				free <- pc.data[:0]
			} else if failed.Load() {
				continue
			}
			id := pc.id
			if !pc.hashed {
				id = hash(data)
			}
			hashed <- Chunk{Offset: pc.off, Data: data, ID: id}
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
		// Prediction state: next is the predicted chunk at off, if any;
		// restart means restic must start afresh at off (it read past it
		// or never saw the bytes before it).
		next struct {
			id   [32]byte
			size uint32
			ok   bool
		}
		restart   bool
		probeIn   int // restic chunks to cut before asking again
		misses    int // probes in a row that found nothing
		predictOK = pp.pred != nil && pp.in != nil
	)
	predict := func(prev [32]byte) {
		id, size, ok := pp.pred(prev)
		// A chunk outside [MinSize, MaxSize] cannot end at a cut (a
		// predictor breaking its contract): never taken.
		next.id, next.size, next.ok = id, size, ok && size >= uint32(p.MinSize) && size <= uint32(p.MaxSize)
	}
	for !failed.Load() {
		if next.ok {
			next.ok = false
			data, err := pp.in.peek(int(next.size))
			if err != nil {
				if stop != nil && stop() {
					err = ErrAborted
				}
				cutErr = err // a failed emit's error comes first (below)
				break
			}
			if len(data) == int(next.size) && hash(data) == next.id {
				pp.in.advance(len(data))
				if pp.hits != nil {
					pp.hits.Add(1)
				}
				pieces <- piece{off: off, data: data, owned: true, hashed: true, id: next.id}
				off += uint64(len(data))
				predict(next.id)
				continue
			}
			// Not the predicted bytes (an edit): restic cuts from off, and
			// the chunks right after are probed, where the data usually
			// becomes known again.
			probeIn, misses = 0, 0
		}
		if restart {
			c.ResetWithBoundaries(r, chunker.Pol(p.Polynomial), p.MinSize, p.MaxSize)
			c.SetAverageBits(p.averageBits())
			restart = false
		}
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
		pc := piece{off: off, data: rc.Data}
		off += uint64(len(rc.Data))
		if predictOK {
			if probeIn > 0 {
				probeIn--
			} else {
				pc.id, pc.hashed = hash(rc.Data), true
				predict(pc.id)
				if next.ok && pp.in.rewind(off) {
					restart, misses = true, 0
				} else {
					next.ok = false
					misses++
					if misses >= 3 { // new data: ask less and less often
						probeIn = min(1<<(misses-3), maxProbeGap)
					}
				}
			}
		}
		pieces <- pc
	}
	close(pieces)
	<-emitted
	if emitErr != nil {
		return emitErr
	}
	return cutErr
}
