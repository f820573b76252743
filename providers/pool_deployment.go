package providers

import (
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DeploymentSpec describes one deployment of a public model, as the
// gateway's model config lists it.
type DeploymentSpec struct {
	// Name labels the deployment in errors, the health view and
	// OnDiscardedUsage; unique within a pool. Required.
	Name string
	// Provider is the upstream client (its own HostClient and timeouts).
	// Required.
	Provider Provider
	// Model is the upstream model name sent to this deployment; empty
	// keeps Request.Model as the gateway set it.
	Model string
	// Weight is the share under the weighted strategy. Default 1; 1 to
	// 1000.
	Weight int
	// Priority orders deployments under the priority strategy: lower
	// first, ties in list order. Default 0.
	Priority int
	// MaxInFlight marks the deployment saturated (skipped, not a failure)
	// while this many attempts are in flight; set it to the provider's
	// maxConns plus its maxQueue. 0 means no limit.
	MaxInFlight int
	// MaxConns is the provider's connection cap, for the queue figure of
	// the snapshot (attempts in flight beyond it wait for a connection).
	// 0: unknown, no queue figure.
	MaxConns int
	// System names the upstream's kind for traces (gen_ai.provider.name:
	// openai, anthropic, mock); empty leaves it unnamed.
	System string
	// Carry, when set, is this deployment as an earlier pool had it (a
	// config reload that changed the model's other deployments or its
	// pool settings but not this one, nor its breaker settings): the new
	// deployment shares its circuit breaker, so an open breaker stays open
	// and attempts still running on the old pool report to the same one.
	// Statistics start afresh. Nil: a new breaker.
	Carry *Deployment
}

// Deployment is one member of a Pool: a provider with its breaker and
// live statistics. Selectors read it; only the Pool changes it. Safe for
// concurrent use.
type Deployment struct {
	name        string
	provider    Provider
	model       string
	weight      int
	priority    int
	maxInFlight int64
	maxConns    int64
	index       int
	br          *breaker
	system      string // DeploymentSpec.System
	chatName    string // the attempt span's name when model is set

	inFlight atomic.Int64
	counts   deploymentCounters
	// latency is the EWMA (float64 bits, ns) of successful attempts'
	// latency: the whole reply for Complete, the first token for Stream.
	latency atomic.Uint64

	mu      sync.Mutex
	window  window // a: successes, b: failures (excluded outcomes not counted)
	ttft    [ttftSamples]time.Duration
	ttftN   int // samples written in total
	ttftP95 time.Duration
}

const (
	ttftSamples    = 64
	ttftMinSamples = 16
	ewmaAlpha      = 0.2
)

// Name is the deployment's name.
func (d *Deployment) Name() string { return d.name }

// Provider is the upstream client the deployment calls.
func (d *Deployment) Provider() Provider { return d.provider }

// Model is the upstream model name sent to the deployment ("" keeps the
// request's).
func (d *Deployment) Model() string { return d.model }

// Weight is the deployment's weight (≥ 1).
func (d *Deployment) Weight() int { return d.weight }

// Priority is the deployment's priority (lower first).
func (d *Deployment) Priority() int { return d.priority }

// InFlight is the number of attempts running now, open streams included.
func (d *Deployment) InFlight() int64 { return d.inFlight.Load() }

// Latency is the EWMA latency of successful attempts, 0 before the first.
func (d *Deployment) Latency() time.Duration {
	return time.Duration(math.Float64frombits(d.latency.Load()))
}

// P95TTFT is the p95 time to first token over the last 64 streams, 0
// until 16 were seen.
func (d *Deployment) P95TTFT() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ttftP95
}

// queued is how many attempts in flight exceed the connection cap.
func (d *Deployment) queued() int64 {
	if d.maxConns <= 0 {
		return 0
	}
	return max(d.inFlight.Load()-d.maxConns, 0)
}

// saturated reports whether the deployment's queue is full.
func (d *Deployment) saturated() bool {
	return d.maxInFlight > 0 && d.inFlight.Load() >= d.maxInFlight
}

// healthy reports whether the deployment may be chosen at now: breaker not
// open and not saturated.
func (d *Deployment) healthy(now time.Time) bool {
	if d.saturated() {
		return false
	}
	return d.br.state(now) != gobreakerOpen
}

// request returns req with this deployment's model, copying only when it
// differs.
func (d *Deployment) request(req *Request) *Request {
	if d.model == "" || d.model == req.Model {
		return req
	}
	r := *req
	r.Model = d.model
	return &r
}

