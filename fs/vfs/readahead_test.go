package vfs

import "testing"

// TestReadaheadWindow checks the prefetch window: it starts small, doubles
// while reads move to the next chunk (staying put while they stay in one),
// is capped, and falls back to the minimum on a jump either way.
func TestReadaheadWindow(t *testing.T) {
	var r readahead
	steps := []struct{ chunk, want int }{
		{0, 2}, {0, 2}, {1, 4}, {1, 4}, {2, 8}, {3, 16}, {4, 16}, {5, 16},
		{40, 2}, {41, 4}, {42, 8}, {10, 2}, {11, 4}, {11, 4}, {13, 2},
	}
	for n, s := range steps {
		if got := r.next(s.chunk, 16); got != s.want {
			t.Fatalf("step %d: read of chunk %d: window %d, want %d", n, s.chunk, got, s.want)
		}
	}
	var small readahead
	if got := small.next(0, 1); got != 1 {
		t.Fatalf("with prefetch 1 the first window is %d, want 1", got)
	}
	if got := small.next(1, 1); got != 1 {
		t.Fatalf("with prefetch 1 a sequential window is %d, want 1", got)
	}
}
