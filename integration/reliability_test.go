package integration

// Shared by the reliability tests of issue #7 (crash_test.go,
// model_test.go, load_test.go): short forms run in `make test`, long
// forms with DUALSTORE_STRESS=1 (`make stress`); every random choice comes
// from a seed that a failure prints and DUALSTORE_SEED replays.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// relStress reports whether the long forms run (DUALSTORE_STRESS=1).
func relStress() bool {
	s := os.Getenv("DUALSTORE_STRESS")
	return s != "" && s != "0"
}

// relPick returns short in `make test` and long under DUALSTORE_STRESS.
func relPick[T any](short, long T) T {
	if relStress() {
		return long
	}
	return short
}

// relSeeds returns the seeds of a run: n fresh ones (from the clock), or
// only DUALSTORE_SEED when it is set, to replay a failure.
func relSeeds(t *testing.T, n int) []uint64 {
	t.Helper()
	if s := os.Getenv("DUALSTORE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("DUALSTORE_SEED=%q: not a number: %v", s, err)
		}
		return []uint64{seed}
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	out := make([]uint64, n)
	for i := range out {
		out[i] = r.Uint64() % 1_000_000_000 // short enough to type
	}
	return out
}

// relRunSeeds runs fn once per seed in a subtest named seed=N; a failing
// one says how to replay it.
func relRunSeeds(t *testing.T, seeds []uint64, fn func(t *testing.T, seed uint64)) {
	t.Helper()
	parent := t.Name()
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: DUALSTORE_SEED=%d go test -count=1 -run '^%s$' ./integration/ (DUALSTORE_STRESS=%s)",
						seed, parent, os.Getenv("DUALSTORE_STRESS"))
				}
			})
			fn(t, seed)
		})
	}
}

// relRand is the generator of one seed.
func relRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6475616c^stream))
}
