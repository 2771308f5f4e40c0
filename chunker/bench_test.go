package chunker

import (
	"testing"
)

// BenchmarkChunking measures a Stream fed 1 MiB Writes (as FUSE delivers
// them) per candidate: "cut" with a no-op hash isolates restic's cutting,
// "blake3" is the whole write path of this package.
func BenchmarkChunking(b *testing.B) {
	data := randomBytes(2, 64*miB)
	noHash := func([]byte) [32]byte { return [32]byte{} }
	for _, c := range candidates {
		for _, h := range []struct {
			name string
			fn   HashFunc
		}{{"cut", noHash}, {"blake3", blake3Hash(b)}} {
			b.Run(c.name+"/"+h.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					s, err := NewStream(c.params(), h.fn, func(Chunk) error { return nil })
					if err != nil {
						b.Fatal(err)
					}
					for off := 0; off < len(data); off += miB {
						if _, err := s.Write(data[off:min(off+miB, len(data))]); err != nil {
							b.Fatal(err)
						}
					}
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkHash measures the chunk id hashes on a default-sized chunk.
func BenchmarkHash(b *testing.B) {
	data := randomBytes(3, DefaultAvgSize)
	for _, name := range []string{HashBLAKE3, HashSHA512_256} {
		h, err := Hasher(name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				h(data)
			}
		})
	}
}
