package chunker

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// candidate is a set of chunk sizes measured by TestDedupEdited and
// BenchmarkChunking.
type candidate struct {
	name                      string
	minSize, avgSize, maxSize uint
}

var candidates = []candidate{
	{"casync 16K/64K/256K", 16 * kiB, 64 * kiB, 256 * kiB},
	{"64K/256K/1M", 64 * kiB, 256 * kiB, 1 * miB},
	{"128K/256K/2M", 128 * kiB, 256 * kiB, 2 * miB},
	{"128K/512K/4M", 128 * kiB, 512 * kiB, 4 * miB},
	{"256K/512K/4M", 256 * kiB, 512 * kiB, 4 * miB},
	{"256K/1M/8M", 256 * kiB, 1 * miB, 8 * miB},
	{"restic 512K/1M/8M", 512 * kiB, 1 * miB, 8 * miB},
}

func (c candidate) params() Params {
	return Params{Polynomial: testPolynomial, MinSize: c.minSize, AvgSize: c.avgSize, MaxSize: c.maxSize}
}

func (c candidate) isDefault() bool {
	d := DefaultParams()
	return c.minSize == d.MinSize && c.avgSize == d.AvgSize && c.maxSize == d.MaxSize
}

// edit applies n edits of 1..16 bytes at random places: inserts when insert
// is true, otherwise in-place overwrites.
func edit(data []byte, n int, insert bool, rng *rand.Rand) []byte {
	out := append([]byte(nil), data...)
	for range n {
		at := rng.IntN(len(out))
		patch := make([]byte, 1+rng.IntN(16))
		for i := range patch {
			patch[i] = byte(rng.Uint32())
		}
		if insert {
			out = append(out[:at], append(patch, out[at:]...)...)
		} else {
			copy(out[at:], patch)
		}
	}
	return out
}

// sharedFraction is the fraction of edited's bytes that lie in chunks whose
// id also occurs among orig's chunks: what dedup saves on the rewrite.
func sharedFraction(orig, edited []Chunk) float64 {
	ids := make(map[[32]byte]bool, len(orig))
	for _, c := range orig {
		ids[c.ID] = true
	}
	var shared, total int
	for _, c := range edited {
		total += len(c.Data)
		if ids[c.ID] {
			shared += len(c.Data)
		}
	}
	return float64(shared) / float64(total)
}

// TestDedupEdited measures, per candidate, how much of a 64 MiB random file
// still deduplicates after a few small edits, and checks the defaults. Run
// with -v for the full table (it is what doc.go quotes).
func TestDedupEdited(t *testing.T) {
	size := 64 * miB
	list := candidates
	if raceEnabled || testing.Short() || !testing.Verbose() {
		size = 16 * miB
		list = nil
		for _, c := range candidates {
			if c.isDefault() {
				list = append(list, c)
			}
		}
		if len(list) == 0 {
			list = []candidate{{"default", DefaultMinSize, DefaultAvgSize, DefaultMaxSize}}
		}
	}
	data := randomBytes(1, size)
	hash := blake3Hash(t)

	type scenario struct {
		name   string
		edits  int
		insert bool
		seeds  int // the fraction is averaged over this many edit patterns
	}
	scenarios := []scenario{
		{"1 insert", 1, true, 4},
		{"10 inserts", 10, true, 4},
		{"10 overwrites", 10, false, 4},
		{"100 inserts", 100, true, 1},
	}

	origChunks := make([][]Chunk, len(list))
	mbps := make([]float64, len(list))
	for i, c := range list {
		start := time.Now()
		chunks, err := Split(data, c.params(), hash)
		if err != nil {
			t.Fatal(err)
		}
		mbps[i] = float64(size) / 1e6 / time.Since(start).Seconds()
		for j := range chunks {
			chunks[j].Data = nil // only the ids are compared
		}
		origChunks[i] = chunks
	}
	// shared[candidate][scenario] is the mean shared fraction.
	shared := make([][]float64, len(list))
	for i := range shared {
		shared[i] = make([]float64, len(scenarios))
	}
	for si, s := range scenarios {
		for seed := range s.seeds {
			rng := rand.New(rand.NewPCG(42, uint64(si*100+seed)))
			edited := edit(data, s.edits, s.insert, rng)
			for ci, c := range list {
				p := c.params()
				chunks, err := Split(edited, p, hash)
				if err != nil {
					t.Fatal(err)
				}
				f := sharedFraction(origChunks[ci], chunks)
				shared[ci][si] += f / float64(s.seeds)
				// A small edit changes the chunk it lands in and at most
				// the next one (a boundary created or destroyed) before the
				// cut points resynchronise: each edit costs <= 2*MaxSize.
				worst := 1 - float64(s.edits)*2*float64(p.MaxSize)/float64(len(edited))
				if f < worst {
					t.Errorf("%s, %s (seed %d): shared %.3f, want >= %.3f", c.name, s.name, seed, f, worst)
				}
			}
		}
	}

	var tab strings.Builder
	fmt.Fprintf(&tab, "%d MiB random file, fraction of bytes in chunks shared with the original\n", size/miB)
	fmt.Fprintf(&tab, "%-20s %8s %10s %9s", "min/avg/max", "chunks", "mean KiB", "MB/s")
	for _, s := range scenarios {
		fmt.Fprintf(&tab, " %14s", s.name)
	}
	tab.WriteString("\n")
	for ci, c := range list {
		n := len(origChunks[ci])
		fmt.Fprintf(&tab, "%-20s %8d %10.0f %9.0f", c.name, n, float64(size)/float64(n)/kiB, mbps[ci])
		for si, s := range scenarios {
			f := shared[ci][si]
			fmt.Fprintf(&tab, " %14.3f", f)
			if c.isDefault() && (s.edits == 1 || s.edits == 10 && size == 64*miB) && f < 0.8 {
				t.Errorf("defaults, %s: shared %.3f on average, want > 0.8", s.name, f)
			}
		}
		tab.WriteString("\n")
	}
	t.Log("\n" + tab.String())
}
