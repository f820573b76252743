package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistQuantileAccuracy(t *testing.T) {
	cases := []struct {
		name string
		gen  func(r *rand.Rand) int64
	}{
		{"uniform µs", func(r *rand.Rand) int64 { return 1000 + r.Int64N(1_000_000) }},
		{"log-normal latencies", func(r *rand.Rand) int64 { return int64(math.Exp(12 + 1.5*r.NormFloat64())) }},
		{"small exact values", func(r *rand.Rand) int64 { return r.Int64N(200) }},
		{"heavy tail", func(r *rand.Rand) int64 { return int64(1e5 / math.Pow(r.Float64()+1e-9, 1.2)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			h := NewHist()
			vals := make([]int64, 100_000)
			for i := range vals {
				vals[i] = c.gen(r)
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 0.9999} {
				exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-exact)) / math.Max(float64(exact), 1); rel > 0.01 {
					t.Errorf("q=%v: got %d, exact %d, relative error %.4f > 1%%", q, got, exact, rel)
				}
			}
			if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] || h.Quantile(1) != vals[len(vals)-1] {
				t.Errorf("min/max not exact: %d %d vs %d %d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("count %d", h.Count())
			}
		})
	}
}

func TestHistBuckets(t *testing.T) {
	cases := []struct {
		name string
		v    int64
	}{
		{"zero", 0}, {"below sub range", 127}, {"first octave", 128}, {"odd", 12345},
		{"ms", 1_000_000}, {"minute", 60e9}, {"top", 1 << 40}, {"beyond range", math.MaxInt64},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i := bucketOf(c.v)
			if i < 0 || i >= numBuckets {
				t.Fatalf("bucket %d out of range", i)
			}
			lo, hi := bucketRange(i)
			if c.v <= 1<<40 && (c.v < lo || c.v > hi) {
				t.Errorf("value %d not in its bucket [%d,%d]", c.v, lo, hi)
			}
			if c.v >= 128 && c.v <= 1<<40 && float64(hi-lo+1)/float64(lo) > 1.0/128+1e-12 {
				t.Errorf("bucket [%d,%d] wider than 1/128 of its value", lo, hi)
			}
		})
	}
}

func TestHistMergeAndEmpty(t *testing.T) {
	a, b := NewHist(), NewHist()
	if a.Quantile(0.5) != 0 || a.Max() != 0 || a.Min() != 0 || a.Mean() != 0 || a.CDF() != nil {
		t.Fatal("empty histogram must report zeros")
	}
	for i := int64(1); i <= 100; i++ {
		a.Record(i * 1000)
		b.Record(i * 1000000)
	}
	a.Merge(b)
	if a.Count() != 200 || a.Max() != 100000000 || a.Min() != 1000 {
		t.Fatalf("merge: count %d max %d min %d", a.Count(), a.Max(), a.Min())
	}
	cdf := a.CDF()
	if cdf[len(cdf)-1].Quantile != 1 || cdf[len(cdf)-1].Value != 100000000 {
		t.Errorf("cdf end %+v", cdf[len(cdf)-1])
	}
}

func BenchmarkHistRecord(b *testing.B) {
	h := NewHist()
	b.ReportAllocs()
	v := int64(123456)
	for i := 0; b.Loop(); i++ {
		h.Record(v + int64(i&1023)*977)
	}
}

func BenchmarkHistRecordParallel(b *testing.B) {
	h := NewHist()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := int64(1)
		for pb.Next() {
			v = v*7 + 13
			h.Record(v & (1<<30 - 1))
		}
	})
}
