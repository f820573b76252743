package bench

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Stats accumulates one target's outcomes; safe for concurrent use.
type Stats struct {
	Name string
	// Latency is due time → last byte, successful requests only.
	Latency *Hist
	// ErrLatency is due time → failure, failed requests only.
	ErrLatency *Hist
	// TTFT is due time → first delta (streams).
	TTFT *Hist
	// Gap is the time between consecutive deltas of a stream.
	Gap *Hist
	// TokPerSec is each complete stream's deltas per second after its
	// first, in milli-tokens/s so the integer histogram keeps precision.
	TokPerSec *Hist
	// SendLag is how late the bench launched requests against their due
	// time: large values mean the bench itself, not the target, is behind.
	SendLag *Hist
	// Service is send → last byte (successful requests): Latency without
	// the bench's own lateness. The two sides of a comparison can see
	// different send lag (on a shared core, the bench is late more often
	// when the mock runs beside it), which Latency's difference would
	// count as the gateway's.
	Service *Hist
	// ServiceTTFT is send → first delta (streams).
	ServiceTTFT *Hist

	sent, ok, failed, incomplete, tokens atomic.Uint64
	mu                                   sync.Mutex
	errors                               map[string]uint64
}

// NewStats returns empty stats named name.
func NewStats(name string) *Stats {
	return &Stats{Name: name, Latency: NewHist(), ErrLatency: NewHist(), TTFT: NewHist(), Gap: NewHist(),
		TokPerSec: NewHist(), SendLag: NewHist(), Service: NewHist(), ServiceTTFT: NewHist(), errors: map[string]uint64{}}
}

// Add records one outcome.
func (s *Stats) Add(o *Outcome) {
	s.sent.Add(1)
	s.tokens.Add(uint64(o.Tokens))
	if o.FirstToken > 0 {
		s.TTFT.RecordDuration(o.FirstToken)
		s.ServiceTTFT.RecordDuration(o.FirstToken - o.Sent)
	}
	if o.OK() {
		s.ok.Add(1)
		s.Latency.RecordDuration(o.Done)
		s.Service.RecordDuration(o.Done - o.Sent)
		if o.Tokens > 1 && o.Done > o.FirstToken {
			s.TokPerSec.Record(int64(float64(o.Tokens-1) * 1e12 / float64(o.Done-o.FirstToken)))
		}
		return
	}
	s.failed.Add(1)
	if o.Incomplete {
		s.incomplete.Add(1)
	}
	s.ErrLatency.RecordDuration(o.Done)
	s.mu.Lock()
	s.errors[o.Code]++
	s.mu.Unlock()
}

// Errors returns a copy of the error counts by code.
func (s *Stats) Errors() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]uint64, len(s.errors))
	for k, v := range s.errors {
		m[k] = v
	}
	return m
}

// Counts returns requests finished, successes, failures and incomplete
// streams.
func (s *Stats) Counts() (sent, ok, failed, incomplete, tokens uint64) {
	return s.sent.Load(), s.ok.Load(), s.failed.Load(), s.incomplete.Load(), s.tokens.Load()
}