// observe folds a successful attempt's latency into the EWMA.
func (d *Deployment) observe(lat time.Duration) {
	for {
		old := d.latency.Load()
		v := float64(lat)
		if old != 0 {
			v = math.Float64frombits(old)*(1-ewmaAlpha) + v*ewmaAlpha
		}
		if d.latency.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// observeTTFT records a stream's time to first token.
func (d *Deployment) observeTTFT(ttft time.Duration) {
	d.observe(ttft)
	d.mu.Lock()
	d.ttft[d.ttftN%ttftSamples] = ttft
	d.ttftN++
	// Recompute the percentile every few samples, not per request.
	if d.ttftN >= ttftMinSamples && d.ttftN%8 == 0 {
		n := min(d.ttftN, ttftSamples)
		var s [ttftSamples]time.Duration
		copy(s[:n], d.ttft[:n])
		slices.Sort(s[:n])
		d.ttftP95 = s[(n*95+99)/100-1]
	}
	d.mu.Unlock()
}

// finish ends one attempt admitted by acquire: reports err to the breaker,
// counts it for the error rate and releases the in-flight slot.
func (d *Deployment) finish(done func(error), err error, now time.Time) {
	o := classify(err)
	var retryAfter time.Duration
	var ue *UpstreamError
	if o != outcomeSuccess {
		ue = upstreamErrorOf(err)
	}
	if o == outcomeFailure && ue != nil {
		retryAfter = ue.RetryAfter
	}
	d.counts.count(o, err, ue)
	d.br.report(done, o, retryAfter, now)
	if o != outcomeExcluded {
		var ok, bad int64 = 1, 0
		if o == outcomeFailure {
			ok, bad = 0, 1
		}
		d.mu.Lock()
		d.window.add(now, ok, bad)
		d.mu.Unlock()
	}
	d.inFlight.Add(-1)
}

// upstreamErrorOf is the *UpstreamError in err, nil if none. (A helper
// so the success path does not allocate for errors.As.)
func upstreamErrorOf(err error) *UpstreamError {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue
	}
	return nil
}

// DeploymentSnapshot is one deployment in the health view.
type DeploymentSnapshot struct {
	Name string `json:"name"`
	// Breaker is "closed", "half-open" or "open".
	Breaker string `json:"breaker"`
	// RetryInMs is how long until an open breaker lets a probe through;
	// 0 unless open.
	RetryInMs int64 `json:"retryInMs"`
	InFlight  int64 `json:"inFlight"`
	// Queued is how many of InFlight wait for a free connection (beyond
	// the provider's maxConns); 0 when that cap is unknown.
	Queued int64 `json:"queued"`
	// Requests and ErrorRate cover the breaker window (excluded outcomes,
	// such as client aborts, are not counted).
	Requests  int64   `json:"requests"`
	ErrorRate float64 `json:"errorRate"`
	// LatencyMs is the EWMA latency of successful attempts (whole reply
	// or first token); P95TTFTMs the p95 time to first token (0 until 16
	// streams were seen).
	LatencyMs float64 `json:"latencyMs"`
	P95TTFTMs float64 `json:"p95TtftMs"`
	Weight    int     `json:"weight"`
	Priority  int     `json:"priority"`
	// Attempts counts every attempt admitted to this deployment since the
	// pool was built; each ends as one of Successes, Failures (by the
	// kind of error) or Excluded (by reason), or is still in flight.
	// Cumulative: export them as counters.
	Attempts  int64          `json:"attempts"`
	Successes int64          `json:"successes"`
	Failures  FailureCounts  `json:"failures"`
	Excluded  ExcludedCounts `json:"excluded"`
}

func (d *Deployment) snapshot(now time.Time) DeploymentSnapshot {
	d.mu.Lock()
	ok, bad := d.window.sum(now)
	p95 := d.ttftP95
	d.mu.Unlock()
	s := DeploymentSnapshot{
		Name:      d.name,
		Breaker:   d.br.state(now).String(),
		InFlight:  d.inFlight.Load(),
		Queued:    d.queued(),
		Requests:  ok + bad,
		LatencyMs: float64(d.Latency()) / 1e6,
		P95TTFTMs: float64(p95) / 1e6,
		Weight:    d.weight,
		Priority:  d.priority,
		// Attempts is read last, so it never trails the outcomes.
		Successes: d.counts.successes.Load(),
		Failures:  d.counts.failureCounts(),
		Excluded:  d.counts.excludedCounts(),
		Attempts:  d.counts.attempts.Load(),
	}
	if s.Requests > 0 {
		s.ErrorRate = float64(bad) / float64(s.Requests)
	}
	if s.Breaker == gobreakerOpen.String() {
		s.RetryInMs = d.br.reopenAt(now).Sub(now).Milliseconds()
	}
	return s
}
