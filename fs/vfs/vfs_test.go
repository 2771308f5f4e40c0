package vfs

import (
	"bytes"
	"context"
	"errors"
	"go/build"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// TestSequentialWriteReadBack streams a file of many chunks through the
// chunker in uneven pieces and reads it back through the same handle and
// a fresh one: the writes never touch the staging dir, every chunk lands
// in both tiers, and reads come back as slices of the cached chunks.
func TestSequentialWriteReadBack(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 3<<20+12345)
	h := m.createOpen(t, "seq")
	ino := h.Ino()
	writeSeq(t, h, data, 0, 100_000)
	st := m.state(ino)
	if st.stage != nil || st.stream == nil {
		t.Fatalf("sequential writes: stage %v, stream %v; want a stream and no staging file", st.stage != nil, st.stream != nil)
	}
	if a, err := m.fs.Attr(ctx, ino); err != nil || a.Size != uint64(len(data)) {
		t.Fatalf("attr while streaming: size %d, %v; want %d", a.Size, err, len(data))
	}
	flush(t, h)
	if m.dm.Held() != 0 {
		t.Fatalf("%d chunk ids still held after the commit", m.dm.Held())
	}
	if d := diff(data, readAll(t, h)); d != "" {
		t.Fatal("read through the writing handle: " + d)
	}
	// A read across chunk boundaries comes back as several chunk slices.
	slices, n, err := h.Read(ctx, make([]byte, 256<<10), 1<<20)
	if err != nil || n != 256<<10 || len(slices) < 2 {
		t.Fatalf("read(1M, 256K): %d slices, %d bytes, %v; want several slices of 256K in all", len(slices), n, err)
	}
	release(t, h)
	if m.state(ino) != nil {
		t.Fatal("open-file state left after the last release")
	}
	if d := diff(data, m.committed(t, ino)); d != "" {
		t.Fatal("committed content: " + d)
	}
	chunks, err := m.db.Chunks(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < len(data)/testMax {
		t.Fatalf("%d chunks for %d bytes", len(chunks), len(data))
	}
	for i, c := range chunks {
		if c.Size > testMax || (c.Size < testMin && i != len(chunks)-1) {
			t.Fatalf("chunk %d: %d bytes, outside %d..%d", i, c.Size, testMin, testMax)
		}
	}
	h = m.open(t, ino)
	if d := diff(data, readAll(t, h)); d != "" {
		t.Fatal("read after reopen: " + d)
	}
	release(t, h)
	s := m.fs.Stats()
	if s.OpenFiles != 0 || s.ChunksCut < int64(len(chunks)) || s.BytesWritten != int64(len(data)) ||
		s.BytesRead < 2*int64(len(data)) || s.CacheBytes > 1<<20 {
		t.Fatalf("stats %+v", s)
	}
	if n := m.stagingFiles(t); n != 0 {
		t.Fatalf("%d files in the staging dir", n)
	}
}

// TestNonSequentialWritesAndTruncates overwrites, writes past the end
// (leaving a hole), shrinks and grows a file through one handle, which
// stages the changes on local disk, then commits and re-chunks them.
func TestNonSequentialWritesAndTruncates(t *testing.T) {
	m := newTestFS(t)
	rng := rand.New(rand.NewPCG(2, 2))
	model := randBytes(rng, 1<<20)
	h := m.createOpen(t, "nonseq")
	ino := h.Ino()
	writeSeq(t, h, model, 0, 128<<10)
	flush(t, h)
	release(t, h)

	h = m.open(t, ino)
	patch := randBytes(rng, 5000)
	write(t, h, patch, 300_000)
	copy(model[300_000:], patch)
	st := m.state(ino)
	if st.stage == nil || st.stream != nil {
		t.Fatalf("overwrite: stage %v, stream %v; want a staging file", st.stage != nil, st.stream != nil)
	}
	if n := m.stagingFiles(t); n != 0 {
		t.Fatalf("staging file not unlinked: %d names in the staging dir", n)
	}
	past := randBytes(rng, 20_000)
	write(t, h, past, int64(len(model))+50_000)
	model = append(append(model, make([]byte, 50_000)...), past...)
	steps := []struct {
		what string
		size uint64
	}{{"shrink", 700_000}, {"grow", 900_000}, {"shrink into a chunk", 650_001}}
	for _, s := range steps {
		if err := h.Truncate(context.Background(), s.size); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if s.size < uint64(len(model)) {
			model = model[:s.size]
		} else {
			model = append(model, make([]byte, int(s.size)-len(model))...)
		}
		if d := diff(model, readAll(t, h)); d != "" {
			t.Fatalf("after %s, before the commit: %s", s.what, d)
		}
	}
	flush(t, h)
	if st.stage != nil {
		t.Fatal("staging file kept after the commit")
	}
	if d := diff(model, m.committed(t, ino)); d != "" {
		t.Fatal("committed: " + d)
	}
	// A truncate on its own (setattr), with the handle still open: it
	// shares the handle's state and commits at once.
	if err := m.truncate(ino, 123_456); err != nil {
		t.Fatal(err)
	}
	model = model[:123_456]
	if d := diff(model, m.committed(t, ino)); d != "" {
		t.Fatal("after setattr truncate: " + d)
	}
	if d := diff(model, readAll(t, h)); d != "" {
		t.Fatal("handle after setattr truncate: " + d)
	}
	release(t, h)
	h = m.open(t, ino)
	if d := diff(model, readAll(t, h)); d != "" {
		t.Fatal("after reopen: " + d)
	}
	release(t, h)
	if m.dm.Held() != 0 {
		t.Fatalf("%d chunk ids still held", m.dm.Held())
	}
}

// TestRechunkResyncs checks that overwriting a few bytes in the middle of
// a large file rewrites only the chunks around the change: the re-chunking
// stops as soon as its cuts meet the old boundaries.
func TestRechunkResyncs(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(7, 7)), 4<<20)
	h := m.createOpen(t, "big")
	ino := h.Ino()
	writeSeq(t, h, data, 0, 1<<20)
	release(t, h)
	before, _ := m.db.Chunks(ctx, ino)
	cut := m.fs.Stats().ChunksCut

	h = m.open(t, ino)
	write(t, h, []byte("hello"), 2<<20)
	flush(t, h)
	release(t, h)
	copy(data[2<<20:], "hello")
	if d := diff(data, m.committed(t, ino)); d != "" {
		t.Fatal("content after overwrite: " + d)
	}
	after, _ := m.db.Chunks(ctx, ino)
	old := map[stores.ID]bool{}
	for _, c := range before {
		old[c.ID] = true
	}
	changed := 0
	for _, c := range after {
		if !old[c.ID] {
			changed++
		}
	}
	if changed == 0 || changed > 3 {
		t.Fatalf("%d of %d chunks changed after a 5-byte overwrite; want 1..3", changed, len(after))
	}
	if recut := m.fs.Stats().ChunksCut - cut; recut > 4 {
		t.Fatalf("re-chunking cut %d chunks for a 5-byte overwrite: it did not resynchronise", recut)
	}
}

