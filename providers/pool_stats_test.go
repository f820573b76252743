package providers

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// sequenced is a Provider answering each call with the next error of its
// script (nil: success); streams deliver one delta then end with end.
type sequenced struct {
	mu   sync.Mutex
	errs []error
	end  error
}

func (s *sequenced) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

func (s *sequenced) Complete(context.Context, *Request) (Result, error) {
	return Result{Content: "ok"}, s.next()
}

func (s *sequenced) Stream(context.Context, *Request) (Stream, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return &scriptedStream{deltas: []string{"x"}, end: s.end}, nil
}

func status(code int) error  { return &UpstreamError{Kind: KindStatus, Status: code} }
func kind(k ErrorKind) error { return &UpstreamError{Kind: k} }

// poolCount is the counter part of a PoolSnapshot.
type poolCount struct{ Requests, Retries, Failovers, HedgesStarted, HedgesWon, HedgesLost int64 }

func countsOf(s PoolSnapshot) poolCount {
	return poolCount{s.Requests, s.Retries, s.Failovers, s.HedgesStarted, s.HedgesWon, s.HedgesLost}
}

func TestPoolCounters(t *testing.T) {
	type want struct {
		pool     poolCount
		deps     []DeploymentSnapshot // counter fields only, in priority order
		complete bool                 // the last request succeeded
	}
	cases := []struct {
		name   string
		a, b   *sequenced
		stream bool
		calls  int
		want   want
	}{
		{
			name: "500 fails over to the secondary",
			a:    &sequenced{errs: []error{status(500)}}, b: &sequenced{},
			calls: 1,
			want: want{
				pool: poolCount{Requests: 1, Retries: 1, Failovers: 1},
				deps: []DeploymentSnapshot{
					{Attempts: 1, Failures: FailureCounts{Status: 1}},
					{Attempts: 1, Successes: 1},
				},
				complete: true,
			},
		},
		{
			name: "retries on the one healthy deployment are not failovers",
			a:    &sequenced{errs: []error{kind(KindConnect), kind(KindTimeout), kind(KindProtocol)}},
			b:    &sequenced{errs: []error{kind(KindSaturated), kind(KindSaturated)}},
			// a, b (saturated), then a again: b is tried, so a is preferred
			// only once every deployment was tried.
			calls: 1,
			want: want{
				pool: poolCount{Requests: 1, Retries: 2, Failovers: 2},
				deps: []DeploymentSnapshot{
					{Attempts: 2, Failures: FailureCounts{Connect: 1, Timeout: 1}},
					{Attempts: 1, Excluded: ExcludedCounts{Saturated: 1}},
				},
			},
		},
		{
			name: "caller 4xx is excluded and not retried",
			a:    &sequenced{errs: []error{status(422), status(400)}}, b: &sequenced{},
			calls: 2,
			want: want{
				pool: poolCount{Requests: 2},
				deps: []DeploymentSnapshot{{Attempts: 2, Excluded: ExcludedCounts{ClientStatus: 2}}, {}},
			},
		},
		{
			name:  "plain errors and 401 are failures",
			a:     &sequenced{errs: []error{errors.New("boom"), status(401), status(429)}},
			b:     &sequenced{errs: []error{status(503)}},
			calls: 1,
			want: want{
				pool: poolCount{Requests: 1, Retries: 2, Failovers: 2},
				deps: []DeploymentSnapshot{
					{Attempts: 2, Failures: FailureCounts{Other: 1, Status: 1}},
					{Attempts: 1, Failures: FailureCounts{Status: 1}},
				},
			},
		},
		{
			name: "stream cut after its first delta is a truncation, not retried",
			a:    &sequenced{end: kind(KindTruncated)}, b: &sequenced{},
			stream: true, calls: 1,
			want: want{
				pool: poolCount{Requests: 1},
				deps: []DeploymentSnapshot{{Attempts: 1, Failures: FailureCounts{Truncated: 1}}, {}},
			},
		},
		{
			name: "aborted stream is excluded",
			a:    &sequenced{end: ErrAborted}, b: &sequenced{},
			stream: true, calls: 1,
			want: want{
				pool: poolCount{Requests: 1},
				deps: []DeploymentSnapshot{{Attempts: 1, Excluded: ExcludedCounts{Aborted: 1}}, {}},
			},
		},
		{
			name: "stream refused then served elsewhere",
			a:    &sequenced{errs: []error{status(503), status(503)}, end: io.EOF}, b: &sequenced{end: io.EOF},
			stream: true, calls: 2,
			want: want{
				pool: poolCount{Requests: 2, Retries: 2, Failovers: 2},
				deps: []DeploymentSnapshot{
					{Attempts: 2, Failures: FailureCounts{Status: 2}},
					{Attempts: 2, Successes: 2},
				},
				complete: true,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := t0
			cfg := PoolConfig{MaxAttempts: 3, Breaker: BreakerConfig{ConsecutiveFailures: 100}}
			p := fixedPool(t, cfg, &now,
				DeploymentSpec{Name: "a", Provider: c.a}, DeploymentSpec{Name: "b", Provider: c.b, Priority: 1})
			var err error
			for range c.calls {
				if c.stream {
					var st Stream
					if st, err = p.Stream(context.Background(), &Request{}); err == nil {
						for err == nil {
							_, err = st.Next()
						}
						st.Close()
						if err == io.EOF {
							err = nil
						}
					}
				} else {
					_, err = p.Complete(context.Background(), &Request{})
				}
			}
			if (err == nil) != c.want.complete {
				t.Errorf("last request err = %v, want success %v", err, c.want.complete)
			}
			s := p.Snapshot(now)
			got := countsOf(s)
			if got != c.want.pool {
				t.Errorf("pool counters = %+v, want %+v", got, c.want.pool)
			}
			for i, d := range s.Deployments {
				g := DeploymentSnapshot{Attempts: d.Attempts, Successes: d.Successes, Failures: d.Failures, Excluded: d.Excluded}
				if g != c.want.deps[i] {
					t.Errorf("%s counters = %+v, want %+v", d.Name, g, c.want.deps[i])
				}
				if d.InFlight != 0 {
					t.Errorf("%s in flight = %d after every request ended", d.Name, d.InFlight)
				}
			}
		})
	}
}

