package local

import (
	"fmt"
	"testing"
	"time"
)

// waitFor polls cond until it returns nil, and fails t with cond's last
// error if that takes longer than timeout: how a test waits for work it
// cannot join (a write abandoned at its deadline, finishing in the
// background) instead of sleeping for a guess.
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

// noneAbandoned waits until no call of l's is left running in the
// background.
func noneAbandoned(t testing.TB, l *Local) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if n := l.abandoned.Load(); n != 0 {
			return fmt.Errorf("%d abandoned calls still running", n)
		}
		return nil
	})
}
