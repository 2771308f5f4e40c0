package stores

import (
	"math"
	"sync/atomic"
	"time"
)

// The histogram covers latencies from latencyMin to latencyMax in
// log-spaced buckets, latencyPerOctave buckets per doubling, so every
// reported quantile is within about 19% of the true value: plenty for
// p50/p99 on a stats page, and small enough (≈95 counters) to keep one per
// store and operation.
const (
	latencyMin       = 10 * time.Microsecond
	latencyMax       = 60 * time.Second
	latencyPerOctave = 4
)

// latencyBuckets is the number of buckets: ceil(log2(60s/10µs)·4) = 91
// log-spaced ones, plus bucket 0 for everything below latencyMin and a last
// one for everything at or above latencyMax (TestLatencyBuckets checks it).
const latencyBuckets = 91 + 2

// Latency is a histogram of operation durations, cheap enough to update on
// every chunk read and write: Observe is a few atomic adds and never blocks.
// Quantiles are approximate (log-spaced buckets from 10µs to 60s, about 19%
// apart). The zero value is an empty histogram. Safe for
// concurrent use; a Quantile that races with Observe or Reset sees some
// mixture of before and after, which is fine for monitoring.
type Latency struct {
	counts [latencyBuckets]atomic.Int64
	total  atomic.Int64
	max    atomic.Int64 // nanoseconds
	sum    atomic.Int64 // nanoseconds, for a histogram's _sum
}

// bucketOf returns the bucket index for d.
func bucketOf(d time.Duration) int {
	if d < latencyMin {
		return 0
	}
	if d >= latencyMax {
		return latencyBuckets - 1
	}
	i := 1 + int(math.Log2(float64(d)/float64(latencyMin))*latencyPerOctave)
	return min(max(i, 1), latencyBuckets-2)
}

// upperBound returns the largest duration bucket i stands for.
func upperBound(i int) time.Duration {
	if i == 0 {
		return latencyMin
	}
	if i >= latencyBuckets-1 {
		return latencyMax
	}
	return time.Duration(float64(latencyMin) * math.Exp2(float64(i)/latencyPerOctave))
}

// Observe records one operation that took d.
func (l *Latency) Observe(d time.Duration) {
	d = max(d, 0)
	l.counts[bucketOf(d)].Add(1)
	l.total.Add(1)
	l.sum.Add(int64(d))
	for {
		m := l.max.Load()
		if int64(d) <= m || l.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count returns the number of observations since creation or the last Reset.
func (l *Latency) Count() int64 { return l.total.Load() }

// Quantile returns an upper estimate of the q-quantile (0 ≤ q ≤ 1) of the
// observed durations, never more than the largest one observed, and 0 when
// nothing has been observed. Above 60s it returns the largest observed.
func (l *Latency) Quantile(q float64) time.Duration {
	n := l.total.Load()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := int64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen int64
	for i := range l.counts {
		seen += l.counts[i].Load()
		if seen >= rank {
			largest := time.Duration(l.max.Load())
			if i == latencyBuckets-1 {
				return largest // beyond the last bound, the largest is all we know
			}
			return min(upperBound(i), largest)
		}
	}
	// Observations raced with this loop; the largest is a safe answer.
	return time.Duration(l.max.Load())
}

// Reset forgets every observation.
func (l *Latency) Reset() {
	for i := range l.counts {
		l.counts[i].Store(0)
	}
	l.total.Store(0)
	l.max.Store(0)
	l.sum.Store(0)
}

// HistogramBuckets is the number of finite buckets of a LatencyHistogram.
const HistogramBuckets = (latencyBuckets-2)/latencyPerOctave + 1 // 23: 10µs … 41.9s

// HistogramBound returns the upper bound of a LatencyHistogram's bucket
// i: 10µs·2^i, from 10µs to about 42s, doubling.
func HistogramBound(i int) time.Duration {
	return time.Duration(float64(latencyMin) * math.Exp2(float64(i)))
}

// LatencyHistogram is a snapshot of a Latency in the form monitoring
// systems take (Prometheus' histogram): cumulative counts below doubling
// bounds, the total count and the sum. Every fourth of Latency's own
// bucket bounds is one of these, so the snapshot is exact for its bounds.
type LatencyHistogram struct {
	// Count is the number of observations (consistent with Buckets: it is
	// their sum plus those at or above the last bound).
	Count uint64
	// Sum is the total of the observed durations.
	Sum time.Duration
	// Buckets[i] counts the observations below HistogramBound(i).
	Buckets [HistogramBuckets]uint64
}

// Histogram returns the observations so far as a LatencyHistogram.
func (l *Latency) Histogram() LatencyHistogram {
	var h LatencyHistogram
	var seen uint64
	for i := range l.counts {
		seen += uint64(max(l.counts[i].Load(), 0))
		// Bucket 4k ends at latencyMin·2^k (bucket 0: everything below
		// latencyMin, k = 0).
		if i%latencyPerOctave == 0 && i/latencyPerOctave < HistogramBuckets {
			h.Buckets[i/latencyPerOctave] = seen
		}
	}
	h.Count = seen
	h.Sum = time.Duration(l.sum.Load())
	return h
}
