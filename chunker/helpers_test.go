package chunker

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores/storetest"
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

// noLeakedGoroutines waits until no more goroutines run than before did;
// streams is what ran meanwhile, for the failure message.
func noLeakedGoroutines(t testing.TB, before int, streams string) {
	t.Helper()
	storetest.WaitFor(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after %s, %d before", n, streams, before)
		}
		return nil
	})
}
