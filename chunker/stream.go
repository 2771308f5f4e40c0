package chunker

import (
	"errors"
	"io"
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
// restic's chunker pulls its input through an io.Reader; a Stream feeds it
// through an io.Pipe from one goroutine per stream, which also hashes the
// chunks and calls emit. A Write returns once the chunker has taken its
// bytes into its read buffer: a chunk is emitted when the chunker has read
// up to 512 KiB (restic's buffer) past its end, or at Close.
//
// Memory per stream is bounded whatever the length: restic's 512 KiB read
// buffer, one chunk being assembled (up to MaxSize) and the chunk being
// emitted.
//
// Write, Close and Offset must be called from one goroutine at a time
// (like any io.Writer); Abort may be called from any goroutine at any time.
type Stream struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	done chan struct{} // closed when the chunking goroutine has returned
	err  error         // the goroutine's result; read only after done

	offset  atomic.Uint64
	closed  atomic.Bool
	aborted atomic.Bool
}

// NewStream starts a stream that cuts with p, ids chunks with hash, and
// calls emit for each chunk: sequentially, in stream order, from a
// goroutine of its own. emit owns the Chunk it is given. If emit returns an
// error the stream stops: later Writes and Close return that error
// (wrapped). Every stream must end with Close or Abort, or its goroutine
// leaks.
func NewStream(p Params, hash HashFunc, emit func(Chunk) error) (*Stream, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if hash == nil || emit == nil {
		return nil, errors.New("chunker: new stream: nil HashFunc or emit")
	}
	pr, pw := io.Pipe()
	s := &Stream{pr: pr, pw: pw, done: make(chan struct{})}
	go s.run(p, hash, emit)
	return s, nil
}

func (s *Stream) run(p Params, hash HashFunc, emit func(Chunk) error) {
	defer close(s.done)
	err := cut(s.pr, p, hash, s.aborted.Load, emit)
	if err != nil {
		// Unblock and fail the current and later Writes with the cause.
		s.pr.CloseWithError(err)
	}
	s.err = err
}

// Write feeds p to the chunker. It blocks while the chunker is busy (for
// instance while emit blocks), which is what bounds a stream's memory.
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
	n, err := s.pw.Write(p)
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
		s.pw.Close()
	}
	<-s.done
	return s.err
}

// Abort stops the stream without emitting any further chunk and waits for
// its goroutine to return (including an emit call in progress). It is
// idempotent and does nothing after Close has returned.
func (s *Stream) Abort() {
	s.aborted.Store(true)
	s.pr.CloseWithError(ErrAborted)
	s.pw.CloseWithError(ErrAborted)
	<-s.done
}
