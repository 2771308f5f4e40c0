package chunker

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

func TestValidate(t *testing.T) {
	ok := testParams()
	tests := []struct {
		name string
		edit func(*Params)
		want string // substring of the error; "" means valid
	}{
		{"defaults", func(*Params) {}, ""},
		{"small", func(p *Params) { *p = smallParams() }, ""},
		{"zero polynomial", func(p *Params) { p.Polynomial = 0 }, "Polynomial is zero"},
		{"degree 52", func(p *Params) { p.Polynomial = testPolynomial >> 1 }, "Polynomial 0x1ed19ac5a6e0b9 has degree 52, want 53"},
		{"reducible", func(p *Params) { p.Polynomial = 1<<53 | 1<<1 }, "not irreducible"},
		{"min below window", func(p *Params) { p.MinSize = 63 }, "MinSize 63 is below 64"},
		{"avg not power of two", func(p *Params) { p.AvgSize = 3 * 256 * kiB }, "AvgSize 786432 is not a power of two"},
		{"avg zero", func(p *Params) { p.AvgSize = 0 }, "AvgSize 0 is not a power of two"},
		{"avg not above min", func(p *Params) { p.MinSize = p.AvgSize }, "AvgSize 524288 must be greater than MinSize"},
		{"max not above avg", func(p *Params) { p.MaxSize = p.AvgSize }, "MaxSize 524288 must be greater than AvgSize"},
		{"max too large", func(p *Params) { p.MaxSize = 128 * miB }, "MaxSize 134217728 is above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.edit(&p)
			err := p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("Validate() = %v, does not wrap ErrInvalidParams", err)
			}
		})
	}
}

func TestDefaultParams(t *testing.T) {
	p := DefaultParams()
	if p.Polynomial != 0 {
		t.Fatalf("DefaultParams().Polynomial = %#x, want 0 (set per filesystem)", p.Polynomial)
	}
	if err := p.Validate(); err == nil {
		t.Fatal("DefaultParams() without a polynomial validates")
	}
	if p.MaxSize > 8*miB {
		t.Fatalf("DefaultParams().MaxSize = %d, want <= 8 MiB", p.MaxSize)
	}
	if err := testParams().Validate(); err != nil {
		t.Fatalf("defaults with the test polynomial: %v", err)
	}
}

func TestNewPolynomial(t *testing.T) {
	pol, err := NewPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultParams()
	p.Polynomial = pol
	if err := p.Validate(); err != nil {
		t.Fatalf("NewPolynomial() = %#x: %v", pol, err)
	}
}

func TestHasher(t *testing.T) {
	data := []byte("dualstore")
	for _, tt := range []struct {
		name string
		want [32]byte
	}{
		{HashBLAKE3, blake3.Sum256(data)},
		{HashSHA512_256, sha512.Sum512_256(data)},
	} {
		h, err := Hasher(tt.name)
		if err != nil {
			t.Fatalf("Hasher(%q): %v", tt.name, err)
		}
		if got := h(data); got != tt.want {
			t.Errorf("Hasher(%q)(data) = %x, want %x", tt.name, got, tt.want)
		}
	}
	// A known vector pins the casync-compatible hash: SHA-512/256("abc").
	h, _ := Hasher(HashSHA512_256)
	abc := h([]byte("abc"))
	if got := hex.EncodeToString(abc[:]); got != "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23" {
		t.Errorf("sha512-256(abc) = %s", got)
	}
	if _, err := Hasher("md5"); err == nil || !strings.Contains(err.Error(), `"md5"`) {
		t.Errorf("Hasher(md5) = %v, want an error naming it", err)
	}
}