// gated is a Provider whose streams hold their first delta until release
// is closed, and end with ErrAborted once aborted or once their context
// is cancelled, as the Provider contract asks.
type gated struct {
	release chan struct{}
	started chan struct{} // receives one value per Stream call
}

func (g *gated) Complete(context.Context, *Request) (Result, error) { return Result{}, nil }

func (g *gated) Stream(ctx context.Context, _ *Request) (Stream, error) {
	g.started <- struct{}{}
	return &gatedStream{ctx: ctx, release: g.release, abort: make(chan struct{})}, nil
}

type gatedStream struct {
	ctx     context.Context
	release chan struct{}
	abort   chan struct{}
	once    sync.Once
	sent    bool
}

func (s *gatedStream) Next() ([]byte, error) {
	if s.sent {
		return nil, io.EOF
	}
	select {
	case <-s.release:
		s.sent = true
		return []byte("x"), nil
	case <-s.abort:
		return nil, ErrAborted
	case <-s.ctx.Done():
		return nil, ErrAborted
	}
}
func (s *gatedStream) Usage() Usage { return Usage{} }
func (s *gatedStream) Abort()       { s.once.Do(func() { close(s.abort) }) }
func (s *gatedStream) Close()       {}

func TestHedgeCounters(t *testing.T) {
	cases := []struct {
		name   string
		winner string // the deployment released first
		want   poolCount
		// excluded aborts expected on a, b
		abortedA, abortedB int64
	}{
		{name: "hedge wins", winner: "b", want: poolCount{Requests: 1, HedgesStarted: 1, HedgesWon: 1}, abortedA: 1},
		{name: "hedge loses", winner: "a", want: poolCount{Requests: 1, HedgesStarted: 1, HedgesLost: 1}, abortedB: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := t0
			a := &gated{release: make(chan struct{}), started: make(chan struct{}, 1)}
			b := &gated{release: make(chan struct{}), started: make(chan struct{}, 1)}
			cfg := PoolConfig{MaxAttempts: 2, Hedge: HedgeConfig{Enabled: true, Delay: time.Millisecond}}
			p := fixedPool(t, cfg, &now, DeploymentSpec{Name: "a", Provider: a}, DeploymentSpec{Name: "b", Provider: b, Priority: 1})
			go func() {
				<-a.started
				<-b.started // the hedge is running
				if c.winner == "a" {
					close(a.release)
				} else {
					close(b.release)
				}
			}()
			st, err := p.Stream(context.Background(), &Request{})
			if err != nil {
				t.Fatal(err)
			}
			if d := st.(Served).Deployment(); d != c.winner {
				t.Fatalf("served by %s, want %s", d, c.winner)
			}
			for err == nil {
				_, err = st.Next()
			}
			st.Close()
			// The loser's goroutine finishes on its own: wait for it, and
			// for its counters (a loaded machine under -race can take a
			// while to schedule it).
			deadline := time.Now().Add(30 * time.Second)
			var s PoolSnapshot
			for {
				s = p.Snapshot(now)
				if s.Deployments[0].InFlight+s.Deployments[1].InFlight == 0 && countsOf(s) == c.want || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			got := countsOf(s)
			if got != c.want {
				t.Errorf("pool counters = %+v, want %+v", got, c.want)
			}
			da, db := s.Deployments[0], s.Deployments[1]
			if da.Excluded.Aborted != c.abortedA || db.Excluded.Aborted != c.abortedB || da.Successes+db.Successes != 1 ||
				da.Attempts != 1 || db.Attempts != 1 {
				t.Errorf("deployments = %+v / %+v; want one success and the loser aborted", da, db)
			}
		})
	}
}

// Counting adds no allocation to a request: the pool's one is gobreaker's
// (TwoStepCircuitBreaker.Allow returns a closure).
func TestCountersDoNotAllocate(t *testing.T) {
	now := t0
	p := fixedPool(t, PoolConfig{}, &now, DeploymentSpec{Name: "a", Provider: &sequenced{}})
	req := &Request{}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Complete(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per Complete through the pool, want at most gobreaker's 1", allocs)
	}
}
