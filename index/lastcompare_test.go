package index

import (
	"testing"
)

// TestLastCompare: the last comparison is kept across a reopen, replaced
// by the next, and absent in a new index.
func TestLastCompare(t *testing.T) {
	ctx := t.Context()
	db, path := newDB(t)
	if got, err := db.LastCompare(ctx); err != nil || got != nil {
		t.Fatalf("a new index: %q, %v; want nothing", got, err)
	}
	for _, r := range []string{`{"state":"done","mismatches":2}`, `{"state":"done","mismatches":0}`} {
		if err := db.SaveLastCompare(ctx, []byte(r)); err != nil {
			t.Fatal(err)
		}
		if got, err := db.LastCompare(ctx); err != nil || string(got) != r {
			t.Fatalf("after saving %s: %q, %v", r, got, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path)
	if got, err := db.LastCompare(ctx); err != nil || string(got) != `{"state":"done","mismatches":0}` {
		t.Fatalf("after a reopen: %q, %v", got, err)
	}
}
