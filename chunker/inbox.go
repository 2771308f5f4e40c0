package chunker

import (
	"io"
	"sync"
)

// inboxSize is how many bytes a stream takes from its writer ahead of the
// chunker: two of FUSE's largest writes (1 MiB), so the writer's next
// write(2) is already arriving while the chunker works through the last.
const inboxSize = 2 * miB

// rings recycles inbox buffers: a stream is often short-lived (one file),
// and a fresh 2 MiB allocation per file would be mostly garbage work.
var rings = sync.Pool{New: func() any {
	b := make([]byte, inboxSize)
	return &b
}}

// inbox is the bounded queue between a Stream's writer and its chunker: a
// ring buffer that Write copies into and the chunker reads from (it is the
// io.Reader restic's chunker pulls through). Unlike an io.Pipe, whose Write
// waits until the reader has consumed every byte, a write here returns as
// soon as its bytes are queued, so the writer and the chunker run at the
// same time instead of taking turns.
//
// One goroutine writes and one reads; fail may be called from any.
type inbox struct {
	mu   sync.Mutex
	cond sync.Cond
	ring []byte // from rings; nil until the first write and after release
	r, w uint64 // bytes read and written so far: w-r are queued
	eof  bool   // the writer is done: reads drain the queue, then io.EOF
	err  error  // the stream failed or ended: reads and writes return it
}

func newInbox() *inbox {
	in := &inbox{}
	in.cond.L = &in.mu
	return in
}

// write queues all of p, waiting for room as the chunker reads. It
// returns early only with the error that ended the stream.
func (in *inbox) write(p []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for in.err == nil && !in.eof && in.ring != nil && in.w-in.r == uint64(len(in.ring)) {
			in.cond.Wait()
		}
		switch {
		case in.err != nil:
			return n, in.err
		case in.eof:
			return n, ErrClosed
		}
		if in.ring == nil {
			in.ring = *rings.Get().(*[]byte)
		}
		size := uint64(len(in.ring))
		k := min(int(size-(in.w-in.r)), len(p))
		at := int(in.w % size)
		c := copy(in.ring[at:], p[:k])
		copy(in.ring, p[c:k]) // the part that wraps around, if any
		in.w += uint64(k)
		n += k
		p = p[k:]
		in.cond.Broadcast()
	}
	return n, nil
}

// Read implements io.Reader for the chunker.
func (in *inbox) Read(b []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for in.err == nil && !in.eof && in.w == in.r {
		in.cond.Wait()
	}
	if in.err != nil {
		return 0, in.err
	}
	if in.w == in.r {
		return 0, io.EOF
	}
	size := uint64(len(in.ring))
	k := min(int(in.w-in.r), len(b))
	at := int(in.r % size)
	c := copy(b[:k], in.ring[at:])
	copy(b[c:k], in.ring)
	in.r += uint64(k)
	in.cond.Broadcast()
	return k, nil
}

// close ends the input: the chunker reads what is queued, then io.EOF.
func (in *inbox) close() {
	in.mu.Lock()
	in.eof = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

// fail ends the stream with err (the first error wins): a blocked or later
// write and read return it at once.
func (in *inbox) fail(err error) {
	in.mu.Lock()
	if in.err == nil {
		in.err = err
	}
	in.cond.Broadcast()
	in.mu.Unlock()
}

// release gives the ring back once the chunker is done with it; later
// writes get ErrClosed (or the error the stream failed with).
func (in *inbox) release() {
	in.mu.Lock()
	if in.err == nil {
		in.err = ErrClosed
	}
	if in.ring != nil {
		ring := in.ring
		in.ring = nil
		rings.Put(&ring)
	}
	in.cond.Broadcast()
	in.mu.Unlock()
}
