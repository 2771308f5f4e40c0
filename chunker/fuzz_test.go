package chunker

import (
	"math/rand/v2"
	"testing"
)

// FuzzStream checks, for any bytes and any split into Writes, that Stream
// and Split agree, the chunks concatenate back to the input, every chunk
// but the last lies within [MinSize, MaxSize], and ids are hash(data).
func FuzzStream(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint16(1))
	f.Add([]byte("hello"), uint64(1), uint16(2))
	f.Add(randomBytes(1, 5000), uint64(2), uint16(700))
	f.Add(make([]byte, 3000), uint64(3), uint16(64))
	f.Add(randomBytes(2, 20000), uint64(4), uint16(4096))
	hash, err := Hasher(HashBLAKE3)
	if err != nil {
		f.Fatal(err)
	}
	p := smallParams()
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, maxWrite uint16) {
		want, err := Split(data, p, hash)
		if err != nil {
			t.Fatal(err)
		}
		got := streamChunks(t, data, p, hash, rand.New(rand.NewPCG(seed, 0)), int(maxWrite))
		checkChunks(t, data, p, hash, got, want)
	})
}