// TestGolden pins the cut points and ids of seeded data with a fixed
// polynomial: if a dependency bump or a change here moves a boundary,
// existing filesystems would stop deduplicating against new writes.
func TestGolden(t *testing.T) {
	data := randomBytes(7, 12*miB)
	want := []struct {
		size int
		id   string
	}{
		{684579, "d07b8825a9f3e3e8f30b5ec6f9d8c1c555bb44aba41eb6cca4770431bb9ffa94"},
		{1815610, "e9366a50cb46715f9507611ce6d7afc4020cbbeed642135577ee9e3a27ecf669"},
		{504607, "6de1b102dbec191190bb11a294030dc3c20a90b5db57cb927ef012080a55e8ce"},
		{1102871, "50e4adfc870e1e2905c36f786b0712724057e8e488b60b4b356f14c0db87b101"},
		{951145, "c8bec41d035ef7e2940cec620133afaac5d8cf0a35503621699b5abc86919a9e"},
		{1106818, "4f38ba0082387426c6eaa1cd99b92baceaf4d4b4711323bbe60d20fb61627637"},
		{329833, "9f858812f493e6f8cf0eea23672d9e8270e9a529032ca7579662ec414c6070e7"},
		{474655, "a4b3b6f2ec2f0df5c215a78dea5753e51d276910c1b0d8244e7f7ff4d29ee54a"},
		{2334721, "1c4ac60f233e02c516cc800f70429ae421039cb74e71f817329f71a97b153b16"},
		{331420, "57dd7a81e35f640c9650fb2599d880e4b5bc1f1b2249f46a2c9b9a389e73848b"},
		{1074333, "b6dc3478dbd1465fdccab841dc95e1dceb2ce4352de8622caf633d0074fc9e6f"},
		{276117, "565228c5bea3f4fe0cdd57b1529fc5afc418d77a1cff08700f182c28d55cd7cd"},
		{1596203, "a11d39b0af3cfc846c37f3962f75de9b67dc6a89fc3baaf9984d885c05ae9177"},
	}
	got, err := Split(data, testParams(), blake3Hash(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d chunks, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if len(got[i].Data) != want[i].size || hex.EncodeToString(got[i].ID[:]) != want[i].id {
			t.Errorf("chunk %d: %d bytes, id %x; want %d bytes, id %s",
				i, len(got[i].Data), got[i].ID, want[i].size, want[i].id)
		}
	}

	// The small fuzzing params, pinned too.
	wantSmall := []int{131, 126, 92, 105, 125, 315, 215, 260, 538, 366, 181, 331, 411, 114, 130, 626, 30}
	small, err := Split(data[:4096], smallParams(), blake3Hash(t))
	if err != nil {
		t.Fatal(err)
	}
	var gotSmall []int
	for _, c := range small {
		gotSmall = append(gotSmall, len(c.Data))
	}
	if !equalInts(gotSmall, wantSmall) {
		t.Errorf("small params: sizes %v, want %v", gotSmall, wantSmall)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// streamChunks writes data to a Stream in pieces whose sizes come from rng
// (1 to max(maxWrite, 1) bytes) and returns the emitted chunks.
func streamChunks(t testing.TB, data []byte, p Params, hash HashFunc, rng *rand.Rand, maxWrite int) []Chunk {
	t.Helper()
	var got []Chunk
	s, err := NewStream(p, hash, func(c Chunk) error {
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(max(maxWrite, 1)))
		w, err := s.Write(rest[:n])
		if err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		rest = rest[n:]
	}
	if s.Offset() != uint64(len(data)) {
		t.Fatalf("Offset() = %d, want %d", s.Offset(), len(data))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return got
}

// checkChunks verifies the invariants every chunking must hold and that
// got equals want (Split's result).
func checkChunks(t testing.TB, data []byte, p Params, hash HashFunc, got, want []Chunk) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("stream emitted %d chunks, Split cut %d", len(got), len(want))
	}
	var off uint64
	for i, c := range got {
		w := want[i]
		if c.Offset != w.Offset || c.ID != w.ID || !bytes.Equal(c.Data, w.Data) {
			t.Fatalf("chunk %d: stream (offset %d, %d bytes) != Split (offset %d, %d bytes)",
				i, c.Offset, len(c.Data), w.Offset, len(w.Data))
		}
		if c.Offset != off {
			t.Fatalf("chunk %d at offset %d, want %d", i, c.Offset, off)
		}
		if !bytes.Equal(c.Data, data[off:off+uint64(len(c.Data))]) {
			t.Fatalf("chunk %d: data differs from the input", i)
		}
		if c.ID != hash(c.Data) {
			t.Fatalf("chunk %d: id is not hash(data)", i)
		}
		n := uint(len(c.Data))
		if n == 0 || n > p.MaxSize || (n < p.MinSize && i != len(got)-1) {
			t.Fatalf("chunk %d of %d: %d bytes outside [%d, %d]", i, len(got), n, p.MinSize, p.MaxSize)
		}
		off += uint64(n)
	}
	if off != uint64(len(data)) {
		t.Fatalf("chunks cover %d bytes, want %d", off, len(data))
	}
}

// TestStreamMatchesSplit is the property dedup rests on: the cut points do
// not depend on how the bytes were split into Writes.
func TestStreamMatchesSplit(t *testing.T) {
	hash := blake3Hash(t)
	size := 24 * miB
	if raceEnabled || testing.Short() {
		size = 6 * miB
	}
	data := randomBytes(11, size)
	for _, tc := range []struct {
		name     string
		p        Params
		maxWrite int
	}{
		{"defaults/fuse writes", testParams(), miB},
		{"defaults/tiny writes", testParams(), 4 * kiB},
		{"defaults/big writes", testParams(), 8 * miB},
		{"small/tiny writes", smallParams(), 300},
		{"small/fuse writes", smallParams(), miB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := data
			if tc.maxWrite < 64*kiB {
				d = data[:2*miB] // keep the number of Writes reasonable
			}
			want, err := Split(d, tc.p, hash)
			if err != nil {
				t.Fatal(err)
			}
			for seed := range uint64(3) {
				got := streamChunks(t, d, tc.p, hash, rand.New(rand.NewPCG(seed, 1)), tc.maxWrite)
				checkChunks(t, d, tc.p, hash, got, want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	hash := blake3Hash(t)
	if chunks, err := Split(nil, testParams(), hash); err != nil || len(chunks) != 0 {
		t.Fatalf("Split(nil) = %d chunks, %v", len(chunks), err)
	}
	got := streamChunks(t, nil, testParams(), hash, rand.New(rand.NewPCG(1, 1)), 10)
	if len(got) != 0 {
		t.Fatalf("empty stream emitted %d chunks", len(got))
	}
	// A zero-length Write is not data.
	s, err := NewStream(testParams(), hash, func(Chunk) error { t.Error("emit called"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewStreamRejects(t *testing.T) {
	emit := func(Chunk) error { return nil }
	if _, err := NewStream(DefaultParams(), blake3Hash(t), emit); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("NewStream without polynomial = %v, want ErrInvalidParams", err)
	}
	if _, err := NewStream(testParams(), nil, emit); err == nil {
		t.Error("NewStream with nil hash succeeded")
	}
	if _, err := NewStream(testParams(), blake3Hash(t), nil); err == nil {
		t.Error("NewStream with nil emit succeeded")
	}
	if _, err := Split([]byte("x"), Params{}, blake3Hash(t)); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("Split with zero params = %v, want ErrInvalidParams", err)
	}
}

// TestStreamEmitsEarly checks chunks come out while the stream is still
// being written, not only at Close.
func TestStreamEmitsEarly(t *testing.T) {
	emitted := make(chan Chunk, 1)
	s, err := NewStream(smallParams(), blake3Hash(t), func(c Chunk) error {
		select {
		case emitted <- c:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	// restic reads 512 KiB at a time: after 1 MiB the first half is cut.
	if _, err := s.Write(randomBytes(5, miB)); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-emitted:
		if c.Offset != 0 {
			t.Fatalf("first chunk at offset %d", c.Offset)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no chunk emitted before Close")
	}
}

func TestEmitError(t *testing.T) {
	boom := errors.New("store full")
	calls := 0
	s, err := NewStream(smallParams(), blake3Hash(t), func(Chunk) error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Writes are queued ahead of the chunker, so the failure reaches the
	// writer a little later than the failing emit: keep writing (up to
	// 64 MiB, far more than the stream buffers) until it does.
	data := randomBytes(6, 2*miB)
	var werr error
	for n := 0; n < 32*len(data) && werr == nil; n += 64 * kiB {
		off := n % len(data)
		_, werr = s.Write(data[off : off+64*kiB])
	}
	if !errors.Is(werr, boom) {
		t.Fatalf("Write after emit failed = %v, want %v", werr, boom)
	}
	if _, err := s.Write([]byte("more")); !errors.Is(err, boom) {
		t.Fatalf("later Write = %v, want %v", err, boom)
	}
	if err := s.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v, want %v", err, boom)
	}
	if err := s.Close(); !errors.Is(err, boom) {
		t.Fatalf("second Close = %v, want %v", err, boom)
	}
	if calls != 3 {
		t.Fatalf("emit called %d times after failing, want 3 calls in all", calls)
	}
	s.Abort() // after Close: a no-op
}

func TestEmitErrorAtClose(t *testing.T) {
	boom := errors.New("store down")
	s, err := NewStream(testParams(), blake3Hash(t), func(Chunk) error { return boom })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("short file")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v, want %v", err, boom)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

// TestAbort stops a stream whose emit is blocked (a full store pool) while
// a Write waits on it: both must return, and nothing more is emitted.
func TestAbort(t *testing.T) {
	release := make(chan struct{})
	blocked := make(chan struct{}) // closed by the first emit
	var mu sync.Mutex
	calls := 0
	s, err := NewStream(smallParams(), blake3Hash(t), func(Chunk) error {
		mu.Lock()
		calls++
		if calls == 1 {
			close(blocked)
		}
		mu.Unlock()
		<-release
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() {
		data := randomBytes(8, 4*miB)
		var err error
		for off := 0; off < len(data) && err == nil; off += miB {
			_, err = s.Write(data[off : off+miB])
		}
		writeErr <- err
	}()
	// Wait until emit is blocked, then abort from another goroutine.
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("emit never called")
	}
	aborted := make(chan struct{})
	go func() {
		s.Abort()
		close(aborted)
	}()
	if err := <-writeErr; !errors.Is(err, ErrAborted) {
		t.Fatalf("blocked Write = %v, want ErrAborted", err)
	}
	close(release) // Abort waits for the emit in progress
	<-aborted
	if calls != 1 {
		t.Fatalf("emit called %d times, want 1 (none after Abort)", calls)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrAborted) {
		t.Fatalf("Write after Abort = %v, want ErrAborted", err)
	}
	if err := s.Close(); !errors.Is(err, ErrAborted) {
		t.Fatalf("Close after Abort = %v, want ErrAborted", err)
	}
	s.Abort()
}

func TestAbortAfterClose(t *testing.T) {
	var n int
	s, err := NewStream(testParams(), blake3Hash(t), func(Chunk) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	s.Abort()
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Close and Abort = %v, want nil", err)
	}
	if n != 1 {
		t.Fatalf("emitted %d chunks, want 1", n)
	}
}

// TestNoGoroutineLeak ends many streams every possible way and checks the
// goroutine count returns to where it started.
func TestNoGoroutineLeak(t *testing.T) {
	hash := blake3Hash(t)
	data := randomBytes(9, 700*kiB)
	boom := errors.New("boom")
	before := runtime.NumGoroutine()
	for i := range 200 {
		calls := 0
		s, err := NewStream(smallParams(), hash, func(Chunk) error {
			calls++
			if i%4 == 2 && calls == 2 {
				return boom
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 != 0 {
			_, _ = s.Write(data[:64*kiB*(i%11)])
		}
		switch i % 4 {
		case 0, 1:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		case 2:
			_, _ = s.Write(data)
			_ = s.Close()
		case 3:
			s.Abort()
		}
	}
	noLeakedGoroutines(t, before, "200 streams")
}

// TestChunkDataOwned checks emitted chunks do not alias restic's or the
// writer's buffers: later writes must not change earlier chunks.
func TestChunkDataOwned(t *testing.T) {
	var got []Chunk
	s, err := NewStream(smallParams(), blake3Hash(t), func(c Chunk) error {
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := randomBytes(10, 2*miB)
	orig := bytes.Clone(buf)
	for off := 0; off < len(buf); off += 256 * kiB {
		if _, err := s.Write(buf[off : off+256*kiB]); err != nil {
			t.Fatal(err)
		}
		clear(buf[off : off+256*kiB]) // the writer reuses its buffer
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := Split(orig, smallParams(), blake3Hash(t))
	if err != nil {
		t.Fatal(err)
	}
	checkChunks(t, orig, smallParams(), blake3Hash(t), got, want)
}
