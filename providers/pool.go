package providers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Pool serves one public model from one or more deployments and is itself
// a Provider, so the gateway calls Complete and Stream unchanged. Each
// call picks a healthy deployment (breaker not open, not saturated) with
// the configured strategy and, while nothing has reached the caller, fails
// over on connect errors, timeouts, 429, 5xx and the like — up to
// MaxAttempts attempts per request and within the shared RetryBudget.
// Stream returns only once a deployment produced its first delta; from
// then on the stream belongs to that deployment and never switches.
//
// When no deployment is healthy, Complete and Stream fail at once with an
// *UpstreamError of KindUnavailable whose RetryAfter is the time until the
// earliest breaker lets a probe through.
//
// Build it with NewPool; set OnDiscardedUsage before first use. Safe for
// concurrent use.
type Pool struct {
	// OnDiscardedUsage, when set, receives the usage of every attempt
	// that opened an upstream stream but was not handed to the caller: a
	// hedge that lost the race, or an attempt that failed before its first
	// delta. The upstream may bill it; the gateway records it. It may be
	// called from another goroutine, after Stream returned. Nil drops it.
	OnDiscardedUsage func(deployment string, u Usage)
	// Tracer, when set, starts a client span per attempt under the span of
	// the request's context (see tracing.go). Nil: no attempt spans.
	Tracer trace.Tracer

	model  string
	deps   []*Deployment
	sel    Selector
	cfg    PoolConfig
	budget *RetryBudget
	now    func() time.Time
	counts poolCounters
}

var _ Provider = (*Pool)(nil)

