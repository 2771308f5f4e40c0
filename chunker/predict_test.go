package chunker

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// successors is a Predictor built like the index answers it: for each
// chunk, the chunk after it in some earlier chunking, unless that one was
// the last (its end is where the bytes stopped, not a cut).
type successors struct {
	mu    sync.Mutex
	next  map[[32]byte]Chunk
	calls int
}

func (s *successors) add(chunks []Chunk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = map[[32]byte]Chunk{}
	}
	for i := 0; i+1 < len(chunks)-1; i++ { // chunks[i+1] is not the last
		s.next[chunks[i].ID] = chunks[i+1]
	}
}

func (s *successors) predict(prev [32]byte) ([32]byte, uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	c, ok := s.next[prev]
	return c.ID, uint32(len(c.Data)), ok
}

// streamPredicted is streamChunks with a predictor; it returns the chunks
// and how many were predicted.
func streamPredicted(t testing.TB, data []byte, p Params, hash HashFunc, pred Predictor, rng *rand.Rand, maxWrite int) ([]Chunk, int64) {
	t.Helper()
	var got []Chunk
	s, err := NewStreamWith(p, hash, func(c Chunk) error {
		got = append(got, c)
		return nil
	}, StreamOptions{Predict: pred})
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(max(maxWrite, 1)))
		if w, err := s.Write(rest[:n]); err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		rest = rest[n:]
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return got, s.Predicted()
}

// TestPredictedCutsMatchSplit is the property prediction rests on: with
// a predictor, a stream cuts exactly where restic alone does, whether the
// data is known (a second copy: almost every chunk predicted), known with
// edits (predictions fail at the edits and resume after them), or
// predicted wrongly on purpose.
func TestPredictedCutsMatchSplit(t *testing.T) {
	hash := blake3Hash(t)
	size := 32 * miB
	if raceEnabled || testing.Short() {
		size = 8 * miB
	}
	orig := randomBytes(21, size)
	rng := rand.New(rand.NewPCG(5, 6))
	edited := append([]byte(nil), orig...)
	edits := size/(5*miB) + 1 // small ones here and there: overwrites or inserts
	for range edits {
		edited = edit(edited, 1, rng.IntN(2) == 0, rng)
	}
	for _, tc := range []struct {
		name string
		p    Params
	}{{"defaults", testParams()}, {"small", Params{Polynomial: testPolynomial, MinSize: 4 * kiB, AvgSize: 8 * kiB, MaxSize: 64 * kiB}}} {
		t.Run(tc.name, func(t *testing.T) {
			known, err := Split(orig, tc.p, hash)
			if err != nil {
				t.Fatal(err)
			}
			var succ successors
			succ.add(known)

			// A second copy: every chunk but the first (restic finds it)
			// and the last (never predicted) comes from prediction.
			got, hits := streamPredicted(t, orig, tc.p, hash, succ.predict, rand.New(rand.NewPCG(1, 1)), miB)
			checkChunks(t, orig, tc.p, hash, got, known)
			if want := int64(len(known) - 2); hits < want {
				t.Errorf("second copy: %d of %d chunks predicted, want at least %d", hits, len(known), want)
			}

			// Edited data: the cuts are restic's, and most chunks are
			// still predicted.
			want, err := Split(edited, tc.p, hash)
			if err != nil {
				t.Fatal(err)
			}
			got, hits = streamPredicted(t, edited, tc.p, hash, succ.predict, rand.New(rand.NewPCG(2, 1)), 64*kiB)
			checkChunks(t, edited, tc.p, hash, got, want)
			// Per edit: the chunk it changed and the next (restic's,
			// probed: the data is known again) and maybe a neighbour the
			// edit shifted; then the first chunk and the last.
			if min := int64(len(want) - 3*edits - 2); hits < min {
				t.Errorf("edited copy: %d of %d chunks predicted, want at least %d (%d edits)", hits, len(want), min, edits)
			}

			// New data: nothing to predict, asked only now and then.
			fresh := randomBytes(22, size/2)
			want, err = Split(fresh, tc.p, hash)
			if err != nil {
				t.Fatal(err)
			}
			succ.calls = 0
			got, hits = streamPredicted(t, fresh, tc.p, hash, succ.predict, rand.New(rand.NewPCG(3, 1)), miB)
			checkChunks(t, fresh, tc.p, hash, got, want)
			if hits != 0 || succ.calls > len(want)/4+8 {
				t.Errorf("new data: %d predicted, predictor asked %d times for %d chunks", hits, succ.calls, len(want))
			}

			// A predictor that is always wrong (sizes and ids that do
			// not match) changes nothing.
			liar := func(prev [32]byte) ([32]byte, uint32, bool) {
				return prev, uint32(1 + int(prev[0])*997%int(tc.p.MaxSize)), true
			}
			want, err = Split(orig, tc.p, hash)
			if err != nil {
				t.Fatal(err)
			}
			got, hits = streamPredicted(t, orig, tc.p, hash, liar, rand.New(rand.NewPCG(4, 1)), miB)
			checkChunks(t, orig, tc.p, hash, got, want)
			if hits != 0 {
				t.Errorf("wrong predictions: %d taken", hits)
			}
		})
	}
}

