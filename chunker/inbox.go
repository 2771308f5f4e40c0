package chunker

import (
	"io"
	"sync"
)

// inboxSize is how many bytes a stream takes from its writer ahead of the
// chunker: two of FUSE's largest writes (1 MiB), so the writer's next
// write(2) is already arriving while the chunker works through the last.
const inboxSize = 2 * miB

// resticBuf is how much restic's chunker reads ahead (its chunkerBufSize):
// the cut it returns lies within the last resticBuf bytes it read. The
// inbox keeps that much behind its read position, so the stream can go
// back to a cut restic has read past (see rewind). Should restic read
// further ahead, rewind refuses and the stream just keeps cutting with
// restic: slower, never wrong.
const resticBuf = 512 << 10

// rings recycles inbox buffers by size: a stream is often short-lived (one
// file), and a fresh allocation of several MiB per file would be mostly
// garbage work.
var rings sync.Map // int → *sync.Pool of *[]byte

func getRing(size int) []byte {
	if p, ok := rings.Load(size); ok {
		return *p.(*sync.Pool).Get().(*[]byte)
	}
	p, _ := rings.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return *p.(*sync.Pool).Get().(*[]byte)
}

func putRing(b []byte) {
	if p, ok := rings.Load(len(b)); ok {
		p.(*sync.Pool).Put(&b)
	}
}

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
	size int    // of the ring
	ring []byte // from rings; nil until the first write and after release
	r, w uint64 // bytes read and written so far: w-r are queued
	// keep is where the bytes still needed start (keep <= r): the writer
	// may overwrite only what lies before it. Reads keep resticBuf bytes
	// behind r; peek keeps everything from r.
	keep uint64
	eof  bool  // the writer is done: reads drain the queue, then io.EOF
	err  error // the stream failed or ended: reads and writes return it
}

// newInbox returns an inbox whose ring holds size bytes.
func newInbox(size int) *inbox {
	in := &inbox{size: size}
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
		for in.err == nil && !in.eof && in.ring != nil && in.w-in.keep == uint64(len(in.ring)) {
			in.cond.Wait()
		}
		switch {
		case in.err != nil:
			return n, in.err
		case in.eof:
			return n, ErrClosed
		}
		if in.ring == nil {
			in.ring = getRing(in.size)
		}
		size := uint64(len(in.ring))
		k := min(int(size-(in.w-in.keep)), len(p))
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
	if in.r > resticBuf {
		in.keep = max(in.keep, in.r-resticBuf)
	}
	in.cond.Broadcast()
	return k, nil
}

// rewind moves the read position back to off, a cut restic returned after
// reading past it, so the bytes from off can be read again. It reports
// false, changing nothing, if those bytes are no longer kept.
func (in *inbox) rewind(off uint64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if off < in.keep || off > in.r || in.err != nil {
		return false
	}
	in.r, in.keep = off, off
	in.cond.Broadcast()
	return true
}

// peek returns a copy of the next n bytes from the read position without
// consuming them, waiting until the writer has written them; fewer at the
// end of the stream. n must not exceed the ring's size.
func (in *inbox) peek(n int) ([]byte, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.keep = in.r // every byte from r on stays until advance or a read
	in.cond.Broadcast()
	for in.err == nil && !in.eof && in.w-in.r < uint64(n) {
		in.cond.Wait()
	}
	if in.err != nil {
		return nil, in.err
	}
	k := min(int(in.w-in.r), n)
	out := make([]byte, k)
	size := uint64(len(in.ring))
	if k > 0 {
		at := int(in.r % size)
		c := copy(out, in.ring[at:])
		copy(out[c:], in.ring)
	}
	return out, nil
}

// advance consumes n bytes that peek returned.
func (in *inbox) advance(n int) {
	in.mu.Lock()
	in.r += uint64(n)
	in.keep = in.r
	in.cond.Broadcast()
	in.mu.Unlock()
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
		putRing(in.ring)
		in.ring = nil
	}
	in.cond.Broadcast()
	in.mu.Unlock()
}