// TestSmallFile checks the pend path: a file below the chunker's minimum
// size never starts a chunker, becomes one chunk at the commit, and reads
// back before and after it; an empty file commits no chunks.
func TestSmallFile(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	h := m.createOpen(t, "small")
	ino := h.Ino()
	var model []byte
	for _, s := range []string{"hello, ", "small ", "file\n"} {
		write(t, h, []byte(s), int64(len(model)))
		model = append(model, s...)
	}
	st := m.state(ino)
	if st.stream != nil || len(st.pend) != len(model) {
		t.Fatalf("small writes: stream %v, %d bytes pending; want no stream and %d pending", st.stream != nil, len(st.pend), len(model))
	}
	if a, err := m.fs.Attr(ctx, ino); err != nil || a.Size != uint64(len(model)) {
		t.Fatalf("attr of pending bytes: size %d, %v", a.Size, err)
	}
	flush(t, h)
	if st.stream != nil || len(st.pend) != 0 {
		t.Fatal("commit of a small file started a stream or kept the pending bytes")
	}
	chunks, _ := m.db.Chunks(ctx, ino)
	if len(chunks) != 1 || chunks[0].Size != uint32(len(model)) || chunks[0].ID != stores.ID(m.fs.hash(model)) {
		t.Fatalf("small file committed as %v; want one chunk of %d bytes", chunks, len(model))
	}
	if d := diff(model, readAll(t, h)); d != "" {
		t.Fatal(d)
	}
	release(t, h)

	// Read-your-writes of pending bytes cuts them; appending after that
	// re-feeds the chunk, so the file still ends up as one chunk.
	h = m.createOpen(t, "small2")
	write(t, h, model, 0)
	if d := diff(model, readAll(t, h)); d != "" {
		t.Fatal("read of pending bytes: " + d)
	}
	write(t, h, model, int64(len(model)))
	both := append(append([]byte{}, model...), model...)
	if d := diff(both, readAll(t, h)); d != "" {
		t.Fatal("read after append: " + d)
	}
	release(t, h)
	chunks, _ = m.db.Chunks(ctx, h.Ino())
	if len(chunks) != 1 || chunks[0].ID != stores.ID(m.fs.hash(both)) {
		t.Fatalf("small file written, read, appended: %d chunks; want the one of the whole file", len(chunks))
	}

	h = m.createOpen(t, "empty")
	flush(t, h)
	release(t, h)
	if c, _ := m.db.Chunks(ctx, h.Ino()); len(c) != 0 || len(m.committed(t, h.Ino())) != 0 {
		t.Fatalf("empty file: %d chunks", len(c))
	}
}

