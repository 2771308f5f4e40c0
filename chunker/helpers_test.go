package chunker

import (
	"math/rand/v2"
	"testing"
)

// testPolynomial is the irreducible degree-53 polynomial restic's own tests
// use; golden results depend on it.
const testPolynomial = 0x3DA3358B4DC173

// testParams returns DefaultParams with testPolynomial.
func testParams() Params {
	p := DefaultParams()
	p.Polynomial = testPolynomial
	return p
}

// smallParams are the smallest sizes restic allows, for fast fuzzing.
func smallParams() Params {
	return Params{Polynomial: testPolynomial, MinSize: 64, AvgSize: 256, MaxSize: 1024}
}

// randomBytes returns n bytes from ChaCha8 with the given seed.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func blake3Hash(t testing.TB) HashFunc {
	t.Helper()
	h, err := Hasher(HashBLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
