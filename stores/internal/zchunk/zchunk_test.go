package zchunk

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
)

// TestCompressedBound: no chunk compresses, by the encoder settings in
// use (ours, desync's defaults, the fastest and the best), to a frame
// larger than stores.CompressedBound of its size, incompressible data
// included: a frame that large is corrupt, never a chunk.
func TestCompressedBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var encs []*zstd.Encoder
	for _, opts := range [][]zstd.EOption{
		{zstd.WithEncoderCRC(true), zstd.WithSingleSegment(true), zstd.WithZeroFrames(true)},
		nil,
		{zstd.WithEncoderLevel(zstd.SpeedFastest)},
		{zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithZeroFrames(true)},
	} {
		e, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		encs = append(encs, e)
	}
	for _, n := range []int{0, 1, 100, 4095, 128<<10 - 1, 128 << 10, 128<<10 + 1, 1 << 20, 4<<20 + 7} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for i, e := range encs {
			if got, bound := int64(len(e.EncodeAll(data, nil))), stores.CompressedBound(int64(n)); got > bound {
				t.Errorf("encoder %d: %d random bytes compress to %d, past the bound %d", i, n, got, bound)
			}
		}
	}
}

// TestDecode checks Decode against its bound: the chunk comes back where
// its size is what the bound allows; anything else wraps ErrCorrupt.
func TestDecode(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	enc, err := zstd.NewWriter(nil, zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i % 251)
	}
	frame := enc.EncodeAll(data, nil)
	var id stores.ID
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		ok   bool
	}{
		{"no bound but the max", ctx, true},
		{"expected size", stores.WithExpectedSize(ctx, id, int64(len(data))), true},
		{"max of its size", stores.WithMaxSize(ctx, int64(len(data))), true},
		{"expected one less", stores.WithExpectedSize(ctx, id, int64(len(data))-1), false},
		{"expected one more", stores.WithExpectedSize(ctx, id, int64(len(data))+1), false},
		{"max one less", stores.WithMaxSize(ctx, int64(len(data))-1), false},
	} {
		got, err := Decode(dec, frame, stores.BoundOf(tc.ctx, id))
		switch {
		case tc.ok && (err != nil || string(got) != string(data)):
			t.Errorf("%s: %d bytes, %v; want the chunk", tc.name, len(got), err)
		case !tc.ok && !errors.Is(err, stores.ErrCorrupt):
			t.Errorf("%s: %d bytes, %v; want ErrCorrupt", tc.name, len(got), err)
		}
	}
	for name, bad := range map[string][]byte{
		"magic only": []byte(Magic),
		"truncated":  frame[:len(frame)/2],
		"garbage":    append([]byte(Magic), make([]byte, 64)...),
	} {
		if _, err := Decode(dec, bad, stores.BoundOf(ctx, id)); !errors.Is(err, stores.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestEncoderFrames checks what NewEncoder writes: frames that record
// their content size and carry no checksum (the content address checks
// every chunk read), an empty chunk as a frame only with zeroFrames; and
// that a frame with a checksum, as older versions wrote, still decodes.
func TestEncoderFrames(t *testing.T) {
	data := bytes.Repeat([]byte("dualstore chunk "), 4096)
	for _, zero := range []bool{false, true} {
		enc, err := NewEncoder(zero)
		if err != nil {
			t.Fatal(err)
		}
		frame := enc.EncodeAll(data, nil)
		var h zstd.Header
		if err := h.Decode(frame); err != nil {
			t.Fatal(err)
		}
		if h.HasCheckSum || !h.HasFCS || h.FrameContentSize != uint64(len(data)) {
			t.Errorf("zeroFrames %v: header %+v, want a content size of %d and no checksum", zero, h, len(data))
		}
		if empty := enc.EncodeAll(nil, nil); (len(empty) > 0) != zero {
			t.Errorf("zeroFrames %v: an empty chunk encodes to %d bytes", zero, len(empty))
		}
		enc.Close()
	}

	old, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	frame := old.EncodeAll(data, nil)
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := Decode(dec, frame, stores.Bound{Exact: int64(len(data)), Max: stores.MaxChunkSize})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a frame with a checksum: %v, equal %v", err, bytes.Equal(got, data))
	}
	frame[len(frame)-1] ^= 0xff // the checksum is still checked where present
	if _, err := Decode(dec, frame, stores.Bound{Exact: int64(len(data)), Max: stores.MaxChunkSize}); !errors.Is(err, stores.ErrCorrupt) {
		t.Fatalf("a frame with a bad checksum: %v, want ErrCorrupt", err)
	}
}