// TestReadYourWritesWhileStreaming reads bytes still inside the chunker:
// the read cuts the stream, and appends after it start a new one that
// re-feeds the last chunk, so the file ends up cut exactly as if it had
// been written in one go.
func TestReadYourWritesWhileStreaming(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(3, 3)), 600<<10)
	h := m.createOpen(t, "ryw")
	ino := h.Ino()
	for _, part := range [][2]int{{0, 300 << 10}, {300 << 10, 450 << 10}, {450 << 10, 600 << 10}} {
		writeSeq(t, h, data[part[0]:part[1]], int64(part[0]), 64<<10)
		if st := m.state(ino); st.stream == nil {
			t.Fatal("no stream after sequential writes")
		}
		end := part[1]
		if got := readAt(t, h, int64(end-200<<10), 100<<10); !bytes.Equal(got, data[end-200<<10:end-100<<10]) {
			t.Fatalf("read inside the written bytes at %d differs", end-200<<10)
		}
		if got := readAt(t, h, int64(end-50<<10), 100<<10); !bytes.Equal(got, data[end-50<<10:end]) {
			t.Fatalf("read of the last bytes written (up to %d) differs: got %d bytes", end, len(got))
		}
		if st := m.state(ino); st.stream != nil {
			t.Fatal("a read of bytes inside the chunker did not cut the stream")
		}
	}
	if d := diff(data, readAll(t, h)); d != "" {
		t.Fatal(d)
	}
	release(t, h)
	if d := diff(data, m.committed(t, ino)); d != "" {
		t.Fatal("committed: " + d)
	}
	got, _ := m.db.Chunks(ctx, ino)

	// The same bytes in one go, in a filesystem of their own (no dedup or
	// prediction from the first).
	ref := newTestFS(t)
	rh := ref.createOpen(t, "ref")
	writeSeq(t, rh, data, 0, 1<<20)
	release(t, rh)
	want, _ := ref.db.Chunks(ctx, rh.Ino())
	if len(got) != len(want) {
		t.Fatalf("%d chunks, written in one go %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("chunk %d differs from the one-go chunking", i)
		}
	}
}

