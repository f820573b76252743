package providers

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// outcome is how one finished attempt counts for its deployment's breaker.
type outcome uint8

const (
	outcomeSuccess  outcome = iota
	outcomeFailure          // the deployment's fault
	outcomeExcluded         // nobody's fault, or the caller's: not counted
)

// Errors handed to gobreaker's done callback: the breaker sees only these
// two markers (and nil), so the classification lives in classify, where it
// is table-tested, not in gobreaker callbacks.
var (
	errBreakerFailure  = errors.New("deployment failure")
	errBreakerExcluded = errors.New("excluded outcome")
)

// classify decides how err, the end of one attempt, counts: nil and io.EOF
// are successes; client aborts, the request's own deadline (the caller's
// budget, often spent by earlier attempts), saturation and caller-caused
// 4xx are excluded; everything else the upstream did wrong is a failure. 401 and
// 403 count as failures: they mean this deployment's key is wrong, and
// another deployment may serve the request.
func classify(err error) outcome {
	if err == nil || err == io.EOF {
		return outcomeSuccess
	}
	if errors.Is(err, ErrAborted) || errors.Is(err, context.DeadlineExceeded) {
		return outcomeExcluded
	}
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return outcomeFailure
	}
	switch ue.Kind {
	case KindSaturated, KindUnavailable:
		return outcomeExcluded
	case KindStatus:
		switch s := ue.Status; {
		case s >= 500, s == 429, s == 408, s == 401, s == 403:
			return outcomeFailure
		case s >= 400:
			return outcomeExcluded
		}
	}
	return outcomeFailure
}

// retryable reports whether an attempt that ended with err (before any
// delta reached the caller) may be tried again, here or elsewhere: every
// deployment failure, and saturation.
func retryable(err error) bool {
	if classify(err) == outcomeFailure {
		return true
	}
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.Kind == KindSaturated
}

// gobreakerOpen is gobreaker's open state, named once for the files that
// do not import gobreaker.
const gobreakerOpen = gobreaker.StateOpen

// breaker is one deployment's circuit breaker: a gobreaker
// TwoStepCircuitBreaker for counting, tripping and half-open probes, plus
// an "open until" hold of our own. gobreaker's open interval (Timeout) is
// fixed per breaker, while an upstream's retry-after asks for a longer one
// now and then; and gobreaker reads the wall clock, while our decisions
// take now as a parameter. So every failure that trips the breaker (or
// carries a retry-after) sets hold = now + max(OpenFor, retry-after), and
// the breaker refuses requests until then whatever gobreaker says. Since
// hold ≥ gobreaker's own expiry, gobreaker is half-open (or closed) by the
// time the hold ends, and its probes take over.
type breaker struct {
	cb         *gobreaker.TwoStepCircuitBreaker[struct{}]
	openFor    time.Duration
	maxOpenFor time.Duration
	hold       atomic.Int64 // unix ns until which requests are refused; 0 none
}

func newBreaker(name string, cfg BreakerConfig) *breaker {
	b := &breaker{openFor: cfg.OpenFor, maxOpenFor: cfg.MaxOpenFor}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  uint32(cfg.HalfOpenProbes),
		Interval:     cfg.Window,
		BucketPeriod: cfg.Window / windowBuckets,
		Timeout:      cfg.OpenFor,
		ReadyToTrip:  readyToTrip(cfg),
		IsExcluded:   func(err error) bool { return err == errBreakerExcluded },
	})
	return b
}

// readyToTrip is the trip rule: ConsecutiveFailures in a row, or a
// failure ratio of at least FailureRatio over at least MinRequests counted
// outcomes in the window.
func readyToTrip(cfg BreakerConfig) func(gobreaker.Counts) bool {
	return func(c gobreaker.Counts) bool {
		if int(c.ConsecutiveFailures) >= cfg.ConsecutiveFailures {
			return true
		}
		n := int(c.TotalSuccesses) + int(c.TotalFailures)
		return n >= cfg.MinRequests && float64(c.TotalFailures) >= cfg.FailureRatio*float64(n)
	}
}

// held reports whether the hold refuses requests at now.
func (b *breaker) held(now time.Time) bool { return now.UnixNano() < b.hold.Load() }

// state is the breaker state for selection and the health view.
func (b *breaker) state(now time.Time) gobreaker.State {
	if b.held(now) {
		return gobreaker.StateOpen
	}
	return b.cb.State()
}

// allow admits one attempt at now; the caller must pass the returned done
// to report exactly once.
func (b *breaker) allow(now time.Time) (func(error), bool) {
	if b.held(now) {
		return nil, false
	}
	done, err := b.cb.Allow()
	return done, err == nil
}

// report records one attempt's outcome. retryAfter is the upstream's hint
// (0 if none).
func (b *breaker) report(done func(error), o outcome, retryAfter time.Duration, now time.Time) {
	switch o {
	case outcomeSuccess:
		done(nil)
		return
	case outcomeExcluded:
		done(errBreakerExcluded)
		return
	}
	done(errBreakerFailure)
	d := b.holdFor(b.cb.State() == gobreaker.StateOpen, retryAfter)
	if d <= 0 {
		return
	}
	until := now.Add(d).UnixNano()
	for {
		cur := b.hold.Load()
		if cur >= until || b.hold.CompareAndSwap(cur, until) {
			return
		}
	}
}

// holdFor is how long a failure holds the breaker open: OpenFor when it
// tripped (or found it open), the upstream's retry-after when that is
// longer — even without a trip, since the upstream said so — capped at
// MaxOpenFor; 0 for no hold.
func (b *breaker) holdFor(open bool, retryAfter time.Duration) time.Duration {
	var d time.Duration
	if open {
		d = b.openFor
	}
	if retryAfter > d {
		d = min(retryAfter, b.maxOpenFor)
	}
	return d
}

// reopenAt is when the breaker lets a probe through again, as seen at now
// (now itself when it already does).
func (b *breaker) reopenAt(now time.Time) time.Time {
	if h := b.hold.Load(); now.UnixNano() < h {
		return time.Unix(0, h)
	}
	if b.cb.State() == gobreaker.StateOpen {
		// gobreaker's own clock disagrees with now: give it one interval.
		return now.Add(b.openFor)
	}
	return now
}
