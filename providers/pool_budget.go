package providers

import (
	"sync"
	"time"
)

// RetryBudget bounds retries (failovers and hedges) against requests over
// a sliding window: a retry is allowed while retries < Ratio × requests +
// MinPerSecond × window seconds. Share one budget between pools (gateway
// wide) so a full outage of every upstream costs at most that fraction in
// extra upstream load. A nil *RetryBudget allows every retry (MaxAttempts
// still bounds a request). Safe for concurrent use.
type RetryBudget struct {
	mu     sync.Mutex
	ratio  float64
	floor  float64
	counts window
}

// NewRetryBudget builds a budget from cfg (defaults applied to a copy).
func NewRetryBudget(cfg RetryBudgetConfig) (*RetryBudget, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &RetryBudget{
		ratio:  cfg.Ratio,
		floor:  float64(cfg.MinPerSecond) * cfg.Window.Seconds(),
		counts: newWindow(cfg.Window),
	}, nil
}

// Request records one request (not a retry) at now.
func (b *RetryBudget) Request(now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.counts.add(now, 1, 0)
	b.mu.Unlock()
}

// TryRetry reports whether one more retry fits the budget at now, and
// spends it if so.
func (b *RetryBudget) TryRetry(now time.Time) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	reqs, rets := b.counts.sum(now)
	if float64(rets)+1 > b.ratio*float64(reqs)+b.floor {
		return false
	}
	b.counts.add(now, 0, 1)
	return true
}

// windowBuckets is the resolution of every sliding window.
const windowBuckets = 10

// window counts two quantities over a sliding period in windowBuckets
// buckets. The zero value is unusable; callers hold their own lock.
type window struct {
	width   int64 // bucket width in ns
	buckets [windowBuckets]windowBucket
}

type windowBucket struct {
	id   int64 // now / width when last written
	a, b int64
}

func newWindow(period time.Duration) window {
	return window{width: max(int64(period)/windowBuckets, 1)}
}

func (w *window) add(now time.Time, a, b int64) {
	id := now.UnixNano() / w.width
	bk := &w.buckets[id%windowBuckets]
	if bk.id != id {
		*bk = windowBucket{id: id}
	}
	bk.a += a
	bk.b += b
}

// sum totals the buckets of the last period ending at now.
func (w *window) sum(now time.Time) (a, b int64) {
	id := now.UnixNano() / w.width
	for i := range w.buckets {
		bk := &w.buckets[i]
		if bk.id > id-windowBuckets && bk.id <= id {
			a += bk.a
			b += bk.b
		}
	}
	return a, b
}
