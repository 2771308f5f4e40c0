package caibx

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"
)

func sample() Index {
	x := Index{FeatureFlags: FlagExcludeNoDump | FlagSHA512_256, Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}
	var off uint64
	for i, n := range []uint64{20000, 65536, 100, 256 << 10} {
		c := Chunk{Start: off, Size: n, ID: sha512.Sum512_256([]byte{byte(i)})}
		x.Chunks = append(x.Chunks, c)
		off += n
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	x := sample()
	var buf bytes.Buffer
	if err := Write(&buf, x); err != nil {
		t.Fatal(err)
	}
	if want := 48 + 16 + 40*len(x.Chunks) + 40; buf.Len() != want {
		t.Errorf("%d bytes, want %d", buf.Len(), want)
	}
	got, err := Read(bytes.NewReader(buf.Bytes()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Length() != x.Length() || len(got.Chunks) != len(x.Chunks) || got.FeatureFlags != x.FeatureFlags || got.Max != x.Max {
		t.Fatalf("read back %+v", got)
	}
	for i := range x.Chunks {
		if got.Chunks[i] != x.Chunks[i] {
			t.Fatalf("chunk %d: %+v, want %+v", i, got.Chunks[i], x.Chunks[i])
		}
	}
	empty := Index{Min: 1, Avg: 2, Max: 4}
	buf.Reset()
	if err := Write(&buf, empty); err != nil {
		t.Fatal(err)
	}
	if e, err := Read(&buf, Limits{}); err != nil || len(e.Chunks) != 0 {
		t.Fatalf("empty index: %+v, %v", e, err)
	}
}

// TestBadInput: each damage is a clear ErrFormat, never a panic.
func TestBadInput(t *testing.T) {
	var good bytes.Buffer
	if err := Write(&good, sample()); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	mod := func(off int, v uint64) []byte {
		b := bytes.Clone(g)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	for name, b := range map[string][]byte{
		"empty":              nil,
		"truncated header":   g[:20],
		"wrong magic":        mod(8, 0x1234),
		"header size":        mod(0, 47),
		"min over max":       mod(24, 1<<40),
		"table type":         mod(56, 7),
		"offsets decreasing": mod(64+40, 10),
		"chunk over max":     mod(64+40, 20000+(1<<20)),
		"truncated table":    g[:64+40+20],
		"tail marker":        mod(len(g)-8, 1),
		"tail size":          mod(len(g)-16, 99),
		"trailing bytes":     append(bytes.Clone(g), 0),
	} {
		if _, err := Read(bytes.NewReader(b), Limits{}); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
	if _, err := Read(bytes.NewReader(g), Limits{MaxChunks: 3}); !errors.Is(err, ErrFormat) {
		t.Errorf("over MaxChunks: %v", err)
	}
}

// FuzzRead: no input panics or allocates beyond its size; what parses
// writes back identically.
func FuzzRead(f *testing.F) {
	var good bytes.Buffer
	_ = Write(&good, sample())
	f.Add(good.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := Read(bytes.NewReader(b), Limits{MaxChunks: 1 << 16})
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, x); err != nil {
			t.Fatalf("a parsed index does not write: %v", err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("a parsed index writes back differently")
		}
	})
}
