package s3

import (
	"testing"
	"time"
)

// waitFor polls cond until it returns nil, and fails t with cond's last
// error if that takes longer than timeout: how a test waits for a state it
// cannot be told about (a server back up, a request under way) instead of
// sleeping for a guess.
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
		time.Sleep(10 * time.Millisecond) // the poll interval
	}
}
