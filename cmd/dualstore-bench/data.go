package main

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
)

// A dataset is a deterministic byte stream: the same name, seed and size
// give the same bytes on every machine, so every variant of a run (and
// every run) writes exactly the same file.
type dataset struct {
	// name is "random" or "compressible".
	name string
	seed uint64
}

var (
	randomData       = dataset{name: "random", seed: 1}
	compressibleData = dataset{name: "compressible", seed: 2}
)

// reader streams size bytes of the dataset. It holds a few KiB, whatever
// size is.
func (d dataset) reader(size int64) (io.Reader, error) {
	var g interface{ fill([]byte) }
	switch d.name {
	case "random":
		g = newRandomGen(d.seed)
	case "compressible":
		g = newTextGen(d.seed)
	default:
		return nil, fmt.Errorf("unknown dataset %q", d.name)
	}
	return &genReader{g: g, left: size}, nil
}

// genReader cuts a generator's endless stream to a length.
type genReader struct {
	g    interface{ fill([]byte) }
	left int64
}

func (r *genReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	r.g.fill(p)
	r.left -= int64(len(p))
	return len(p), nil
}

// randomGen is incompressible: the AES-128-CTR keystream of a key made
// from the seed. AES-NI makes it about 10 GB/s on one core, so generating
// never limits a write.
type randomGen struct{ s cipher.Stream }

func newRandomGen(seed uint64) *randomGen {
	key := make([]byte, 16)
	binary.LittleEndian.PutUint64(key, seed)
	blk, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 16-byte key cannot fail
	}
	return &randomGen{s: cipher.NewCTR(blk, make([]byte, aes.BlockSize))}
}

func (g *randomGen) fill(p []byte) {
	clear(p)
	g.s.XORKeyStream(p, p)
}

// textGen writes text-like bytes: lines of words drawn with a Zipf law
// from an 8192-word vocabulary of made-up words, with numbers and hex ids
// sprinkled in, like prose mixed with logs. zstd -3 compresses it about
// 2.8× (-1: 2.4×): compressible, yet no two chunks are alike, so it does
// not deduplicate within a file. About 600 MB/s.
type textGen struct {
	r     *rand.PCG
	words [][]byte
	// pick maps 16 random bits to a word index with Zipf(1) weights.
	pick []uint16
	// pending holds what the last fill cut off, so the stream is the
	// same however it is read.
	pending []byte
	line    []byte
}

const vocabulary = 8192

func newTextGen(seed uint64) *textGen {
	g := &textGen{r: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15), pick: make([]uint16, 1<<16)}
	vr := rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d))
	for range vocabulary {
		w := make([]byte, 2+vr.IntN(4)+vr.IntN(5))
		for j := range w {
			w[j] = 'a' + byte(vr.IntN(26))
		}
		g.words = append(g.words, w)
	}
	var total float64
	for i := range vocabulary {
		total += 1 / float64(i+1)
	}
	acc, j := 0.0, 0
	for i := range vocabulary {
		acc += 1 / float64(i+1) / total
		for j < len(g.pick) && float64(j)/float64(len(g.pick)) < acc {
			g.pick[j] = uint16(i)
			j++
		}
	}
	for ; j < len(g.pick); j++ {
		g.pick[j] = vocabulary - 1
	}
	return g
}

const hexDigits = "0123456789abcdef"

// next appends one piece of text (four words and maybe a number, an id
// or the end of a sentence) to g.line.
func (g *textGen) next() {
	x := g.r.Uint64()
	for k := range 4 {
		g.line = append(g.line, g.words[g.pick[uint16(x>>(16*k))]]...)
		g.line = append(g.line, ' ')
	}
	y := g.r.Uint64()
	switch y & 15 {
	case 0:
		for k := range 16 {
			g.line = append(g.line, hexDigits[(y>>(4+4*k))&15])
		}
		g.line = append(g.line, ' ')
	case 1, 2:
		g.line = append(g.line, '.', '\n')
	case 3:
		n := (y >> 8) % 1000000
		g.line = fmt.Appendf(g.line, "%06d, ", n)
	}
}

func (g *textGen) fill(p []byte) {
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	for n < len(p) {
		g.line = g.line[:0]
		g.next()
		c := copy(p[n:], g.line)
		n += c
		if c < len(g.line) {
			g.pending = append(g.pending[:0], g.line[c:]...)
		}
	}
}