// TestCommitFailureReverts makes the primary tier refuse writes (the
// default policy requires it) while a file is being changed: the commit
// reports the error and nothing in the index points at a chunk that is
// not stored. Streamed bytes are gone (they were in the chunker), so the
// file goes back to its last committed content; staged bytes are still in
// the staging file, so they stay and the next flush commits them (#15: a
// failure drops nothing it did not have to). Once the tier is back the
// file can be written again.
func TestCommitFailureReverts(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, h *Handle, base []byte, rng *rand.Rand) []byte
		sync   bool // commit with Fsync instead of Flush
		keeps  bool // the failed commit keeps the change (staged)
	}{
		{"streamed append", func(t *testing.T, h *Handle, base []byte, rng *rand.Rand) []byte {
			// Writes fail asynchronously: a later Write may report it
			// already.
			data := randBytes(rng, 384<<10)
			for off := 0; off < len(data); off += 32 << 10 {
				if _, err := h.Write(context.Background(), data[off:off+32<<10], int64(len(base)+off)); err != nil {
					return nil
				}
			}
			return nil
		}, false, false},
		{"staged overwrite", func(t *testing.T, h *Handle, base []byte, rng *rand.Rand) []byte {
			over := randBytes(rng, 40<<10)
			write(t, h, over, 100<<10)
			return append(append(append([]byte{}, base[:100<<10]...), over...), base[140<<10:]...)
		}, false, true},
		{"truncate and rewrite", func(t *testing.T, h *Handle, base []byte, rng *rand.Rand) []byte {
			if err := h.Truncate(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			write(t, h, randBytes(rng, 1000), 0) // the pend path
			return nil
		}, true, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestFS(t)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(uint64(i), 4))
			base := randBytes(rng, 300<<10)
			h := m.createOpen(t, "f")
			ino := h.Ino()
			writeSeq(t, h, base, 0, 64<<10)
			flush(t, h)
			committed, _ := m.db.GetAttr(ctx, ino)

			m.pfault.Set(stores.OpPut, stores.Rule{Fail: errTest})
			changed := c.change(t, h, base, rng)
			var err error
			if c.sync {
				err = h.Fsync(ctx)
			} else {
				err = h.Flush(ctx)
			}
			if !errors.Is(err, dual.ErrWrite) || !errors.Is(err, errTest) {
				t.Fatalf("commit with the primary down: %v; want ErrWrite wrapping the tier's error", err)
			}
			if c.keeps {
				if d := diff(changed, readAll(t, h)); d != "" {
					t.Fatal("content after the failed commit of a staged change: " + d)
				}
				if d := diff(base, m.committed(t, ino)); d != "" {
					t.Fatal("index after the failed commit: " + d)
				}
				m.pfault.Clear(stores.OpPut)
				flush(t, h)
				if d := diff(changed, m.committed(t, ino)); d != "" {
					t.Fatal("after the tier came back, the staged change: " + d)
				}
				release(t, h)
				if m.dm.Held() != 0 {
					t.Fatalf("%d chunk ids still held after the commit", m.dm.Held())
				}
				return
			}
			if m.dm.Held() != 0 {
				t.Fatalf("%d chunk ids still held after the revert", m.dm.Held())
			}
			if d := diff(base, readAll(t, h)); d != "" {
				t.Fatal("content after the failed commit: " + d)
			}
			if a, _ := m.fs.Attr(ctx, ino); a.Size != uint64(len(base)) || !a.Mtime.Equal(committed.Mtime) {
				t.Fatalf("attr after the revert: size %d mtime %v; want %d %v", a.Size, a.Mtime, len(base), committed.Mtime)
			}
			if d := diff(base, m.committed(t, ino)); d != "" {
				t.Fatal("index after the failed commit: " + d)
			}
			if err := h.Flush(ctx); err != nil {
				t.Fatalf("flush after the revert: %v; the error was reported once already", err)
			}

			m.pfault.Clear(stores.OpPut)
			more := randBytes(rng, 100<<10)
			writeSeq(t, h, more, int64(len(base)), 64<<10)
			release(t, h)
			want := append(append([]byte{}, base...), more...)
			if d := diff(want, m.committed(t, ino)); d != "" {
				t.Fatal("after the tier came back: " + d)
			}
		})
	}
}

// TestReleaseReportsCommitError checks the safety net: the last Release
// commits what no Flush did, and returns (and logs) its error.
func TestReleaseReportsCommitError(t *testing.T) {
	m := newTestFS(t)
	h := m.createOpen(t, "f")
	m.pfault.Set(stores.OpPut, stores.Rule{Fail: errTest})
	write(t, h, randBytes(rand.New(rand.NewPCG(5, 5)), 1000), 0)
	if err := h.Release(context.Background()); !errors.Is(err, errTest) {
		t.Fatalf("release with the primary down: %v", err)
	}
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if a, _ := m.db.GetAttr(context.Background(), h.Ino()); a.Size != 0 {
		t.Fatalf("size %d committed though the chunk write failed", a.Size)
	}
}

