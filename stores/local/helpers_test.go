package local

import (
	"testing"
	"time"
)

// waitFor polls cond until it holds, and fails t if it does not within
// timeout: how a test waits for work it cannot join (a write abandoned at
// its deadline, finishing in the background) instead of sleeping for a
// guess.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(time.Millisecond) // the poll interval
	}
}

// noneAbandoned waits until no call of l's is left running in the
// background.
func noneAbandoned(t testing.TB, l *Local) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool { return l.abandoned.Load() == 0 }, "the abandoned calls to end")
}
