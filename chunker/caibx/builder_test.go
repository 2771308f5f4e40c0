package caibx

import (
	"bytes"
	"crypto/sha512"
	"testing"
)

// TestBuilder checks that data chunks are hashed and handed on in order,
// and that a hole becomes zero chunks of at most the maximum.
func TestBuilder(t *testing.T) {
	got := map[[32]byte][]byte{}
	b := NewBuilder(1, 2, 4, func(id [32]byte, data []byte) error {
		if id != sha512.Sum512_256(data) {
			t.Errorf("put: id is not the SHA512/256 of the data")
		}
		got[id] = bytes.Clone(data)
		return nil
	})
	if err := b.Data([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := b.Hole(9); err != nil {
		t.Fatal(err)
	}
	if err := b.Data(nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Data([]byte("toolong")); err == nil {
		t.Error("a chunk over the maximum was taken")
	}
	x := b.Index()
	wantSizes := []uint64{3, 4, 4, 1}
	if len(x.Chunks) != len(wantSizes) {
		t.Fatalf("%d chunks, want %d", len(x.Chunks), len(wantSizes))
	}
	var off uint64
	for i, c := range x.Chunks {
		if c.Start != off || c.Size != wantSizes[i] {
			t.Errorf("chunk %d: %d+%d, want %d+%d", i, c.Start, c.Size, off, wantSizes[i])
		}
		off += c.Size
	}
	if x.Length() != 12 || x.Min != 1 || x.Avg != 2 || x.Max != 4 || x.FeatureFlags != FlagExcludeNoDump|FlagSHA512_256 {
		t.Errorf("index %+v", x)
	}
	if len(got) != 3 { // "abc", 4 zeros, 1 zero
		t.Errorf("%d distinct chunks put, want 3", len(got))
	}
}
