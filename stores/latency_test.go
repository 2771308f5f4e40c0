package stores

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	want := int(math.Ceil(math.Log2(float64(latencyMax)/float64(latencyMin))*latencyPerOctave)) + 2
	if latencyBuckets != want {
		t.Fatalf("latencyBuckets = %d, want %d", latencyBuckets, want)
	}
	if got := bucketOf(latencyMax - 1); got != latencyBuckets-2 {
		t.Errorf("bucketOf(just under max) = %d, want %d", got, latencyBuckets-2)
	}
	// Each bucket's upper bound is above every duration it holds.
	for _, d := range []time.Duration{latencyMin, 11 * time.Microsecond, time.Millisecond, 3 * time.Second, latencyMax - 1} {
		if ub := upperBound(bucketOf(d)); ub < d {
			t.Errorf("upperBound(bucketOf(%v)) = %v, below it", d, ub)
		}
	}
}

func TestLatencyQuantile(t *testing.T) {
	var l Latency
	if got := l.Quantile(0.5); got != 0 {
		t.Fatalf("Quantile of an empty histogram = %v, want 0", got)
	}
	for range 98 {
		l.Observe(time.Millisecond)
	}
	l.Observe(100 * time.Millisecond)
	l.Observe(2 * time.Minute) // beyond the last bucket
	if l.Count() != 100 {
		t.Fatalf("Count = %d", l.Count())
	}
	tests := []struct {
		q        float64
		lo, high time.Duration
	}{
		{0.5, time.Millisecond, 1200 * time.Microsecond},
		{0.98, time.Millisecond, 1200 * time.Microsecond},
		{0.99, 100 * time.Millisecond, 120 * time.Millisecond},
		{1, 2 * time.Minute, 2 * time.Minute},
	}
	for _, tt := range tests {
		if got := l.Quantile(tt.q); got < tt.lo || got > tt.high {
			t.Errorf("Quantile(%v) = %v, want in [%v, %v]", tt.q, got, tt.lo, tt.high)
		}
	}
	l.Reset()
	if l.Count() != 0 || l.Quantile(0.99) != 0 {
		t.Errorf("after Reset: Count %d, p99 %v", l.Count(), l.Quantile(0.99))
	}
	// Tiny observations do not report more than was seen.
	l.Observe(time.Microsecond)
	if got := l.Quantile(0.5); got != time.Microsecond {
		t.Errorf("Quantile after one 1µs observation = %v", got)
	}
}

func TestLatencyConcurrent(t *testing.T) {
	var l Latency
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				l.Observe(time.Duration(g*1000+i) * time.Microsecond)
				_ = l.Quantile(0.99)
			}
		})
	}
	wg.Wait()
	if l.Count() != 8000 {
		t.Fatalf("Count = %d, want 8000", l.Count())
	}
}

func TestLatencyHistogram(t *testing.T) {
	var l Latency
	for _, d := range []time.Duration{5 * time.Microsecond, 15 * time.Microsecond, time.Millisecond, 100 * time.Second} {
		l.Observe(d)
	}
	h := l.Histogram()
	if h.Count != 4 || h.Sum != 5*time.Microsecond+15*time.Microsecond+time.Millisecond+100*time.Second {
		t.Errorf("count %d, sum %v; want 4 and the sum of the observations", h.Count, h.Sum)
	}
	if got := HistogramBound(0); got != 10*time.Microsecond {
		t.Errorf("first bound %v, want 10µs", got)
	}
	if got := HistogramBound(HistogramBuckets - 1); got < 40*time.Second || got > 60*time.Second {
		t.Errorf("last bound %v, want about 42s (below Latency's 60s top)", got)
	}
	// Cumulative: below 10µs one, below 20µs two, below 1.28ms three, and
	// the 100s one only in the count.
	for i, want := range map[int]uint64{0: 1, 1: 2, 6: 2, 7: 3, HistogramBuckets - 1: 3} {
		if h.Buckets[i] != want {
			t.Errorf("below %v: %d, want %d", HistogramBound(i), h.Buckets[i], want)
		}
	}
	for i := 1; i < HistogramBuckets; i++ {
		if h.Buckets[i] < h.Buckets[i-1] {
			t.Errorf("buckets not cumulative at %d: %v", i, h.Buckets)
		}
	}
	l.Reset()
	if h := l.Histogram(); h.Count != 0 || h.Sum != 0 || h.Buckets[HistogramBuckets-1] != 0 {
		t.Errorf("after Reset: %+v", h)
	}
}
