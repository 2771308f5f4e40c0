// Package caibx reads and writes casync blob indexes (.caibx): the list of
// a file's chunks, each as its end offset and its 32-byte id, with the
// chunker's min/avg/max sizes in the header. desync and casync extract a
// file from such an index and a chunk store, whatever chunker cut it.
//
// The layout (all integers little-endian 64-bit, as casync writes them):
//
//	FormatIndex  size=48, type=CaFormatIndex, feature flags, min, avg, max
//	FormatTable  size=MaxUint64, type=CaFormatTable
//	  items      end offset, chunk id (32 bytes)   ... one per chunk
//	  tail       0, 0, 48 (index offset), table size, CaFormatTableTailMarker
//
// Read trusts nothing: a wrong magic, a size out of range, offsets that do
// not increase, a chunk larger than the header's maximum or more entries
// than the caller allows is a clear error, never a panic or an unbounded
// allocation (memory grows with the bytes actually read).
package caibx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Format constants (casync's caformat.h).
const (
	typeIndex       = 0x96824d9c7b129ff9
	typeTable       = 0xe75b9e112f17417d
	tableTailMarker = 0x4b4f050e5549ecd1

	// FlagSHA512_256 says the chunk ids are SHA512/256 (else SHA256).
	FlagSHA512_256 = 0x2000000000000000
	// FlagExcludeNoDump is set by casync and desync on every index they
	// make.
	FlagExcludeNoDump = 0x8000000000000000

	indexSize = 48
)

// Chunk is one entry: the chunk's place in the file and its id.
type Chunk struct {
	Start, Size uint64
	ID          [32]byte
}

// Index is a parsed blob index.
type Index struct {
	FeatureFlags  uint64
	Min, Avg, Max uint64
	Chunks        []Chunk
}

// Length is the size of the file the index describes.
func (x Index) Length() uint64 {
	if n := len(x.Chunks); n > 0 {
		return x.Chunks[n-1].Start + x.Chunks[n-1].Size
	}
	return 0
}

// ErrFormat is wrapped by every error about the index's content.
var ErrFormat = errors.New("not a valid casync blob index")

// Write writes x as a .caibx.
func Write(w io.Writer, x Index) error {
	bw := bufio.NewWriter(w)
	var b [8]byte
	put := func(vs ...uint64) {
		for _, v := range vs {
			binary.LittleEndian.PutUint64(b[:], v)
			_, _ = bw.Write(b[:]) // a bufio error sticks: Flush returns it
		}
	}
	put(indexSize, typeIndex, x.FeatureFlags, x.Min, x.Avg, x.Max)
	put(math.MaxUint64, typeTable)
	var end uint64
	for i, c := range x.Chunks {
		if c.Start != end || c.Size == 0 {
			return fmt.Errorf("caibx: chunk %d at %d+%d does not follow the previous end %d", i, c.Start, c.Size, end)
		}
		end += c.Size
		put(end)
		_, _ = bw.Write(c.ID[:])
	}
	table := uint64(16 + 40*len(x.Chunks))
	put(0, 0, indexSize, table+40, tableTailMarker)
	return bw.Flush()
}

// Limits bound what Read accepts.
type Limits struct {
	// MaxChunks caps the entries (default 1<<24: a 16 EiB file of 1 TiB
	// chunks is not a file anyone sends).
	MaxChunks int
	// MaxChunkSize caps one chunk (default 1 GiB), besides the header's
	// own maximum.
	MaxChunkSize uint64
}

// Read parses a .caibx.
func Read(r io.Reader, lim Limits) (Index, error) {
	if lim.MaxChunks <= 0 {
		lim.MaxChunks = 1 << 24
	}
	if lim.MaxChunkSize == 0 {
		lim.MaxChunkSize = 1 << 30
	}
	br := bufio.NewReader(r)
	var x Index
	var b [8]byte
	read := func(what string) (uint64, error) {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("caibx: %s: truncated: %w", what, ErrFormat)
			}
			return 0, fmt.Errorf("caibx: %s: %w", what, err)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("caibx: %s: %w", fmt.Sprintf(format, a...), ErrFormat)
	}
	var hdr [6]uint64
	for i, what := range []string{"index size", "index type", "feature flags", "min size", "avg size", "max size"} {
		v, err := read(what)
		if err != nil {
			return x, err
		}
		hdr[i] = v
	}
	switch {
	case hdr[1] != typeIndex:
		return x, bad("index type %#x, want %#x (a .caidx or another file?)", hdr[1], uint64(typeIndex))
	case hdr[0] != indexSize:
		return x, bad("index header of %d bytes, want %d", hdr[0], indexSize)
	case hdr[3] == 0 || hdr[3] > hdr[4] || hdr[4] > hdr[5] || hdr[5] > lim.MaxChunkSize:
		return x, bad("chunk sizes min %d avg %d max %d out of range", hdr[3], hdr[4], hdr[5])
	}
	x.FeatureFlags, x.Min, x.Avg, x.Max = hdr[2], hdr[3], hdr[4], hdr[5]
	size, err := read("table size")
	if err != nil {
		return x, err
	}
	typ, err := read("table type")
	if err != nil {
		return x, err
	}
	if typ != typeTable || size != math.MaxUint64 {
		return x, bad("table header %#x/%d, want %#x/MaxUint64", typ, size, uint64(typeTable))
	}
	var prev uint64
	for {
		off, err := read("table entry")
		if err != nil {
			return x, err
		}
		if off == 0 {
			break
		}
		if off <= prev {
			return x, bad("entry %d ends at %d, not after the previous end %d", len(x.Chunks), off, prev)
		}
		if off-prev > x.Max {
			return x, bad("entry %d is %d bytes, more than the index's maximum %d", len(x.Chunks), off-prev, x.Max)
		}
		if len(x.Chunks) >= lim.MaxChunks {
			return x, bad("more than %d entries", lim.MaxChunks)
		}
		c := Chunk{Start: prev, Size: off - prev}
		if _, err := io.ReadFull(br, c.ID[:]); err != nil {
			return x, bad("entry %d: truncated id", len(x.Chunks))
		}
		x.Chunks = append(x.Chunks, c)
		prev = off
	}
	var tail [4]uint64
	for i, what := range []string{"tail zero fill", "tail index offset", "tail table size", "tail marker"} {
		v, err := read(what)
		if err != nil {
			return x, err
		}
		tail[i] = v
	}
	if tail[0] != 0 || tail[1] != indexSize || tail[3] != tableTailMarker {
		return x, bad("table tail %#x %d %d %#x, want 0 48 … %#x", tail[0], tail[1], tail[2], tail[3], uint64(tableTailMarker))
	}
	if want := uint64(16 + 40*len(x.Chunks) + 40); tail[2] != want {
		return x, bad("table size %d in the tail, the table has %d", tail[2], want)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return x, bad("bytes after the table's tail")
	}
	return x, nil
}
