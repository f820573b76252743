package providers

import (
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
// Limitation: an attempt still inside Provider.Stream (reply headers not
// yet received) has no Stream to abort; it is aborted the moment Stream
// returns, and its provider's first-token timeout bounds that wait.

// hedgeRace is the shared state of one hedged request.
type hedgeRace struct {
	mu      sync.Mutex
	decided bool
	streams [10]Stream // open streams by attempt slot, for aborting losers
	events  chan *hedgeAttempt
}

// hedgeAttempt is one attempt of a hedged request.
type hedgeAttempt struct {
	d     *Deployment
	done  func(error)
	slot  int
	hedge bool // started by the hedge timer, not as the first try or a retry
	st    Stream
	first []byte
	err   error
}

// streamHedged is Stream with hedging: see Pool.Stream and HedgeConfig.
func (p *Pool) streamHedged(req *Request, now time.Time) (Stream, error) {
	race := &hedgeRace{events: make(chan *hedgeAttempt, p.cfg.MaxAttempts)}
	var tried uint64
	var lastErr error
	launched, running := 0, 0
	var prev *Deployment // the deployment of the latest attempt
	launch := func(now time.Time, hedge bool) (*Deployment, bool) {
		d, done, err := p.acquire(now, tried)
		if d == nil {
			if lastErr == nil {
				lastErr = err
			}
			return nil, false
		}
		switch {
		case hedge:
			p.counts.hedges.Add(1)
		case prev != nil:
			p.counts.countRetry(prev, d)
		}
		prev = d
		tried |= 1 << d.index
		a := &hedgeAttempt{d: d, done: done, slot: launched, hedge: hedge}
		launched++
		running++
		go p.runAttempt(race, a, d.request(req), now)
		return d, true
	}
	d, ok := launch(now, false)
	if !ok {
		return nil, lastErr
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
				race.abortLosers(a.slot)
				return newPoolStream(p, a.d, a.done, a.st, a.first, a.err), nil
			}
			running--
			lastErr = a.err
			if running > 0 {
				continue // another attempt is still racing
			}
			now := p.now()
			if !retryable(a.err) || launched >= p.cfg.MaxAttempts || !p.budget.TryRetry(now) {
				return nil, lastErr
			}
			d, ok := launch(now, false)
			if !ok {
				return nil, lastErr
			}
			timer.Reset(p.hedgeDelay(d))
		case <-timer.C:
			now := p.now()
			if launched >= p.cfg.MaxAttempts || !p.budget.TryRetry(now) {
				continue
			}
			if d, ok := launch(now, true); ok {
				timer.Reset(p.hedgeDelay(d))
			}
		}
	}
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
func (p *Pool) runAttempt(race *hedgeRace, a *hedgeAttempt, r *Request, start time.Time) {
	st, err := a.d.provider.Stream(r)
	var first []byte
	if err == nil {
		race.mu.Lock()
		race.streams[a.slot] = st
		lost := race.decided
		race.mu.Unlock()
		if lost {
			st.Abort()
		}
		first, err = st.Next()
	}
	ok := err == nil || err == io.EOF
	race.mu.Lock()
	won := ok && !race.decided
	if won {
		race.decided = true
	}
	decided := race.decided
	race.streams[a.slot] = nil // from here this goroutine (or the winner's owner) alone touches st
	race.mu.Unlock()
	if won {
		a.d.observeTTFT(p.now().Sub(start))
		a.st, a.first, a.err = st, first, err
		race.events <- a
		return
	}
	if st != nil {
		if ok {
			st.Abort() // a token came too late: stop the generation now
		}
		p.discard(a.d, r, st)
	}
	if ok {
		err = nil // it answered; losing the race is not its fault
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

// abortLosers aborts every open stream but the winner's.
func (r *hedgeRace) abortLosers(winner int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, st := range r.streams {
		if i != winner && st != nil {
			st.Abort()
		}
	}
}