// TestOrphanPurge checks that an unlinked file stays readable while it is
// open, and is purged from the index once both the last handle is
// released and the front end has forgotten it, in either order.
func TestOrphanPurge(t *testing.T) {
	for _, order := range []string{"forget-then-release", "release-then-forget", "ref-again"} {
		t.Run(order, func(t *testing.T) {
			m := newTestFS(t)
			ctx := context.Background()
			data := randBytes(rand.New(rand.NewPCG(6, 6)), 200<<10)
			h := m.createOpen(t, "u")
			ino := h.Ino()
			writeSeq(t, h, data, 0, 64<<10)
			flush(t, h)
			a, err := m.db.Unlink(ctx, index.RootIno, "u", time.Now())
			if err != nil || a.Nlink != 0 {
				t.Fatalf("unlink: nlink %d, %v", a.Nlink, err)
			}
			m.fs.Unlinked(a)
			alive := func(want bool) {
				t.Helper()
				_, err := m.db.GetAttr(ctx, ino)
				if got := err == nil; got != want {
					t.Fatalf("inode alive %v, want %v (%v)", got, want, err)
				}
			}
			switch order {
			case "forget-then-release":
				m.fs.Forgot(ino)
				alive(true)
				if d := diff(data, readAll(t, h)); d != "" {
					t.Fatal("read of the unlinked open file: " + d)
				}
				release(t, h)
				alive(false)
			case "release-then-forget":
				release(t, h)
				alive(true)
				m.fs.Forgot(ino)
				alive(false)
			case "ref-again":
				// The kernel forgot it and looked it up again (through a
				// handle) before the release: it still holds it then.
				m.fs.Forgot(ino)
				m.fs.Ref(ino)
				release(t, h)
				alive(true)
				m.fs.Forgot(ino)
				alive(false)
			}
			u, err := m.db.Usage(ctx)
			if err != nil || u.Files != 0 || u.UniqueChunks != 0 {
				t.Fatalf("usage after the purge: %+v, %v; want no files and no referenced chunks", u, err)
			}
		})
	}
	t.Run("linked", func(t *testing.T) {
		m := newTestFS(t)
		a := m.create(t, "kept")
		m.fs.Unlinked(a) // nlink 1: not an orphan
		m.fs.Forgot(a.Ino)
		if _, err := m.db.GetAttr(context.Background(), a.Ino); err != nil {
			t.Fatalf("a linked inode the kernel forgot: %v", err)
		}
	})
}

// TestAttrOverlay checks the attributes of an open file with unflushed
// writes, EntryAttr's re-read of a file closed since the index was read,
// and that an explicit mtime survives the next commit.
func TestAttrOverlay(t *testing.T) {
	m := newTestFS(t)
	ctx := context.Background()
	h := m.createOpen(t, "a")
	ino := h.Ino()
	write(t, h, make([]byte, 10<<10), 0)
	idx, _ := m.db.GetAttr(ctx, ino)
	if idx.Size != 0 {
		t.Fatalf("index size %d before the commit", idx.Size)
	}
	a, err := m.fs.Attr(ctx, ino)
	if err != nil || a.Size != 10<<10 || !a.Mtime.After(idx.Mtime) || a.Ctime.Before(a.Mtime) {
		t.Fatalf("attr of an open file: %+v, %v", a, err)
	}
	if !m.fs.IsOpen(ino) {
		t.Fatal("IsOpen false for an open file")
	}
	if e, _ := m.fs.EntryAttr(ctx, idx, m.fs.Closed()); e.Size != 10<<10 {
		t.Fatalf("entry attr of an open file: size %d", e.Size)
	}
	closed := m.fs.Closed()
	stale, _ := m.db.GetAttr(ctx, ino) // read before the close
	release(t, h)
	if m.fs.IsOpen(ino) || m.fs.Closed() == closed {
		t.Fatal("release did not drop the open-file state")
	}
	if e, _ := m.fs.EntryAttr(ctx, stale, closed); e.Size != 10<<10 {
		t.Fatalf("entry attr read before a close: size %d; want it read again", e.Size)
	}

	h = m.open(t, ino)
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	write(t, h, []byte("x"), 0)
	m.fs.SetOpenMtime(ino, when)
	release(t, h)
	if a, _ := m.db.GetAttr(ctx, ino); !a.Mtime.Equal(when) {
		t.Fatalf("mtime after commit %v; want the one set explicitly, %v", a.Mtime, when)
	}
}