// storedData is size random bytes (from seed) already stored once: their
// chunks by Split with small test parameters, and a predictor that knows
// them.
func storedData(t *testing.T, seed uint64, size int) (HashFunc, Params, []byte, []Chunk, *successors) {
	t.Helper()
	hash := blake3Hash(t)
	p := Params{Polynomial: testPolynomial, MinSize: 4 * kiB, AvgSize: 8 * kiB, MaxSize: 64 * kiB}
	data := randomBytes(seed, size)
	known, err := Split(data, p, hash)
	if err != nil {
		t.Fatal(err)
	}
	succ := &successors{}
	succ.add(known)
	return hash, p, data, known, succ
}

// TestPredictedDataOwned checks predicted chunks do not alias the inbox:
// later writes must not change chunks already emitted.
func TestPredictedDataOwned(t *testing.T) {
	hash, p, data, known, succ := storedData(t, 23, 4*miB)
	var got []Chunk
	var copies [][]byte
	s, err := NewStreamWith(p, hash, func(c Chunk) error {
		got = append(got, c)
		copies = append(copies, bytes.Clone(c.Data))
		return nil
	}, StreamOptions{Predict: succ.predict})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64*kiB)
	for off := 0; off < len(data); off += len(buf) {
		copy(buf, data[off:])
		if _, err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
		clear(buf) // the writer reuses its buffer
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Predicted() == 0 {
		t.Fatal("nothing was predicted")
	}
	for i, c := range got {
		if !bytes.Equal(c.Data, copies[i]) {
			t.Fatalf("chunk %d changed after it was emitted", i)
		}
	}
	checkChunks(t, data, p, hash, got, known)
}

// TestPredictedStreamEnds checks a stream that follows predictions still
// ends every way a stream can: a failing emit fails Close and later
// Writes, and Abort stops it at once, with no goroutine left behind.
func TestPredictedStreamEnds(t *testing.T) {
	hash, p, data, _, succ := storedData(t, 24, 2*miB)
	before := runtime.NumGoroutine()
	boom := errors.New("store full")
	for i := range 40 {
		calls := 0
		s, err := NewStreamWith(p, hash, func(Chunk) error {
			calls++
			if i%2 == 0 && calls == 10+i {
				return boom
			}
			return nil
		}, StreamOptions{Predict: succ.predict})
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for off := 0; off < len(data) && werr == nil; off += 32 * kiB {
			_, werr = s.Write(data[off : off+32*kiB])
			if i%2 == 1 && off == 16*32*kiB {
				s.Abort()
				break
			}
		}
		cerr := s.Close()
		switch {
		case i%2 == 0 && (!errors.Is(cerr, boom) || (werr != nil && !errors.Is(werr, boom))):
			t.Fatalf("run %d: failing emit: Write %v, Close %v, want %v", i, werr, cerr, boom)
		case i%2 == 1 && !errors.Is(cerr, ErrAborted):
			t.Fatalf("run %d: Close after Abort = %v, want ErrAborted", i, cerr)
		}
	}
	noLeakedGoroutines(t, before, "40 streams")
}
