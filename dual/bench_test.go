package dual_test

import (
	"context"
	"crypto/sha512"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
)

// benchSize is how much one engine benchmark iteration writes or reads.
const benchSize = 256 << 20

// benchParams are the default chunk sizes with a fixed polynomial, so
// runs cut the same chunks.
func benchParams() chunker.Params {
	p := chunker.DefaultParams()
	p.Polynomial = 0x3DA3358B4DC173
	return p
}

// benchManager builds a manager over one local store per tier, in fresh
// directories under dir.
func benchManager(b *testing.B, dir string, writeToBoth bool) *dual.Manager {
	return benchManagerWith(b, dir, writeToBoth, "", hashID)
}

// benchManagerWith is benchManager with the primary's layout and the
// chunk id function chosen.
func benchManagerWith(b *testing.B, dir string, writeToBoth bool, primaryLayout string, hashID func([]byte) stores.ID) *dual.Manager {
	b.Helper()
	open := func(name string) stores.Store {
		layout := ""
		if name == "primary" {
			layout = primaryLayout
		}
		l, err := local.New(local.Options{Root: filepath.Join(dir, name), Name: name, CreateRoot: true, Layout: layout})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	o := dual.DefaultOptions()
	o.Hash = hashID
	o.WriteToBoth = writeToBoth
	m, err := dual.New(dual.NewTier(dual.TierPrimary, []stores.Store{open("primary")}, hashID),
		dual.NewTier(dual.TierSafety, []stores.Store{open("safety")}, hashID), newMemPending(), o, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// engineWrite does what the filesystem does for one file written
// sequentially: stream the bytes through the chunker in 1 MiB writes and
// queue every chunk into a batch as it is cut, then wait for the batch.
func engineWrite(b *testing.B, m *dual.Manager, data []byte) []stores.ID {
	return engineWriteWith(b, m, data, blake3.Sum256)
}

func engineWriteWith(b *testing.B, m *dual.Manager, data []byte, hash chunker.HashFunc) []stores.ID {
	b.Helper()
	batch := m.NewBatch(context.Background(), nil)
	var ids []stores.ID
	s, err := chunker.NewStream(benchParams(), hash, func(c chunker.Chunk) error {
		ids = append(ids, c.ID)
		return batch.Put(c.ID, c.Data)
	})
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := s.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := batch.Wait(); err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkEngineWrite writes 256 MiB of random data end to end (chunk,
// hash, store) into two local stores ("dual") and into one ("single",
// write_to_both off), so the cost of the second copy shows side by side;
// "casync" is "dual" with a casync-layout primary (SHA512/256 ids, every
// chunk zstd), #16's write path.
func BenchmarkEngineWrite(b *testing.B) {
	data, _ := chunk(1, benchSize)
	sha := func(d []byte) stores.ID { return sha512.Sum512_256(d) }
	for _, mode := range []struct {
		name   string
		both   bool
		layout string
		hash   func([]byte) stores.ID
	}{{"dual", true, "", hashID}, {"single", false, "", hashID}, {"casync", true, local.LayoutCasync, sha}} {
		b.Run(mode.name, func(b *testing.B) {
			b.SetBytes(benchSize)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir, err := os.MkdirTemp(b.TempDir(), "engine-")
				if err != nil {
					b.Fatal(err)
				}
				m := benchManagerWith(b, dir, mode.both, mode.layout, mode.hash)
				b.StartTimer()
				engineWriteWith(b, m, data, func(d []byte) [32]byte { return mode.hash(d) })
				b.StopTimer()
				if err := m.Close(); err != nil {
					b.Fatal(err)
				}
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkEngineRead reads 256 MiB back chunk by chunk, in file order,
// with every chunk verified against its id, for each read preference.
func BenchmarkEngineRead(b *testing.B) {
	data, _ := chunk(2, benchSize)
	m := benchManager(b, b.TempDir(), true)
	defer m.Close()
	ids := engineWrite(b, m, data)
	for _, pref := range []dual.Preference{dual.PreferPrimary, dual.PreferSafety, dual.PreferFastest} {
		b.Run(pref.String(), func(b *testing.B) {
			m.SetReadPreference(pref)
			b.SetBytes(benchSize)
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				var n int
				for _, id := range ids {
					got, err := m.Get(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					n += len(got)
				}
				if n != benchSize {
					b.Fatalf("read %d bytes, want %d", n, benchSize)
				}
			}
		})
	}
}
