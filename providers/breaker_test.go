package providers

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

func TestClassify(t *testing.T) {
	status := func(s int) error { return &UpstreamError{Kind: KindStatus, Status: s} }
	cases := []struct {
		name      string
		err       error
		want      outcome
		retryable bool
	}{
		{"nil is success", nil, outcomeSuccess, false},
		{"clean end is success", io.EOF, outcomeSuccess, false},
		{"client abort is excluded", ErrAborted, outcomeExcluded, false},
		{"wrapped client abort is excluded", fmt.Errorf("relay: %w", ErrAborted), outcomeExcluded, false},
		{"saturation is excluded but retried elsewhere", &UpstreamError{Kind: KindSaturated}, outcomeExcluded, true},
		{"unavailable is excluded", &UpstreamError{Kind: KindUnavailable}, outcomeExcluded, false},
		{"400 is the caller's", status(400), outcomeExcluded, false},
		{"404 is the caller's", status(404), outcomeExcluded, false},
		{"422 is the caller's", status(422), outcomeExcluded, false},
		{"401 is a bad deployment key", status(401), outcomeFailure, true},
		{"403 is a bad deployment key", status(403), outcomeFailure, true},
		{"408 is the upstream's", status(408), outcomeFailure, true},
		{"429 is a failure", status(429), outcomeFailure, true},
		{"500 is a failure", status(500), outcomeFailure, true},
		{"529 overloaded is a failure", status(529), outcomeFailure, true},
		{"connect is a failure", &UpstreamError{Kind: KindConnect}, outcomeFailure, true},
		{"first-token timeout is a failure", &UpstreamError{Kind: KindTimeout}, outcomeFailure, true},
		{"cut stream is a failure", &UpstreamError{Kind: KindTruncated}, outcomeFailure, true},
		{"protocol error is a failure", &UpstreamError{Kind: KindProtocol}, outcomeFailure, true},
		{"unknown error is a failure", errors.New("boom"), outcomeFailure, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("classify = %d, want %d", got, tc.want)
			}
			if got := retryable(tc.err); got != tc.retryable {
				t.Errorf("retryable = %v, want %v", got, tc.retryable)
			}
		})
	}
}

func TestReadyToTrip(t *testing.T) {
	cfg := BreakerConfig{ConsecutiveFailures: 5, MinRequests: 10, FailureRatio: 0.5}
	cases := []struct {
		name string
		c    gobreaker.Counts
		want bool
	}{
		{"four in a row stays closed", gobreaker.Counts{TotalFailures: 4, ConsecutiveFailures: 4}, false},
		{"five in a row trips", gobreaker.Counts{TotalFailures: 5, ConsecutiveFailures: 5}, true},
		{"ratio below minimum count stays closed", gobreaker.Counts{TotalSuccesses: 4, TotalFailures: 4, ConsecutiveFailures: 1}, false},
		{"ratio at minimum count trips", gobreaker.Counts{TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, true},
		{"ratio under threshold stays closed", gobreaker.Counts{TotalSuccesses: 11, TotalFailures: 9, ConsecutiveFailures: 2}, false},
		{"exclusions do not count toward the minimum", gobreaker.Counts{Requests: 40, TotalExclusions: 32, TotalSuccesses: 4, TotalFailures: 4, ConsecutiveFailures: 1}, false},
	}
	trip := readyToTrip(cfg)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := trip(tc.c); got != tc.want {
				t.Errorf("readyToTrip = %v, want %v", got, tc.want)
			}
		})
	}
}

// t0 is the fixed instant breaker and budget steps are relative to.
var t0 = time.Unix(1_700_000_000, 0)

