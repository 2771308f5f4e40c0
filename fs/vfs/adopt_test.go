package vfs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// TestAdopt: an empty file takes another file's chunk list (with a hole)
// and reads the same; a chunk only one tier holds is put into the other;
// a chunk in no tier, a non-empty file and an oversized entry are refused
// and change nothing.
func TestAdopt(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(7, 7)), 5*testMax+123)
	h := m.createOpen(t, "src")
	writeSeq(t, h, data, 0, 4096)
	release(t, h)
	src, err := m.db.Lookup(ctx, index.RootIno, "src")
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := m.db.Chunks(ctx, src.Ino)
	if err != nil {
		t.Fatal(err)
	}
	list := append(append([]index.Chunk{}, chunks...), index.Chunk{Size: 1000}) // a trailing hole
	// The safety tier loses one chunk: adoption puts it back.
	if err := m.safety.Delete(ctx, chunks[1].ID); err != nil {
		t.Fatal(err)
	}

	dst := m.create(t, "dst")
	if err := m.fs.Adopt(ctx, dst.Ino, list); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data), make([]byte, 1000)...)
	if got := m.committed(t, dst.Ino); !bytes.Equal(got, want) {
		t.Errorf("adopted file: %s", diff(want, got))
	}
	if _, err := m.safety.Get(ctx, chunks[1].ID); err != nil {
		t.Errorf("the chunk the safety tier lacked was not put back: %v", err)
	}

	// Not empty any more.
	if err := m.fs.Adopt(ctx, dst.Ino, list); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("adopting into a non-empty file: %v, want ErrNotEmpty", err)
	}
	// A chunk in no tier, and an entry over the maximum: the file stays empty.
	other := m.create(t, "other")
	missing := stores.ID{1, 2, 3}
	if err := m.fs.Adopt(ctx, other.Ino, []index.Chunk{chunks[0], {ID: missing, Size: 10}}); !errors.Is(err, ErrNotInTiers) {
		t.Errorf("a chunk in no tier: %v, want ErrNotInTiers", err)
	}
	if err := m.fs.Adopt(ctx, other.Ino, []index.Chunk{{ID: chunks[0].ID, Size: testMax + 1}}); err == nil {
		t.Error("an entry over the chunker's maximum was adopted")
	}
	if a, err := m.db.GetAttr(ctx, other.Ino); err != nil || a.Size != 0 {
		t.Errorf("after refused adoptions: size %d, %v; want 0", a.Size, err)
	}
}
