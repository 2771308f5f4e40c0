package chunker

import (
	"errors"
	"sync/atomic"
)

var (
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("chunker: stream closed")
	// ErrAborted is returned by Write and Close after Abort stopped the
	// stream before it was closed.
	ErrAborted = errors.New("chunker: stream aborted")
)

// Stream chunks bytes as they arrive through Write and emits every chunk
// as soon as its end has been found, so the caller can store chunks while
// the file is still being written.
//
// The work runs as a pipeline, so that on a machine with more than one
// core the steps of consecutive chunks overlap:
//
//	Write ──► inbox (ring) ──► cut: restic's rolling hash
//	      ──► hash: copy out of restic's buffer, chunk id
//	      ──► emit: the caller's callback, in stream order
//
// A Write returns as soon as its bytes are in the inbox. Each stage runs
// on a goroutine of its own and hands on through a bounded queue, so the
// slowest stage (restic's rolling hash, about 2 s per GiB on one core
// here) is the only one the writer waits for, and memory stays bounded.
//
// Memory per stream is bounded whatever the length: the inbox ring,
// restic's 512 KiB read buffer, two chunk buffers restic fills in turn (up
// to MaxSize each), and up to emitQueue+2 chunks being hashed or waiting
// for emit.
//
// Write, Close and Offset must be called from one goroutine at a time
// (like any io.Writer); Abort may be called from any goroutine at any time
// except from inside emit (Close and Abort wait for emit to return: from
// emit, return an error instead to stop the stream).
type Stream struct {
	in   *inbox
	done chan struct{} // closed when the pipeline's goroutines have returned
	err  error         // the pipeline's result; read only after done

	offset    atomic.Uint64
	closed    atomic.Bool
	aborted   atomic.Bool
	predicted atomic.Int64
}

// Predicted returns how many chunks so far were cut by prediction (see
// StreamOptions.Predict) rather than by the rolling hash.
func (s *Stream) Predicted() int64 { return s.predicted.Load() }

// NewStream starts a stream that cuts with p, ids chunks with hash, and
// calls emit for each chunk: sequentially, in stream order, from a
// goroutine of its own. emit owns the Chunk it is given. If emit returns an
// error the stream stops: later Writes and Close return that error
// (wrapped). Every stream must end with Close or Abort, or its goroutines
// leak.
func NewStream(p Params, hash HashFunc, emit func(Chunk) error) (*Stream, error) {
	return NewStreamWith(p, hash, emit, StreamOptions{})
}

// StreamOptions are the optional parts of a Stream.
type StreamOptions struct {
	// Predict, if set, names a candidate for the chunk that follows the
	// chunk prev: a chunk whose end is a cut the chunker made (never a
	// stream's last chunk, which ends where the bytes did). When the next
	// bytes hash to next, the stream takes the cut without running the
	// rolling hash over them: content-defined cuts depend only on the bytes
	// since the last cut, so equal bytes from a cut give the same cut.
	// A wrong prediction costs one hash of size bytes, nothing else.
	//
	// This makes a second copy of known data cost a hash per chunk instead
	// of restic's rolling hash, about five times slower. It is called from
	// the stream's cutting goroutine and must be safe for concurrent use.
	Predict Predictor
}

// Predictor proposes the chunk after prev (see StreamOptions.Predict).
type Predictor func(prev [32]byte) (next [32]byte, size uint32, ok bool)

// NewStreamWith is NewStream with options.
func NewStreamWith(p Params, hash HashFunc, emit func(Chunk) error, o StreamOptions) (*Stream, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if hash == nil || emit == nil {
		return nil, errors.New("chunker: new stream: nil HashFunc or emit")
	}
	size := inboxSize
	if o.Predict != nil {
		// A predicted chunk (up to MaxSize) is read, hashed and, if it
		// was not the one predicted, read again by restic: it must fit
		// in the ring with room for the writer.
		size = int(p.MaxSize) + inboxSize
	}
	s := &Stream{in: newInbox(size), done: make(chan struct{})}
	go s.run(p, hash, emit, o.Predict)
	return s, nil
}

func (s *Stream) run(p Params, hash HashFunc, emit func(Chunk) error, pred Predictor) {
	defer close(s.done)
	err := cut(s.in, p, hash, s.aborted.Load, s.in.fail, emit, cutPredict{in: s.in, pred: pred, hits: &s.predicted})
	if err != nil {
		// Unblock and fail the current and later Writes with the cause.
		s.in.fail(err)
	}
	s.in.release()
	s.err = err
}

// Write feeds p to the chunker. It returns once p is queued; it blocks
// while the queue is full (for instance while emit blocks), which is what
// bounds a stream's memory. An error that stopped the stream (a failed
// emit) is returned by the Writes after it.
func (s *Stream) Write(p []byte) (int, error) {
	if s.aborted.Load() {
		return 0, ErrAborted
	}
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := s.in.write(p)
	s.offset.Add(uint64(n))
	if err != nil && s.aborted.Load() {
		err = ErrAborted
	}
	return n, err
}

// Offset returns the number of bytes written so far.
func (s *Stream) Offset() uint64 {
	return s.offset.Load()
}

// Close ends the input, waits until the final (possibly short) chunk and
// all others have been emitted, and returns the first error from emit or
// from chunking. Calling Close again returns the same result.
func (s *Stream) Close() error {
	if !s.closed.Swap(true) {
		s.in.close()
	}
	<-s.done
	return s.err
}

// Abort stops the stream without emitting any further chunk and waits for
// its goroutines to return (including an emit call in progress). It is
// idempotent and does nothing after Close has returned.
func (s *Stream) Abort() {
	s.aborted.Store(true)
	s.in.fail(ErrAborted)
	<-s.done
}