// NewPool builds the pool of public model id model. cfg gets its defaults
// applied (on a copy) and is validated; deps must be 1 to MaxDeployments
// with unique names. budget may be shared by every pool (nil: no budget,
// MaxAttempts alone bounds retries). now is the clock (time.Now in
// production).
func NewPool(model string, deps []DeploymentSpec, cfg PoolConfig, budget *RetryBudget, now func() time.Time) (*Pool, error) {
	cfg.SetDefaults()
	errs := []error{cfg.Validate()}
	if len(deps) == 0 || len(deps) > MaxDeployments {
		errs = append(errs, fmt.Errorf("deployments: must be 1 to %d", MaxDeployments))
	}
	if now == nil {
		errs = append(errs, errors.New("now: required"))
	}
	seen := make(map[string]bool, len(deps))
	for i, s := range deps {
		if s.Name == "" || seen[s.Name] {
			errs = append(errs, fmt.Errorf("deployments[%d].name: must be unique and non-empty", i))
		}
		seen[s.Name] = true
		if s.Provider == nil {
			errs = append(errs, fmt.Errorf("deployments[%d].provider: required", i))
		}
		if s.Weight < 0 || s.Weight > 1000 {
			errs = append(errs, fmt.Errorf("deployments[%d].weight: must be between 1 and 1000", i))
		}
		if s.MaxInFlight < 0 {
			errs = append(errs, fmt.Errorf("deployments[%d].maxInFlight: must be at least 0", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p := &Pool{model: model, cfg: cfg, budget: budget, now: now}
	for _, s := range deps {
		br := newBreaker(s.Name, cfg.Breaker)
		if s.Carry != nil {
			br = s.Carry.br
		}
		p.deps = append(p.deps, &Deployment{
			name:        s.Name,
			provider:    s.Provider,
			model:       s.Model,
			weight:      max(s.Weight, 1),
			priority:    s.Priority,
			maxInFlight: int64(s.MaxInFlight),
			maxConns:    int64(s.MaxConns),
			br:          br,
			window:      newWindow(cfg.Breaker.Window),
			system:      s.System,
			chatName:    "chat " + s.Model,
		})
	}
	slices.SortStableFunc(p.deps, func(a, b *Deployment) int { return cmp.Compare(a.priority, b.priority) })
	for i, d := range p.deps {
		d.index = i
	}
	sel, err := NewSelector(cfg.Strategy, len(p.deps))
	if err != nil {
		return nil, err
	}
	p.sel = sel
	return p, nil
}

// Model is the public model id.
func (p *Pool) Model() string { return p.model }

// Deployments lists the deployments in priority order.
func (p *Pool) Deployments() []*Deployment { return p.deps }

// Complete runs req on one deployment after another until one answers,
// an error is not worth retrying, MaxAttempts is reached or the retry
// budget is spent. It returns the last attempt's error.
func (p *Pool) Complete(ctx context.Context, req *Request) (Result, error) {
	now := p.now()
	p.counts.requests.Add(1)
	p.budget.Request(now)
	var res Result
	err := p.failover(ctx, req, now, func(ctx context.Context, d *Deployment, r *Request, done func(error), sp attemptSpan, start time.Time) error {
		var err error
		if res, err = d.provider.Complete(ctx, r); err != nil {
			return err
		}
		end := p.now()
		d.observe(end.Sub(start))
		d.finish(done, nil, end)
		sp.end(res.Usage, res.FinishReason, nil)
		res.Deployment = d.name
		return nil
	})
	return res, err
}

// Stream starts req and returns once a deployment produced its first
// delta (or ended cleanly without any), failing over before that as
// Complete does; with hedging on, slow first tokens start the request on
// the next deployment as well. The returned Stream is that deployment's:
// its Next hands out the buffered first delta, then the upstream's; a
// failure after that is returned by Next and never retried. Close reports
// the stream's outcome to the deployment's breaker.
func (p *Pool) Stream(ctx context.Context, req *Request) (Stream, error) {
	now := p.now()
	p.counts.requests.Add(1)
	p.budget.Request(now)
	if p.cfg.Hedge.Enabled && p.cfg.MaxAttempts > 1 {
		return p.streamHedged(ctx, req, now)
	}
	var out Stream
	err := p.failover(ctx, req, now, func(ctx context.Context, d *Deployment, r *Request, done func(error), sp attemptSpan, start time.Time) error {
		st, first, err := p.openStream(ctx, d, r, start)
		if err != nil && err != io.EOF {
			return err
		}
		ps := newPoolStream(p, d, done, st, first, err)
		ps.span = sp
		out = ps
		return nil
	})
	return out, err
}

// failover makes attempts on healthy deployments, preferring ones not yet
// tried, until try succeeds, an error is not worth retrying, MaxAttempts
// is reached or the retry budget is spent, and returns the last error (nil
// once try succeeded). try gets the deployment's own request and the
// breaker's done and the attempt's span (nil without tracing), with ctx
// carrying that span: on success try owns done and the span; on failure
// failover reports the error to the breaker and ends the span.
//
// Once ctx ended no attempt starts: the request's deadline bounds all of
// its attempts together.
func (p *Pool) failover(ctx context.Context, req *Request, now time.Time, try func(ctx context.Context, d *Deployment, r *Request, done func(error), sp attemptSpan, start time.Time) error) error {
	var tried uint64
	var lastErr error
	var prev *Deployment
	for attempt := 0; attempt < p.cfg.MaxAttempts; attempt++ {
		if ctx.Err() != nil {
			return ContextError(p.model, ctx)
		}
		if attempt > 0 && !p.budget.TryRetry(now) {
			break
		}
		d, done, err := p.acquire(now, tried)
		if d == nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		if prev != nil {
			p.counts.countRetry(prev, d)
		}
		prev = d
		tried |= 1 << d.index
		r := d.request(req)
		actx, sp := p.startAttempt(ctx, d, r, attempt, false)
		if err = try(actx, d, r, done, sp, now); err == nil {
			return nil
		}
		sp.end(Usage{}, "", err)
		now = p.now()
		d.finish(done, err, now)
		lastErr = err
		if !retryable(err) {
			break
		}
	}
	return lastErr
}

// openStream starts r on d and reads to the first delta. On success (err
// nil or io.EOF) the stream is returned open; on failure it is already
// closed and its usage handed to OnDiscardedUsage.
func (p *Pool) openStream(ctx context.Context, d *Deployment, r *Request, start time.Time) (Stream, []byte, error) {
	st, err := d.provider.Stream(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	first, err := st.Next()
	if err == nil || err == io.EOF {
		d.observeTTFT(p.now().Sub(start))
		return st, first, err
	}
	p.discard(d, r, st)
	return nil, nil, err
}

// discard closes a stream that will not reach the caller, reporting its
// usage to the request's Observer, else to OnDiscardedUsage.
func (p *Pool) discard(d *Deployment, r *Request, st Stream) {
	switch {
	case r.Observer != nil:
		r.Observer.DiscardedUsage(d.name, st.Usage())
	case p.OnDiscardedUsage != nil:
		p.OnDiscardedUsage(d.name, st.Usage())
	}
	st.Close()
}

// acquire picks a healthy deployment, preferring ones not yet tried (the
// tried mask), and admits one attempt through its breaker, counting it in
// flight. With none available it returns a KindUnavailable error.
func (p *Pool) acquire(now time.Time, tried uint64) (*Deployment, func(error), error) {
	var healthy uint64
	for i, d := range p.deps {
		if d.healthy(now) {
			healthy |= 1 << i
		}
	}
	eligible := healthy &^ tried
	if eligible == 0 {
		eligible = healthy
	}
	for eligible != 0 {
		i := p.sel.Select(p.deps, eligible)
		d := p.deps[i]
		if done, ok := d.br.allow(now); ok {
			d.inFlight.Add(1)
			d.counts.attempts.Add(1)
			return d, done, nil
		}
		eligible &^= 1 << i // half-open with its probes taken, or just tripped
	}
	return nil, nil, p.unavailable(now)
}

// unavailable is the fail-fast error when no deployment is healthy:
// KindSaturated when every deployment is only busy (its connections and
// queue full, no breaker open), so the reply says so rather than
// pretending an outage; KindUnavailable otherwise.
func (p *Pool) unavailable(now time.Time) *UpstreamError {
	busy := true
	for _, d := range p.deps {
		if !d.saturated() || d.br.state(now) == gobreakerOpen {
			busy = false
		}
	}
	if busy {
		return &UpstreamError{Kind: KindSaturated, Provider: p.model, RetryAfter: time.Second,
			Detail: "every deployment is at its connection cap with its queue full"}
	}
	var earliest time.Time
	for _, d := range p.deps {
		t := d.br.reopenAt(now)
		if !t.After(now) {
			// Saturated, or half-open with every probe slot taken: soon.
			t = now.Add(time.Second)
		}
		if earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	return &UpstreamError{
		Kind:       KindUnavailable,
		Provider:   p.model,
		RetryAfter: earliest.Sub(now),
		Detail:     "no healthy deployment",
	}
}
