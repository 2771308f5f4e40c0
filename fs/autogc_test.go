package fs

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

func TestAutoGCOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       AutoGCOptions
		wantErr string // substring; "" = valid
	}{
		{name: "defaults", o: DefaultAutoGC()},
		{name: "zero is off and valid", o: AutoGCOptions{}},
		{name: "zero percent", o: AutoGCOptions{Enabled: true, MaxUnusedPercent: 0}},
		{name: "negative percent", o: AutoGCOptions{MaxUnusedPercent: -1}, wantErr: "max unused -1%"},
		{name: "NaN percent", o: AutoGCOptions{MaxUnusedPercent: math.NaN()}, wantErr: "max unused NaN%"},
		{name: "negative floor", o: AutoGCOptions{MinUnused: -1}, wantErr: "min unused -1"},
		{name: "negative interval", o: AutoGCOptions{Interval: -time.Second}, wantErr: "negative interval"},
		{name: "negative check", o: AutoGCOptions{CheckInterval: -time.Second}, wantErr: "negative interval"},
		{name: "negative rate", o: AutoGCOptions{Rate: -5}, wantErr: "rate -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
	d := AutoGCOptions{Interval: 2 * time.Second}.withDefaults()
	if d.CheckInterval != 2*time.Second {
		t.Errorf("check interval of a 2s interval = %s, want 2s (never longer than the interval)", d.CheckInterval)
	}
}

func TestAutoGCThreshold(t *testing.T) {
	for _, tc := range []struct {
		pct             float64
		minUnused, live int64
		want            int64
	}{
		{pct: 5, minUnused: 64 << 20, live: 0, want: 64 << 20},
		{pct: 5, minUnused: 64 << 20, live: 1 << 30, want: 64 << 20},       // 51 MiB < the floor
		{pct: 5, minUnused: 64 << 20, live: 100 << 30, want: 5 << 30},      // 5% of 100 GiB
		{pct: 1, minUnused: 1 << 20, live: 8 << 20, want: 1 << 20},         // the test's config
		{pct: 0, minUnused: 0, live: 1 << 30, want: 0},                     // anything unreferenced
		{pct: 2.5, minUnused: 0, live: 1000, want: 25},                     // a fraction
		{pct: 200, minUnused: 0, live: 1 << 20, want: 2 << 20},             // more than the live data
		{pct: 5, minUnused: 64 << 20, live: 655 << 20, want: 64 << 20},     // issue #15's 655 MiB
		{pct: 5, minUnused: 64 << 20, live: 17 << 30, want: 17 << 30 / 20}, // 5% of 17 GiB
	} {
		o := AutoGCOptions{MaxUnusedPercent: tc.pct, MinUnused: tc.minUnused}
		if got := o.threshold(tc.live); got != tc.want {
			t.Errorf("threshold(%v%%, min %d, live %d) = %d, want %d", tc.pct, tc.minUnused, tc.live, got, tc.want)
		}
	}
	if got := unusedNote(72, 1000); got != "unused 7.2% of live data" {
		t.Errorf("unusedNote = %q", got)
	}
	if got := unusedNote(3<<20, 0); got != "unused 3.0 MiB, no live data" {
		t.Errorf("unusedNote without live data = %q", got)
	}
}

// TestAutoGCThrottle checks that a throttled page source cuts pages to
// about a second's worth and hands out no more than rate bytes a second.
func TestAutoGCThrottle(t *testing.T) {
	const chunk = 1 << 20
	all := make([]dual.ChunkInfo, 10)
	for i := range all {
		all[i] = dual.ChunkInfo{ID: stores.ID{byte(i + 1)}, Size: chunk}
	}
	src := func(ctx context.Context, after stores.ID, limit int) ([]dual.ChunkInfo, error) {
		i := 0
		for i < len(all) && all[i].ID[0] <= after[0] {
			i++
		}
		return all[i:min(len(all), i+limit)], nil
	}
	// Unthrottled: the source itself.
	if p, _ := throttle(src, 0)(t.Context(), stores.ID{}, 512); len(p) != len(all) {
		t.Fatalf("rate 0: page of %d chunks, want %d", len(p), len(all))
	}
	// 8 MiB/s over 10 MiB: a page of 8 chunks now, one of 2 after a second.
	next := throttle(src, 8*chunk)
	start := time.Now()
	var pages []int
	var after stores.ID
	for {
		p, err := next(t.Context(), after, 512)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			break
		}
		pages = append(pages, len(p))
		after = p[len(p)-1].ID
	}
	el := time.Since(start)
	if len(pages) != 2 || pages[0] != 8 || pages[1] != 2 {
		t.Errorf("pages %v, want [8 2]", pages)
	}
	if el < 900*time.Millisecond || el > 5*time.Second {
		t.Errorf("10 MiB at 8 MiB/s took %s, want about 1s", el)
	}
	// A chunk larger than a second's worth still goes, alone.
	if p, _ := throttle(src, 1)(t.Context(), stores.ID{}, 512); len(p) != 1 {
		t.Errorf("rate 1: page of %d chunks, want 1", len(p))
	}
	// Stopping the run ends the wait.
	slow := throttle(src, chunk)
	if _, err := slow(t.Context(), stores.ID{}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := slow(ctx, all[0].ID, 1); err == nil {
		t.Error("a cancelled wait returned a page")
	}
}
