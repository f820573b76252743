package providers

import (
	"errors"
	"sync/atomic"
	"time"
)

// Cumulative counters for metrics. The hot path pays one atomic add per
// event; the gateway reads them through Snapshot at scrape time and turns
// them into Prometheus counters. They only grow, from the pool's creation.

// FailureCounts are a deployment's failed attempts (the ones its breaker
// counts against it) by the ErrorKind of the error that ended them.
type FailureCounts struct {
	Status    int64 `json:"status"`    // non-2xx counted as the deployment's fault: 5xx, 429, 408, 401, 403
	Connect   int64 `json:"connect"`   // no connection, or it broke before a reply
	Timeout   int64 `json:"timeout"`   // a deadline passed
	Truncated int64 `json:"truncated"` // a stream ended without its end marker
	Protocol  int64 `json:"protocol"`  // a reply not understood, or an error event
	Other     int64 `json:"other"`     // an error that is not an *UpstreamError
}

// ExcludedCounts are a deployment's attempts that ended in an outcome
// counted neither way by its breaker, by reason.
type ExcludedCounts struct {
	Aborted      int64 `json:"aborted"`      // ErrAborted: the caller left, or a hedge lost
	Saturated    int64 `json:"saturated"`    // KindSaturated: no free connection
	Unavailable  int64 `json:"unavailable"`  // KindUnavailable (a provider that is itself a pool)
	ClientStatus int64 `json:"clientStatus"` // a 4xx the caller caused (400, 404, 413, 422...)
}

// deploymentCounters are one deployment's counters; see DeploymentSnapshot.
type deploymentCounters struct {
	attempts  atomic.Int64
	successes atomic.Int64
	failures  [KindUnavailable + 1]atomic.Int64 // by ErrorKind; 0: not an *UpstreamError
	aborted   atomic.Int64
	saturated atomic.Int64
	unavail   atomic.Int64
	client    atomic.Int64
}

// count records how one attempt ended. o is classify(err) and ue the
// *UpstreamError in err, if any.
func (c *deploymentCounters) count(o outcome, err error, ue *UpstreamError) {
	switch o {
	case outcomeSuccess:
		c.successes.Add(1)
	case outcomeFailure:
		var k ErrorKind
		if ue != nil && int(ue.Kind) < len(c.failures) {
			k = ue.Kind
		}
		c.failures[k].Add(1)
	case outcomeExcluded:
		switch {
		case errors.Is(err, ErrAborted):
			c.aborted.Add(1)
		case ue != nil && ue.Kind == KindSaturated:
			c.saturated.Add(1)
		case ue != nil && ue.Kind == KindUnavailable:
			c.unavail.Add(1)
		default:
			c.client.Add(1)
		}
	}
}

func (c *deploymentCounters) failureCounts() FailureCounts {
	return FailureCounts{
		Status:    c.failures[KindStatus].Load(),
		Connect:   c.failures[KindConnect].Load(),
		Timeout:   c.failures[KindTimeout].Load(),
		Truncated: c.failures[KindTruncated].Load(),
		Protocol:  c.failures[KindProtocol].Load(),
		// classify never makes saturated or unavailable a failure; were
		// it to, they would show here rather than vanish.
		Other: c.failures[0].Load() + c.failures[KindSaturated].Load() + c.failures[KindUnavailable].Load(),
	}
}

func (c *deploymentCounters) excludedCounts() ExcludedCounts {
	return ExcludedCounts{
		Aborted:      c.aborted.Load(),
		Saturated:    c.saturated.Load(),
		Unavailable:  c.unavail.Load(),
		ClientStatus: c.client.Load(),
	}
}

// poolCounters are one pool's counters; see PoolSnapshot.
type poolCounters struct {
	requests   atomic.Int64
	retries    atomic.Int64
	failovers  atomic.Int64
	hedges     atomic.Int64
	hedgesWon  atomic.Int64
	hedgesLost atomic.Int64
}

// countRetry records an attempt started on d because the previous one,
// on prev, failed.
func (c *poolCounters) countRetry(prev, d *Deployment) {
	c.retries.Add(1)
	if prev != d {
		c.failovers.Add(1)
	}
}

// PoolSnapshot is a pool in the health view. The counts are cumulative
// since the pool was built (export them as counters).
type PoolSnapshot struct {
	Model       string               `json:"model"`
	Strategy    string               `json:"strategy"`
	Deployments []DeploymentSnapshot `json:"deployments"`
	// Requests counts calls to Complete and Stream, each one request
	// however many attempts it took.
	Requests int64 `json:"requests"`
	// Retries counts attempts started because the request's previous
	// attempt failed (hedges are not retries); Failovers the retries that
	// went to a different deployment than that previous attempt.
	Retries   int64 `json:"retries"`
	Failovers int64 `json:"failovers"`
	// HedgesStarted counts hedge attempts: started while the request's
	// earlier attempts were still waiting for their first token.
	// HedgesWon counts those whose stream was handed to the caller;
	// HedgesLost those that ended (aborted, or answered too late and
	// discarded) because another attempt won. The rest failed on their
	// own (see the deployments' Failures) or are still running.
	HedgesStarted int64 `json:"hedgesStarted"`
	HedgesWon     int64 `json:"hedgesWon"`
	HedgesLost    int64 `json:"hedgesLost"`
}

// Snapshot reports every deployment's breaker state, in-flight count,
// recent error rate and latency at now, for the admin health view, and
// the pool's and deployments' cumulative counters for metrics.
func (p *Pool) Snapshot(now time.Time) PoolSnapshot {
	s := PoolSnapshot{
		Model:         p.model,
		Strategy:      p.cfg.Strategy,
		Deployments:   make([]DeploymentSnapshot, len(p.deps)),
		HedgesWon:     p.counts.hedgesWon.Load(),
		HedgesLost:    p.counts.hedgesLost.Load(),
		HedgesStarted: p.counts.hedges.Load(),
		Failovers:     p.counts.failovers.Load(),
		Retries:       p.counts.retries.Load(),
		Requests:      p.counts.requests.Load(),
	}
	for i, d := range p.deps {
		s.Deployments[i] = d.snapshot(now)
	}
	return s
}
