package providers

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// A hedged stream runs each attempt in its own goroutine (the only path
// with goroutines per request): the attempt opens its stream and reads to
// the first delta, then, under the race's lock, either claims the win or
// finds the race decided. The winner goes to Stream's caller through the
// events channel; every loser cleans up after itself — it is aborted (its
// upstream connection closed) as soon as both the win and its stream
// exist, then Closed, its usage handed to OnDiscardedUsage and its outcome
// reported to its breaker. Attempts that fail before the race is decided
// report the failure on the channel so Stream can retry.
//
// Each attempt runs under a context of its own, derived from the
// request's, so a loser is cancelled the moment the winner is chosen
// whatever it is doing — still waiting for its reply's headers included:
// cancelling closes its upstream connection. The winner's context is
// cancelled when its stream is closed. When the request's context ends,
// every attempt fails at once and the race ends with that error.

// hedgeRace is the shared state of one hedged request.
type hedgeRace struct {
	mu      sync.Mutex
	decided bool
	cancels [10]context.CancelFunc // attempt contexts by slot, for cancelling losers
	events  chan *hedgeAttempt
}

// hedgeAttempt is one attempt of a hedged request.
type hedgeAttempt struct {
	d      *Deployment
	done   func(error)
	cancel context.CancelFunc
	span   attemptSpan // the attempt's span; none without tracing
	slot   int
	hedge  bool // started by the hedge timer, not as the first try or a retry
	st     Stream
	first  []byte
	err    error
}

// streamHedged is Stream with hedging: see Pool.Stream and HedgeConfig.
func (p *Pool) streamHedged(ctx context.Context, req *Request, now time.Time) (Stream, error) {
	h := &hedgeRun{p: p, ctx: ctx, req: req, race: &hedgeRace{events: make(chan *hedgeAttempt, p.cfg.MaxAttempts)}}
	race := h.race
	d, ok := h.launch(now, false)
	if !ok {
		return nil, h.lastErr
	}
	timer := time.NewTimer(p.hedgeDelay(d))
	defer timer.Stop()
	for {
		select {
		case a := <-race.events:
			if a.err == nil || a.err == io.EOF {
				if a.hedge {
					p.counts.hedgesWon.Add(1)
				}
				race.cancelLosers(a.slot)
				ps := newPoolStream(p, a.d, a.done, a.st, a.first, a.err)
				ps.cancel, ps.span = a.cancel, a.span
				return ps, nil
			}
			h.running--
			h.lastErr = a.err
			if h.running > 0 {
				continue // another attempt is still racing
			}
			now := p.now()
			if !retryable(a.err) || h.launched >= p.cfg.MaxAttempts || !p.budget.TryRetry(now) {
				return nil, h.lastErr
			}
			d, ok := h.launch(now, false)
			if !ok {
				return nil, h.lastErr
			}
			timer.Reset(p.hedgeDelay(d))
		case <-timer.C:
			now := p.now()
			if h.launched >= p.cfg.MaxAttempts || !p.budget.TryRetry(now) {
				continue
			}
			if d, ok := h.launch(now, true); ok {
				timer.Reset(p.hedgeDelay(d))
			}
		}
	}
}

// hedgeRun is one streamHedged call's attempts: what was tried, what
// still runs, the last error. Only streamHedged's goroutine touches it.
type hedgeRun struct {
	p    *Pool
	ctx  context.Context
	req  *Request
	race *hedgeRace

	tried             uint64 // a bit per deployment index
	lastErr           error
	launched, running int
	prev              *Deployment // the deployment of the latest attempt
}

// launch starts one more attempt (a hedge, or a retry after a failure) on
// the next eligible deployment; false when there is none or ctx ended,
// with lastErr saying why.
func (h *hedgeRun) launch(now time.Time, hedge bool) (*Deployment, bool) {
	p := h.p
	if h.ctx.Err() != nil {
		if h.lastErr == nil {
			h.lastErr = ContextError(p.model, h.ctx)
		}
		return nil, false
	}
	d, done, err := p.acquire(now, h.tried)
	if d == nil {
		if h.lastErr == nil {
			h.lastErr = err
		}
		return nil, false
	}
	switch {
	case hedge:
		p.counts.hedges.Add(1)
	case h.prev != nil:
		p.counts.countRetry(h.prev, d)
	}
	h.prev = d
	h.tried |= 1 << d.index
	actx, cancel := context.WithCancel(h.ctx)
	r := d.request(h.req)
	actx, sp := p.startAttempt(actx, d, r, h.launched, hedge)
	a := &hedgeAttempt{d: d, done: done, cancel: cancel, span: sp, slot: h.launched, hedge: hedge}
	h.race.mu.Lock()
	h.race.cancels[a.slot] = cancel
	h.race.mu.Unlock()
	h.launched++
	h.running++
	go p.runAttempt(actx, h.race, a, r, now)
	return d, true
}

// hedgeDelay is how long to wait for d's first token before hedging.
func (p *Pool) hedgeDelay(d *Deployment) time.Duration {
	h := p.cfg.Hedge
	if h.UseP95 {
		if p95 := d.P95TTFT(); p95 > 0 {
			return max(p95, h.MinDelay)
		}
	}
	return h.Delay
}

// runAttempt is one attempt's goroutine; see the comment at the top.
func (p *Pool) runAttempt(ctx context.Context, race *hedgeRace, a *hedgeAttempt, r *Request, start time.Time) {
	st, err := a.d.provider.Stream(ctx, r)
	var first []byte
	if err == nil {
		first, err = st.Next()
	}
	ok := err == nil || err == io.EOF
	race.mu.Lock()
	won := ok && !race.decided
	if won {
		race.decided = true
	}
	decided := race.decided
	race.cancels[a.slot] = nil // from here this goroutine (or the winner's owner) alone cancels it
	race.mu.Unlock()
	if won {
		a.d.observeTTFT(p.now().Sub(start))
		a.st, a.first, a.err = st, first, err
		race.events <- a
		return
	}
	a.cancel() // lost or failed: stop the generation now, if any
	if ok {
		err = nil // it answered; losing the race is not its fault
	}
	if a.span.sp != nil {
		spanErr := err
		if decided && (err == nil || errors.Is(err, ErrAborted)) {
			spanErr = errLostRace
		}
		a.span.endStream(st, spanErr)
	}
	if st != nil {
		p.discard(a.d, r, st)
	}
	if a.hedge && decided {
		p.counts.hedgesLost.Add(1)
	}
	a.d.finish(a.done, err, p.now())
	if !decided {
		a.err = err
		race.events <- a
	}
}

// cancelLosers cancels every attempt still running but the winner: each
// one's upstream connection is closed at once, reply headers or not.
func (r *hedgeRace) cancelLosers(winner int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, cancel := range r.cancels {
		if i != winner && cancel != nil {
			cancel()
		}
	}
}
