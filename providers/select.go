package providers

import (
	"fmt"
	"math/bits"
	"sync"
)

// Selector chooses one deployment among candidates. deps is the pool's
// list (in priority order); eligible has bit i set when deps[i] is healthy
// and may be tried; it is never zero. Select returns an index whose bit is
// set. Implementations are safe for concurrent use and must not block.
type Selector interface {
	Select(deps []*Deployment, eligible uint64) int
}

// NewSelector returns the selector for a PoolConfig.Strategy name, sized
// for n deployments.
func NewSelector(strategy string, n int) (Selector, error) {
	switch strategy {
	case StrategyPriority:
		return PrioritySelector{}, nil
	case StrategyWeighted:
		return &WeightedSelector{current: make([]int64, n)}, nil
	case StrategyLeastLoaded:
		return LeastLoadedSelector{}, nil
	}
	return nil, fmt.Errorf("unknown strategy %q", strategy)
}

// PrioritySelector picks the first eligible deployment; the pool keeps
// deps sorted by priority (stable, so config order breaks ties). The zero
// value is ready.
type PrioritySelector struct{}

// Select implements Selector.
func (PrioritySelector) Select(_ []*Deployment, eligible uint64) int {
	return bits.TrailingZeros64(eligible)
}

// WeightedSelector is smooth weighted round robin (as in nginx): each
// pick adds every eligible deployment's weight to its running score,
// takes the highest score and subtracts the eligible total from it, which
// spreads picks evenly (weights 5,1,1 give a a b a c a a, not a a a a a b
// c). Ineligible deployments neither gain nor lose score. Build it with
// NewSelector.
type WeightedSelector struct {
	mu      sync.Mutex
	current []int64
}

// Select implements Selector.
func (s *WeightedSelector) Select(deps []*Deployment, eligible uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, total := -1, int64(0)
	for m := eligible; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		w := int64(deps[i].weight)
		s.current[i] += w
		total += w
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	s.current[best] -= total
	return best
}

// LeastLoadedSelector picks the eligible deployment with the fewest
// attempts in flight, ties broken by the lower EWMA latency (a deployment
// with no latency yet counts as fastest, so it gets tried), then by list
// order. The zero value is ready.
type LeastLoadedSelector struct{}

// Select implements Selector.
func (LeastLoadedSelector) Select(deps []*Deployment, eligible uint64) int {
	best := -1
	var bestLoad int64
	var bestLat uint64
	for m := eligible; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		load := deps[i].inFlight.Load()
		lat := deps[i].latency.Load() // float64 bits of a non-negative value order like the floats
		if best < 0 || load < bestLoad || (load == bestLoad && lat < bestLat) {
			best, bestLoad, bestLat = i, load, lat
		}
	}
	return best
}
