// Package zchunk decodes the zstd frames chunk stores keep (compressed
// chunks of stores/local, the casync layout of stores/local and
// stores/s3) within a stores.Bound: a frame is never decoded past the
// size its reader allows, so a damaged or hostile frame (a zstd bomb, a
// header claiming gigabytes) costs at most that much memory and is
// reported as stores.ErrCorrupt.
//
// It imports only package stores and klauspost/compress.
package zchunk

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
)

// Magic starts every zstd frame (RFC 8878, section 3.1.1).
const Magic = "\x28\xb5\x2f\xfd"

// ChecksumSize is the size of a frame's content checksum (the low 32
// bits of its xxhash64, RFC 8878 section 3.1.1), which frames written
// with the checksum flag end with.
const ChecksumSize = 4

// IsFrame reports whether b starts like a zstd frame.
func IsFrame(b []byte) bool {
	return len(b) >= len(Magic) && string(b[:len(Magic)]) == Magic
}

// NewEncoder returns the encoder every zstd chunk store writes with: safe
// for concurrent use (EncodeAll, as many parallel states as CPUs),
// single-segment frames, which always record their content size (the
// encoder leaves it out of small multi-segment ones), so Stat reads the
// size from the header and Decode checks it before decoding. zeroFrames
// makes an empty chunk a frame too (the casync layout: desync reads
// nothing else).
//
// Frames carry no xxhash checksum, as casync's own (libzstd's default)
// do not: every chunk is read back through its content address (the
// dual manager hashes each chunk it reads, fsck --deep and compare
// --deep too), which catches everything the checksum would and more. It
// saved about 2% of the CPU of a write to a casync store (1 GiB: user
// time 5.28 s to 5.19 s, four interleaved runs), and the checksum check
// on each read. Frames written with a checksum still read, and are
// checked.
func NewEncoder(zeroFrames bool) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true),
		zstd.WithZeroFrames(zeroFrames))
}

// NewDecoder returns the decoder Decode needs: safe for concurrent use
// (one serves every call of a store), never producing more than
// stores.MaxChunkSize bytes nor keeping a larger window, and limited, in
// DecodeAll, to the capacity of the buffer it is given, which is how
// Decode bounds each call by its chunk's size.
func NewDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(stores.MaxChunkSize),
		zstd.WithDecoderMaxWindow(stores.MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true))
}

// blockSlack is room for the largest block a zstd frame may hold, 128
// KiB, and the 32 bytes klauspost's decoder may write past its end.
const blockSlack = 128<<10 + 32

// Decode returns the chunk that frame (one zstd frame, starting with
// Magic) holds, or an error wrapping stores.ErrCorrupt when the frame does
// not decode or does not hold a chunk the bound allows. A frame header
// that records a content size is checked against the bound before
// anything is decoded; decoding stops at the bound's limit (the chunk's
// size where known, else its max) whatever the frame holds. dec must come
// from NewDecoder.
func Decode(dec *zstd.Decoder, frame []byte, b stores.Bound) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		return nil, fmt.Errorf("%w: zstd frame header: %w", stores.ErrCorrupt, err)
	}
	// A frame that does not record its size is decoded into room for one
	// more block than the bound (zstd blocks regenerate at most 128 KiB,
	// plus the decoder's overrun margin): the block that passes the bound
	// then fails the decode in place, instead of growing the buffer by
	// half again first.
	size := b.Limit() + blockSlack
	if h.HasFCS {
		if h.FrameContentSize > uint64(b.Max) {
			return nil, fmt.Errorf("%w: the zstd frame holds %d bytes, more than any chunk (%d)", stores.ErrCorrupt, h.FrameContentSize, b.Max)
		}
		if err := b.Check(int64(h.FrameContentSize)); err != nil {
			return nil, fmt.Errorf("zstd frame header: %w", err)
		}
		size = int64(h.FrameContentSize)
	}
	out, err := dec.DecodeAll(frame, make([]byte, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", stores.ErrCorrupt, err)
	}
	if err := b.Check(int64(len(out))); err != nil {
		return nil, fmt.Errorf("decoded: %w", err)
	}
	return out, nil
}

// ContentSize returns the chunk size the zstd frame header at the start
// of head records, or -1 when it records none; a header that does not
// decode, or records more than max bytes, wraps stores.ErrCorrupt.
func ContentSize(head []byte, max int64) (int64, error) {
	var h zstd.Header
	if err := h.Decode(head); err != nil {
		return 0, fmt.Errorf("%w: zstd frame header: %w", stores.ErrCorrupt, err)
	}
	if !h.HasFCS {
		return -1, nil
	}
	if h.FrameContentSize > uint64(max) {
		return 0, fmt.Errorf("%w: the zstd frame holds %d bytes, more than any chunk (%d)", stores.ErrCorrupt, h.FrameContentSize, max)
	}
	return int64(h.FrameContentSize), nil
}
