package stores

import (
	"context"
	"errors"
	"testing"
)

func TestBound(t *testing.T) {
	ctx := context.Background()
	a, b := ID{1}, ID{2}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		id   ID
		want Bound
	}{
		{"nothing", ctx, a, Bound{-1, MaxChunkSize}},
		{"expected", WithExpectedSize(ctx, a, 10), a, Bound{10, MaxChunkSize}},
		{"expected for another id", WithExpectedSize(ctx, b, 10), a, Bound{-1, MaxChunkSize}},
		{"negative expected", WithExpectedSize(ctx, a, -1), a, Bound{-1, MaxChunkSize}},
		{"max", WithMaxSize(ctx, 100), a, Bound{-1, 100}},
		{"max past the ceiling", WithMaxSize(ctx, 2*MaxChunkSize), a, Bound{-1, MaxChunkSize}},
		{"zero max", WithMaxSize(ctx, 0), a, Bound{-1, MaxChunkSize}},
		{"smallest max holds", WithMaxSize(WithMaxSize(ctx, 100), 200), a, Bound{-1, 100}},
		{"narrowed", WithMaxSize(WithMaxSize(ctx, 200), 100), a, Bound{-1, 100}},
		{"both", WithExpectedSize(WithMaxSize(ctx, 100), a, 7), a, Bound{7, 100}},
	} {
		if got := BoundOf(tc.ctx, tc.id); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		b     Bound
		n     int64
		ok    bool
		limit int64
	}{
		{Bound{-1, 100}, 100, true, 100},
		{Bound{-1, 100}, 101, false, 100},
		{Bound{7, 100}, 7, true, 7},
		{Bound{7, 100}, 8, false, 7},
		{Bound{7, 100}, 6, false, 7},
		{Bound{200, 100}, 200, false, 100}, // no chunk is past the max
	} {
		if err := tc.b.Check(tc.n); (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%+v.Check(%d) = %v, want ok=%v", tc.b, tc.n, err, tc.ok)
		}
		if got := tc.b.Limit(); got != tc.limit {
			t.Errorf("%+v.Limit() = %d, want %d", tc.b, got, tc.limit)
		}
	}
	if CompressedBound(0) < 64 || CompressedBound(1<<20) < 1<<20+1<<12 {
		t.Errorf("CompressedBound below zstd's own: %d, %d", CompressedBound(0), CompressedBound(1<<20))
	}
}