// TestCacheBounded reads a file larger than the chunk cache: the cache
// stays within its bound, and a second read of a small file hits it.
func TestCacheBounded(t *testing.T) {
	m := newTestFS(t, func(o *Options) { o.CacheBytes = 256 << 10 })
	data := randBytes(rand.New(rand.NewPCG(8, 8)), 2<<20)
	h := m.createOpen(t, "big")
	writeSeq(t, h, data, 0, 1<<20)
	flush(t, h)
	m.fs.ResetCacheStats()
	if d := diff(data, readAll(t, h)); d != "" {
		t.Fatal(d)
	}
	s := m.fs.Stats()
	if s.CacheBytes > 256<<10 || s.CacheMisses == 0 {
		t.Fatalf("after reading 2 MiB: %+v; want at most 256 KiB cached", s)
	}
	release(t, h)
	h = m.createOpen(t, "small")
	write(t, h, data[:100], 0)
	flush(t, h)
	readAll(t, h)
	before := m.fs.Stats().CacheHits
	readAll(t, h)
	if m.fs.Stats().CacheHits == before {
		t.Fatal("second read of a cached chunk missed the cache")
	}
	release(t, h)
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	def := DefaultOptions()
	if def.CacheBytes != 64<<20 || def.Prefetch != 16 {
		t.Fatalf("defaults %+v", def)
	}
	ok := def
	ok.StagingDir = dir
	file := dir + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		tweak func(*Options)
		bad   string // part of the error, "" for valid
	}{
		{"defaults", func(o *Options) {}, ""},
		{"zero means default", func(o *Options) { o.CacheBytes, o.Prefetch = 0, 0 }, ""},
		{"no staging dir", func(o *Options) { o.StagingDir = "" }, "StagingDir"},
		{"staging dir a file", func(o *Options) { o.StagingDir = file }, "not a directory"},
		{"staging dir missing", func(o *Options) { o.StagingDir = dir + "/none" }, "not a directory"},
		{"negative cache", func(o *Options) { o.CacheBytes = -1 }, "out of range"},
		{"prefetch too large", func(o *Options) { o.Prefetch = 65 }, "out of range"},
		{"negative prefetch", func(o *Options) { o.Prefetch = -1 }, "out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.tweak(&o)
			err := o.Validate()
			if (err == nil) != (c.bad == "") || (err != nil && !strings.Contains(err.Error(), c.bad)) {
				t.Fatalf("Validate: %v; want an error containing %q", err, c.bad)
			}
		})
	}
	m := newTestFS(t, func(o *Options) { o.CacheBytes, o.Prefetch = 0, 0 })
	if got := m.fs.Options(); got.CacheBytes != def.CacheBytes || got.Prefetch != def.Prefetch {
		t.Fatalf("New with zero options runs with %+v; want the defaults", got)
	}
}

// TestNoFUSEImport keeps the file layer free of go-fuse and of the
// adapter: it is what lets these tests run without root or /dev/fuse. It
// follows this module's imports from here (the others do not lead back to
// go-fuse), reading the sources, so it needs no go tool.
func TestNoFUSEImport(t *testing.T) {
	const module = "github.com/dualstore/dualstore/"
	root := filepath.Join("..", "..") // this package is fs/vfs
	seen := map[string]bool{}
	var walk func(path, dir string, via []string)
	walk = func(path, dir string, via []string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			chain := append(append([]string{}, via...), imp)
			switch {
			case strings.HasPrefix(imp, "github.com/hanwen/go-fuse"), imp == module+"fs":
				t.Errorf("vfs imports %s: %s", imp, strings.Join(chain, " → "))
			case strings.HasPrefix(imp, module):
				walk(imp, filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(imp, module))), chain)
			}
		}
	}
	walk(module+"fs/vfs", ".", []string{module + "fs/vfs"})
	if !seen[module+"dual"] || !seen[module+"stores"] {
		t.Fatalf("walked %v: the import walk missed dual or stores", seen)
	}
}
