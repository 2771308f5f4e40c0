package local

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
)

// layoutCase is a layout a test runs a store in, with its chunk ids.
type layoutCase struct {
	name string
	opts Options
	id   func([]byte) stores.ID
}

var (
	layoutRaw        = layoutCase{"raw", Options{}, idOf}
	layoutCompressed = layoutCase{"compressed", Options{Compress: true}, idOf}
	layoutCasync     = layoutCase{"casync", Options{Layout: LayoutCasync}, casyncID}
)

func TestBufClass(t *testing.T) {
	for _, tt := range []struct{ n, class int }{
		{0, minBufShift}, {1, minBufShift}, {4096, 12}, {4097, 13},
		{1 << 20, 20}, {1<<20 + 1, 21}, {1 << maxBufShift, maxBufShift}, {1<<maxBufShift + 1, -1},
	} {
		if got := bufClass(tt.n); got != tt.class {
			t.Errorf("bufClass(%d) = %d, want %d", tt.n, got, tt.class)
		}
	}
}

// TestReadBufReuse: a released buffer is handed out again for a read of
// its size class, never for a larger one; a nil readBuf pools nothing.
func TestReadBufReuse(t *testing.T) {
	reused := false
	// sync.Pool may drop what it is given (under the race detector, a
	// random quarter of it), so one reuse in many tries is the test.
	for range 100 {
		a := new(readBuf)
		b := a.bytes(700 << 10)
		if len(b) != 700<<10 || cap(a.b) != 1<<20 {
			t.Fatalf("bytes(700 KiB): len %d, buffer cap %d, want 700 KiB and 1 MiB", len(b), cap(a.b))
		}
		first := &b[0]
		a.release()
		c := new(readBuf)
		if got := c.bytes(1 << 20); &got[0] == first {
			reused = true
			break
		}
		if got := c.bytes(1<<20 + 1); &got[0] == first {
			t.Fatal("a 1 MiB buffer was handed out for 1 MiB + 1 bytes")
		}
	}
	if !reused {
		t.Error("a released buffer was never handed out again")
	}
	var none *readBuf
	if b := none.bytes(10); len(b) != 10 {
		t.Errorf("nil readBuf: %d bytes", len(b))
	}
	none.release()
}

// TestGetOwnsChunk: what Get returns is the caller's for good, in every
// layout: chunks read one after another and at once (their frame buffers
// recycled in between) keep their bytes.
func TestGetOwnsChunk(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var chunks [][]byte
	for i, n := range []int{100, directMin - 1, directMin + 5, 300 << 10, 1<<20 - 7, 1 << 20, 2<<20 + 3} {
		random := make([]byte, n)
		for j := range random {
			random[j] = byte(rng.Uint32())
		}
		chunks = append(chunks, random, bytes.Repeat([]byte{byte(i), 'x', 'y'}, n/3+1))
	}
	for _, tt := range []layoutCase{layoutRaw, layoutCompressed, layoutCasync} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocal(t, tt.opts)
			ctx := t.Context()
			for _, c := range chunks {
				if err := l.Put(ctx, tt.id(c), c); err != nil {
					t.Fatal(err)
				}
			}
			got := make([][]byte, len(chunks))
			for round := range 3 {
				var wg sync.WaitGroup
				for i, c := range chunks {
					wg.Go(func() {
						b, err := l.Get(ctx, tt.id(c))
						if err != nil {
							t.Error(err)
							return
						}
						if round == 0 {
							got[i] = b
						}
					})
				}
				wg.Wait()
			}
			for i, c := range chunks {
				if !bytes.Equal(got[i], c) {
					t.Errorf("chunk %d (%d bytes): changed after later reads", i, len(c))
				}
			}
		})
	}
}

// TestPutRecyclesFrames: a store that writes frames encodes each chunk
// into a recycled buffer (a fresh one costs its zeroing), and no frame is
// written with another's bytes: chunks put at once, under deadlines (the
// write runs on its own goroutine, which gives the buffer back), read
// back whole. A raw store's puts, and a compressed store's of chunks
// that do not compress, keep no frame at all.
func TestPutRecyclesFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	chunks := make([][]byte, 64)
	for i := range chunks {
		c := make([]byte, 300<<10+i)
		for j := range c {
			c[j] = byte(rng.Uint32())
		}
		chunks[i] = c
	}
	for _, tt := range []layoutCase{layoutCompressed, layoutCasync, layoutRaw} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocal(t, tt.opts)
			// Under a deadline, as the dual manager calls, with chunks
			// nobody changes (else a raw chunk is copied for the write).
			ctx, cancel := context.WithTimeout(stores.WithImmutableData(t.Context()), time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			for _, c := range chunks[:32] {
				wg.Go(func() {
					if err := l.Put(ctx, tt.id(c), c); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()

			// One at a time, the rest: what they allocate is far less
			// than their frames (a frame is at least its chunk here, the
			// chunks being random).
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var framed int
			for _, c := range chunks[32:] {
				if err := l.Put(ctx, tt.id(c), c); err != nil {
					t.Fatal(err)
				}
				framed += len(c)
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(framed/3) {
				t.Errorf("32 puts of %d bytes allocated %d bytes: frames are not recycled", framed, alloc)
			}

			for _, c := range chunks {
				b, err := l.Get(ctx, tt.id(c))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, c) {
					t.Fatalf("chunk of %d bytes reads back changed", len(c))
				}
			}
		})
	}
}

// TestPutKeepsChecksummedFrame: a chunk file written as a frame with the
// checksum (by an older version, or by desync) is a whole copy, not
// rewritten by a Put of the same chunk, which encodes without it.
func TestPutKeepsChecksummedFrame(t *testing.T) {
	chunk := bytes.Repeat([]byte("a frame with its checksum "), 2000)
	old, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	frame := old.EncodeAll(chunk, nil)
	for _, tt := range []layoutCase{layoutCompressed, layoutCasync} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocal(t, tt.opts)
			id := tt.id(chunk)
			p := l.path(id)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, frame, 0o644); err != nil {
				t.Fatal(err)
			}
			before, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Put(t.Context(), id, chunk); err != nil {
				t.Fatal(err)
			}
			after, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, after) || after.Size() != int64(len(frame)) {
				t.Errorf("the checksummed frame (%d bytes) was replaced by a file of %d bytes", len(frame), after.Size())
			}
			if got, err := l.Get(t.Context(), id); err != nil || !bytes.Equal(got, chunk) {
				t.Errorf("Get: %v, equal %v", err, bytes.Equal(got, chunk))
			}
		})
	}
}
