package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits linear buckets, so a bucket is at most 1/128 of its value wide
// and the midpoint reported for it is within 0.4% of any value it holds.
const subBits = 7

const (
	subCount = 1 << subBits
	// maxExp bounds the range: values up to 2^maxExp ns (about 18 minutes)
	// are kept exactly to the bucket; larger ones land in the top bucket.
	maxExp     = 40
	numBuckets = (maxExp - subBits + 2) * subCount
)

// Hist is a log-bucketed histogram of non-negative int64 values (usually
// nanoseconds) in the manner of HdrHistogram: fixed memory (about 43 KB),
// ≤ 1% relative error, lock-free recording from many goroutines.
type Hist struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Int64
	max    atomic.Int64
}

// NewHist returns an empty histogram.
func NewHist() *Hist {
	h := &Hist{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf maps v to its bucket: values below subCount are exact, above
// that each octave [2^k, 2^(k+1)) has subCount equal-width buckets.
func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	k := bits.Len64(uint64(v)) - 1
	if k > maxExp {
		return numBuckets - 1
	}
	sub := int(uint64(v)>>(k-subBits)) & (subCount - 1)
	return (k-subBits+1)*subCount + sub
}

// bucketRange returns the smallest and largest value bucket i holds.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	k := i/subCount + subBits - 1
	sub := int64(i % subCount)
	width := int64(1) << (k - subBits)
	lo = (int64(1) << k) + sub*width
	return lo, lo + width - 1
}

// Record adds one value; negative values count as 0.
func (h *Hist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
}

// RecordDuration records d in nanoseconds.
func (h *Hist) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Max is the largest recorded value, exact (0 when empty).
func (h *Hist) Max() int64 {
	if h.n.Load() == 0 {
		return 0
	}
	return h.max.Load()
}

// Min is the smallest recorded value, exact (0 when empty).
func (h *Hist) Min() int64 {
	if h.n.Load() == 0 {
		return 0
	}
	return h.min.Load()
}

// Mean is the exact arithmetic mean (0 when empty).
func (h *Hist) Mean() float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q in [0, 1]: the midpoint of the
// bucket holding the ceil(q·n)-th smallest value, clamped to the exact
// min and max so q=0 and q=1 are exact.
func (h *Hist) Quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	if q >= 1 {
		return h.Max()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Merge adds every value of o into h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	if o.n.Load() == 0 {
		return
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for m := o.max.Load(); ; {
		cur := h.max.Load()
		if m <= cur || h.max.CompareAndSwap(cur, m) {
			break
		}
	}
	for m := o.min.Load(); ; {
		cur := h.min.Load()
		if m >= cur || h.min.CompareAndSwap(cur, m) {
			break
		}
	}
}

// Point is one step of a histogram's cumulative distribution.
type Point struct {
	// Quantile is the fraction of values ≤ Value.
	Quantile float64 `json:"q"`
	// Value is the bucket's upper bound (ns for latencies).
	Value int64 `json:"v"`
}

// CDF returns the non-empty buckets as cumulative points, for plots.
func (h *Hist) CDF() []Point {
	n := h.n.Load()
	if n == 0 {
		return nil
	}
	var pts []Point
	var seen uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		seen += c
		_, hi := bucketRange(i)
		pts = append(pts, Point{Quantile: float64(seen) / float64(n), Value: min(hi, h.Max())})
	}
	return pts
}
