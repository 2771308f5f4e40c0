package chunker

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
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

// waitFor polls cond until it returns nil, and fails t with cond's last
// error if that takes longer than timeout: how a test waits for something
// it cannot join (goroutines to exit) instead of sleeping for a guess.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(time.Millisecond) // the poll interval
	}
}

// noLeakedGoroutines waits until no more goroutines run than before did;
// streams is what ran meanwhile, for the failure message.
func noLeakedGoroutines(t testing.TB, before int, streams string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after %s, %d before", n, streams, before)
		}
		return nil
	})
}
