package fs

import (
	"os"
	"testing"
)

// TestModelRandomOpsLong is the long form of TestModelRandomOps for `make
// stress` (DUALSTORE_STRESS=1, with -race): many more seeds of the
// in-process model. The end-to-end model over the built binary, with
// renames, links, remounts and several processes, is integration's
// TestModelOps and TestModelProcs.
func TestModelRandomOpsLong(t *testing.T) {
	if s := os.Getenv("DUALSTORE_STRESS"); s == "" || s == "0" {
		t.Skip("long form: runs with DUALSTORE_STRESS=1 (make stress)")
	}
	if os.Getenv("DUALSTORE_MODEL_SEEDS") == "" {
		t.Setenv("DUALSTORE_MODEL_SEEDS", "150")
	}
	TestModelRandomOps(t)
}
