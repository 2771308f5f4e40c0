package vfs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestWriteIntoHugeHole: writes into a 1 TiB hole, far from each other,
// cut only the data around them: the commit streams a few chunks, not
// terabytes of zeros, the holes stay holes, and the content reads back.
func TestWriteIntoHugeHole(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	h := m.createOpen(t, "huge")
	if err := h.Truncate(ctx, 1<<40); err != nil {
		t.Fatal(err)
	}
	// st_blocks of an open, unflushed file counts its holes too.
	if a, _ := m.fs.Attr(ctx, h.Ino()); a.Size != 1<<40 || a.Holes != 1<<40 {
		t.Errorf("unflushed attr: size %d holes %d", a.Size, a.Holes)
	}
	flush(t, h)
	rng := rand.New(rand.NewPCG(9, 9))
	a1, b := randBytes(rng, 100<<10), randBytes(rng, 300<<10)
	write(t, h, a1, 500<<30)
	write(t, h, b, 900<<30+12345)
	if a, _ := m.fs.Attr(ctx, h.Ino()); a.Holes != 1<<40-uint64(len(a1)+len(b)) {
		t.Errorf("attr with staged writes: holes %d, want %d", a.Holes, 1<<40-uint64(len(a1)+len(b)))
	}
	before := m.fs.Stats().ChunksCut
	flush(t, h)
	// At most a chunk per MinSize of data written, plus the ends.
	if cut, most := m.fs.Stats().ChunksCut-before, int64(len(a1)+len(b))/int64(m.fs.params.MinSize)+4; cut > most {
		t.Errorf("the commit cut %d chunks for 400 KiB written into a hole, want at most %d", cut, most)
	}
	attr, _ := m.db.GetAttr(ctx, h.Ino())
	if attr.Size != 1<<40 || attr.Holes < 1<<40-2<<20 {
		t.Errorf("size %d holes %d after writes into the hole", attr.Size, attr.Holes)
	}
	if got := readAt(t, h, 500<<30, len(a1)); !bytes.Equal(got, a1) {
		t.Error("first write reads back wrong")
	}
	if got := readAt(t, h, 900<<30+12345, len(b)); !bytes.Equal(got, b) {
		t.Error("second write reads back wrong")
	}
	if got := readAt(t, h, 700<<30, 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Error("the hole between reads back non-zero")
	}
	if p, err := h.Seek(0, SeekData); err != nil || p < 500<<30-8<<20 || p > 500<<30 {
		t.Errorf("SEEK_DATA(0) = %d, %v", p, err)
	}
	// Past the maximum: refused, nothing changed.
	if _, err := h.Write(ctx, []byte("x"), int64(m.fs.opts.MaxFileSize)); !errors.Is(err, ErrFileTooBig) {
		t.Errorf("write past the maximum: %v", err)
	}
	if err := h.Truncate(ctx, m.fs.opts.MaxFileSize+1); !errors.Is(err, ErrFileTooBig) {
		t.Errorf("truncate past the maximum: %v", err)
	}
	flush(t, h)
	if a2, _ := m.db.GetAttr(ctx, h.Ino()); a2.Size != 1<<40 {
		t.Errorf("size %d after refused calls", a2.Size)
	}
	release(t, h)
}