// Config is how a run drives load.
type Config struct {
	// Rate > 0 selects open-loop mode: requests per second on a fixed
	// timetable. Rate 0 selects closed-loop mode with Concurrency workers.
	Rate        float64
	Concurrency int
	// Count and Duration bound the run; at least one must be set.
	Count    int
	Duration time.Duration
	// Timeout bounds each request from its due time.
	Timeout time.Duration
	// MaxInFlight caps open-loop requests in flight; a request due while
	// the cap is reached fails as "bench_overload" instead of queueing, so
	// the bench never hides a stall by waiting.
	MaxInFlight int
	// Slice is the interleave period when two targets are compared.
	Slice time.Duration
	// Progress, when set, gets one line per second.
	Progress io.Writer
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Rate < 0 {
		errs = append(errs, errors.New("rate: must be ≥ 0"))
	}
	if c.Rate == 0 && c.Concurrency < 1 {
		errs = append(errs, errors.New("concurrency: must be ≥ 1 in closed-loop mode (rate 0)"))
	}
	if c.Count <= 0 && c.Duration <= 0 {
		errs = append(errs, errors.New("count, duration: at least one must bound the run"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be > 0"))
	}
	if c.Rate > 0 && c.MaxInFlight < 1 {
		errs = append(errs, errors.New("maxInFlight: must be ≥ 1 in open-loop mode"))
	}
	return errors.Join(errs...)
}

// Run drives load at targets (one, or two interleaved by Slice) until the
// count or duration is reached and every request has finished. It returns
// one Stats per target and the wall time from the first due time to the
// last completion.
func Run(cfg Config, targets []*Target, clk Clock, stop <-chan struct{}) ([]*Stats, time.Duration, error) {
	if err := cfg.Validate(); err != nil {
		return nil, 0, err
	}
	if len(targets) < 1 || len(targets) > 2 {
		return nil, 0, errors.New("run: one or two targets")
	}
	stats := make([]*Stats, len(targets))
	for i, t := range targets {
		stats[i] = NewStats(t.Name)
	}
	start := clk.Now().Add(10 * time.Millisecond)
	r := &runner{cfg: cfg, targets: targets, stats: stats, clk: clk, stop: stop,
		start: start, sl: Slicer{Start: start, Slice: cfg.Slice}}
	progDone := make(chan struct{})
	if cfg.Progress != nil {
		go progress(cfg.Progress, stats, start, progDone)
	}
	if cfg.Rate > 0 {
		r.openLoop()
	} else {
		r.closedLoop()
	}
	r.wg.Wait()
	elapsed := clk.Now().Sub(start)
	close(progDone)
	return stats, elapsed, nil
}

// runner is one Run's state: the targets, their stats and the requests
// in flight.
type runner struct {
	cfg     Config
	targets []*Target
	stats   []*Stats
	clk     Clock
	stop    <-chan struct{}
	start   time.Time
	sl      Slicer
	wg      sync.WaitGroup
}

// pick is the index of the target a request due at due goes to.
func (r *runner) pick(due time.Time) int {
	if len(r.targets) == 1 {
		return 0
	}
	return r.sl.Target(due)
}

// one sends request i, due at due, and records its outcome.
func (r *runner) one(i int, due time.Time) {
	ti := r.pick(due)
	t, st := r.targets[ti], r.stats[ti]
	lag := time.Since(due)
	st.SendLag.RecordDuration(lag)
	o := t.Do(i, due, due.Add(r.cfg.Timeout), st.Gap.RecordDuration)
	o.Sent = lag
	if o.Code != "" && len(t.Variants) > 1 {
		if l := t.Variants[i%len(t.Variants)].Label; l != "" {
			o.Code = l + " " + o.Code
		}
	}
	st.Add(&o)
}

// openLoop launches requests on a fixed schedule, failing them as
// bench_overload beyond MaxInFlight.
func (r *runner) openLoop() {
	cfg := r.cfg
	var inflight atomic.Int64
	s := Schedule{Start: r.start, Rate: cfg.Rate, Count: cfg.Count, Duration: cfg.Duration}
	s.Run(r.clk, r.stop, func(i int, due time.Time) {
		if inflight.Load() >= int64(cfg.MaxInFlight) {
			st := r.stats[r.pick(due)]
			st.Add(&Outcome{Code: "bench_overload", Done: time.Since(due)})
			return
		}
		inflight.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer inflight.Add(-1)
			r.one(i, due)
		}()
	})
}

// closedLoop runs Concurrency workers, each sending its next request as
// soon as the last one finished.
func (r *runner) closedLoop() {
	cfg := r.cfg
	r.clk.SleepUntil(r.start)
	var next atomic.Int64
	end := r.start.Add(cfg.Duration)
	for w := 0; w < cfg.Concurrency; w++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if cfg.Count > 0 && i >= cfg.Count {
					return
				}
				now := r.clk.Now()
				if cfg.Duration > 0 && !now.Before(end) {
					return
				}
				select {
				case <-r.stop:
					return
				default:
				}
				r.one(i, now)
			}
		}()
	}
}

// progress prints one line per second: per target, requests finished in
// the last second, failures so far and p99 so far.
func progress(w io.Writer, stats []*Stats, start time.Time, done <-chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	prev := make([]uint64, len(stats))
	for {
		select {
		case <-done:
			return
		case now := <-tk.C:
			line := fmt.Sprintf("%6.1fs", now.Sub(start).Seconds())
			for i, s := range stats {
				sent, ok, failed, _, _ := s.Counts()
				line += fmt.Sprintf("  %s: %d/s ok=%d err=%d p99=%s", s.Name, sent-prev[i], ok, failed, fmtNs(s.Latency.Quantile(0.99)))
				prev[i] = sent
			}
			fmt.Fprintln(w, line)
		}
	}
}

// sortedKeys returns m's keys in order, for stable reports.
func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Hold opens n streams against t (at most rate new streams a second), waits
// until each has received its first delta or failed, calls opened with the
// number of streams open, keeps them for holdFor, then closes them. It is
// how RSS per open stream is measured.
func Hold(t *Target, n int, rate float64, holdFor time.Duration, timeout time.Duration, opened func(open int)) (open int, errs map[string]uint64) {
	var wg, first sync.WaitGroup
	var openN atomic.Int64
	errs = map[string]uint64{}
	var mu sync.Mutex
	release := make(chan struct{})
	first.Add(n)
	s := Schedule{Start: time.Now(), Rate: rate, Count: n}
	s.Run(SystemClock{}, nil, func(i int, due time.Time) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.holdOne(i, due.Add(timeout), release, func(code string) {
				if code != "" {
					mu.Lock()
					errs[code]++
					mu.Unlock()
				} else {
					openN.Add(1)
				}
				first.Done()
			})
		}()
	})
	first.Wait()
	open = int(openN.Load())
	if opened != nil {
		opened(open)
	}
	time.Sleep(holdFor)
	close(release)
	wg.Wait()
	return open, errs
}