func TestBreakerSteps(t *testing.T) {
	status := func(s int, ra time.Duration) error {
		return &UpstreamError{Kind: KindStatus, Status: s, RetryAfter: ra}
	}
	type step struct {
		at    time.Duration // since t0
		err   error         // reported when report is true
		check string        // expected state at `at` before reporting
	}
	cases := []struct {
		name  string
		cfg   BreakerConfig
		steps []step
		// reopen, when set, is the expected reopenAt after the last step, from t0.
		reopen time.Duration
	}{
		{
			name: "retry-after longer than openFor holds the breaker open without a trip",
			cfg:  BreakerConfig{ConsecutiveFailures: 5, OpenFor: time.Second},
			steps: []step{
				{at: 0, err: status(429, 2*time.Second), check: "closed"},
				{at: 1900 * time.Millisecond, check: "open"},
				{at: 2100 * time.Millisecond, check: "closed"},
			},
		},
		{
			name: "trip holds for openFor",
			cfg:  BreakerConfig{ConsecutiveFailures: 2, OpenFor: 3 * time.Second},
			steps: []step{
				{at: 0, err: status(500, 0), check: "closed"},
				{at: time.Millisecond, err: status(502, 0), check: "closed"},
				{at: 2 * time.Second, check: "open"},
			},
			reopen: 3*time.Second + time.Millisecond,
		},
		{
			name: "trip with a longer retry-after holds for the retry-after",
			cfg:  BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Second},
			steps: []step{
				{at: 0, err: status(503, 7*time.Second), check: "closed"},
				{at: 6 * time.Second, check: "open"},
			},
			reopen: 7 * time.Second,
		},
		{
			name: "retry-after is capped by maxOpenFor",
			cfg:  BreakerConfig{ConsecutiveFailures: 5, OpenFor: time.Second, MaxOpenFor: 4 * time.Second},
			steps: []step{
				{at: 0, err: status(429, time.Hour), check: "closed"},
				{at: 3 * time.Second, check: "open"},
			},
			reopen: 4 * time.Second,
		},
		{
			name: "caller errors, aborts and saturation never trip",
			cfg:  BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Second},
			steps: []step{
				{at: 0, err: status(400, 0), check: "closed"},
				{at: 1, err: ErrAborted, check: "closed"},
				{at: 2, err: &UpstreamError{Kind: KindSaturated}, check: "closed"},
				{at: 3, err: status(422, 0), check: "closed"},
				{at: 4, check: "closed"},
			},
		},
		{
			name: "a success resets the consecutive count",
			cfg:  BreakerConfig{ConsecutiveFailures: 2, MinRequests: 100, OpenFor: time.Second},
			steps: []step{
				{at: 0, err: status(500, 0), check: "closed"},
				{at: 1, err: nil, check: "closed"},
				{at: 2, err: status(500, 0), check: "closed"},
				{at: 3, check: "closed"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			b := newBreaker("d", tc.cfg)
			var last time.Time
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				last = now
				if got := b.state(now).String(); got != s.check {
					t.Fatalf("step %d: state at +%v = %s, want %s", i, s.at, got, s.check)
				}
				if s.check == "closed" && (s.err != nil || i < len(tc.steps)-1) {
					done, ok := b.allow(now)
					if !ok {
						t.Fatalf("step %d: closed breaker refused", i)
					}
					b.report(done, classify(s.err), retryAfterOf(s.err), now)
				}
			}
			if tc.reopen != 0 {
				if got := b.reopenAt(last).Sub(t0); got != tc.reopen {
					t.Errorf("reopenAt = t0+%v, want t0+%v", got, tc.reopen)
				}
				if _, ok := b.allow(last); ok {
					t.Error("open breaker admitted a request")
				}
			}
		})
	}
}

// TestBreakerHalfOpenProbes exercises gobreaker's own open → half-open
// transition, which runs on the wall clock: a short real interval is
// unavoidable here.
func TestBreakerHalfOpenProbes(t *testing.T) {
	cfg := BreakerConfig{ConsecutiveFailures: 1, OpenFor: 20 * time.Millisecond, HalfOpenProbes: 2}
	cfg.SetDefaults()
	b := newBreaker("d", cfg)
	fail := &UpstreamError{Kind: KindConnect}
	done, _ := b.allow(time.Now())
	b.report(done, classify(fail), 0, time.Now())
	if _, ok := b.allow(time.Now()); ok {
		t.Fatal("tripped breaker admitted a request")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.state(time.Now()) != gobreaker.StateHalfOpen {
		if time.Now().After(deadline) {
			t.Fatal("breaker never half-opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p1, ok1 := b.allow(time.Now())
	p2, ok2 := b.allow(time.Now())
	_, ok3 := b.allow(time.Now())
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("half-open admitted %v %v %v, want two probes only", ok1, ok2, ok3)
	}
	b.report(p1, outcomeSuccess, 0, time.Now())
	if got := b.state(time.Now()); got != gobreaker.StateHalfOpen {
		t.Fatalf("after one probe success state = %s, want half-open", got)
	}
	b.report(p2, outcomeSuccess, 0, time.Now())
	if got := b.state(time.Now()); got != gobreaker.StateClosed {
		t.Fatalf("after both probes state = %s, want closed", got)
	}
}

// retryAfterOf is the retry-after hint in err, as finish reads it.
func retryAfterOf(err error) time.Duration {
	if ue := upstreamErrorOf(err); ue != nil {
		return ue.RetryAfter
	}
	return 0
}
