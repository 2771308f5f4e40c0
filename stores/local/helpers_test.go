package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores/storetest"
)

// noneAbandoned waits until no call of l's is left running in the
// background.
func noneAbandoned(t testing.TB, l *Local) {
	t.Helper()
	storetest.WaitFor(t, 10*time.Second, func() error {
		if n := l.abandoned.Load(); n != 0 {
			return fmt.Errorf("%d abandoned calls still running", n)
		}
		return nil
	})
}
