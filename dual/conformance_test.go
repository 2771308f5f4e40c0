package dual_test

import (
	"crypto/sha256"
	"testing"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

// The manager stands wherever a store can, so it keeps the Store
// contracts. The suite ids chunks with SHA-256, so the manager verifies
// with it here.
func TestManagerConformance(t *testing.T) {
	hash := func(data []byte) stores.ID { return sha256.Sum256(data) }
	storetest.Run(t, func(t *testing.T) stores.Store {
		primary := dual.NewTier(dual.TierPrimary, []stores.Store{stores.NewMem("p0")}, hash)
		safety := dual.NewTier(dual.TierSafety, []stores.Store{newLocal(t, t.TempDir(), "s0")}, hash)
		o := baseOptions()
		o.Hash = hash
		o.StoreTimeout = 0 // no timeout: calls run on the caller's context
		m, err := dual.New(primary, safety, newMemPending(), o, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
