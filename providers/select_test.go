package providers

import (
	"math"
	"strings"
	"testing"
	"time"
)

func testDeps(weights ...int) []*Deployment {
	deps := make([]*Deployment, len(weights))
	for i, w := range weights {
		deps[i] = &Deployment{name: string(rune('a' + i)), weight: w, index: i}
	}
	return deps
}

func TestSelectors(t *testing.T) {
	type setup func(deps []*Deployment)
	load := func(inFlight []int64, latMs []float64) setup {
		return func(deps []*Deployment) {
			for i := range deps {
				deps[i].inFlight.Store(inFlight[i])
				if latMs[i] > 0 {
					deps[i].latency.Store(math.Float64bits(latMs[i] * 1e6))
				}
			}
		}
	}
	cases := []struct {
		name     string
		strategy string
		weights  []int
		setup    setup
		eligible uint64
		picks    int
		want     string
	}{
		{"priority takes the first eligible", StrategyPriority, []int{1, 1, 1}, nil, 0b111, 3, "aaa"},
		{"priority skips an unhealthy first", StrategyPriority, []int{1, 1, 1}, nil, 0b110, 2, "bb"},
		{"weighted 5-1-1 interleaves smoothly", StrategyWeighted, []int{5, 1, 1}, nil, 0b111, 7, "aabacaa"},
		{"weighted equal weights alternate", StrategyWeighted, []int{1, 1}, nil, 0b11, 4, "abab"},
		{"weighted ignores ineligible", StrategyWeighted, []int{5, 1, 1}, nil, 0b110, 4, "bcbc"},
		{"weighted 3-1 keeps the ratio", StrategyWeighted, []int{3, 1}, nil, 0b11, 8, "aabaaaba"},
		{"least-loaded picks the fewest in flight", StrategyLeastLoaded, []int{1, 1, 1}, load([]int64{4, 1, 2}, []float64{1, 9, 1}), 0b111, 1, "b"},
		{"least-loaded breaks ties by latency", StrategyLeastLoaded, []int{1, 1, 1}, load([]int64{1, 1, 1}, []float64{30, 10, 20}), 0b111, 1, "b"},
		{"least-loaded tries an unmeasured one first", StrategyLeastLoaded, []int{1, 1}, load([]int64{0, 0}, []float64{10, 0}), 0b11, 1, "b"},
		{"least-loaded respects eligibility", StrategyLeastLoaded, []int{1, 1, 1}, load([]int64{0, 5, 9}, []float64{1, 1, 1}), 0b110, 1, "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			deps := testDeps(tc.weights...)
			if tc.setup != nil {
				tc.setup(deps)
			}
			sel, err := NewSelector(tc.strategy, len(deps))
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for range tc.picks {
				i := sel.Select(deps, tc.eligible)
				if tc.eligible&(1<<i) == 0 {
					t.Fatalf("picked ineligible %d", i)
				}
				got.WriteString(deps[i].name)
			}
			if got.String() != tc.want {
				t.Errorf("picks = %q, want %q", got.String(), tc.want)
			}
		})
	}
	if _, err := NewSelector("random", 1); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestTTFTPercentile(t *testing.T) {
	d := &Deployment{}
	for i := 1; i <= 15; i++ {
		d.observeTTFT(time.Duration(i) * time.Millisecond)
	}
	if got := d.P95TTFT(); got != 0 {
		t.Fatalf("p95 after 15 samples = %v, want 0 (too few)", got)
	}
	for i := 16; i <= 100; i++ {
		d.observeTTFT(time.Duration(i) * time.Millisecond)
	}
	// The last 64 samples of 96 written at the recompute are 33..96ms.
	if got := d.P95TTFT(); got < 90*time.Millisecond || got > 96*time.Millisecond {
		t.Errorf("p95 = %v, want about 93ms", got)
	}
}
