package dual_test

import (
	"bytes"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// fuzzParams are the smallest sizes the chunker allows, so that small
// inputs still make several chunks.
var fuzzParams = chunker.Params{Polynomial: 0x3DA3358B4DC173, MinSize: 64, AvgSize: 256, MaxSize: 1024}

// FuzzRoundTrip: bytes → chunker → dual manager → read back == bytes.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("x"))
	f.Add(bytes.Repeat([]byte("dualstore"), 500))
	f.Add(bytes.Repeat([]byte{0}, 5000))
	seed, _ := chunk(7, 20000)
	f.Add(seed)
	f.Add(seed[:1025])
	f.Fuzz(func(t *testing.T, data []byte) {
		chunks, err := chunker.Split(data, fuzzParams, blake3.Sum256)
		if err != nil {
			t.Fatalf("Split: %v", err)
		}
		// Every byte lands in a chunk, and no chunk exceeds MaxSize.
		r := newRig(t, rigConfig{})
		for _, c := range chunks {
			if len(c.Data) == 0 || len(c.Data) > int(fuzzParams.MaxSize) {
				t.Fatalf("chunk of %d bytes", len(c.Data))
			}
			if stores.ID(c.ID) != hashID(c.Data) {
				t.Fatalf("chunk id %x is not the BLAKE3 of its bytes", c.ID)
			}
			if err := r.m.Put(t.Context(), c.ID, c.Data); err != nil {
				t.Fatalf("Put: %v", err)
			}
		}
		// Read back preferring each tier in turn.
		var out []byte
		for i, c := range chunks {
			r.m.SetReadPreference(dual.Preference(i % 3))
			got, err := r.m.Get(t.Context(), c.ID)
			if err != nil {
				t.Fatalf("Get chunk %d: %v", i, err)
			}
			out = append(out, got...)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip of %d bytes returned %d other bytes", len(data), len(out))
		}
		st := r.m.Stats()
		if st.ChunkWrites.OK != int64(len(chunks)) || st.ChunkReads.OK != int64(len(chunks)) ||
			st.ChunkReads.Bytes != int64(len(data)) || st.Fallbacks != 0 || st.PendingBackfill != 0 {
			t.Fatalf("stats after the round trip: %+v", st)
		}
	})
}
