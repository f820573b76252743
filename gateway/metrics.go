package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// Metrics are the gateway's Prometheus metrics, all prefixed moonborn_.
// Build them with NewMetrics on a registry made in main; a nil *Metrics
// records nothing.
//
// Labels are bounded by configuration: route templates (never raw paths),
// status classes, the API's fixed error codes, configured model ids,
// provider and deployment names. Persona ids, workspace ids and keys are
// never labels. Counters the pools, the persona cache, the ledger and the
// limiter keep themselves are read at scrape time (Collectors), so the
// request path pays nothing for them.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	overhead    *prometheus.HistogramVec
	ttft        prometheus.Histogram
	gap         prometheus.Histogram
	inFlight    prometheus.Gauge
	openStreams prometheus.Gauge
	tokens      *prometheus.CounterVec
	cost        *prometheus.CounterVec
	cacheTokens *prometheus.CounterVec
	rejections  *prometheus.CounterVec
	unreadables *prometheus.CounterVec

	// Children resolved once: the common path does no label lookup.
	ok           prometheus.Counter
	dur, over    [2]prometheus.Observer // by stream
	modelMetrics map[string]*modelMetrics
}

type modelMetrics struct {
	in, out, cost prometheus.Counter
	// cache are the prompt-cache token counters: read, 5-minute write,
	// 1-hour write.
	cache [3]prometheus.Counter
}

// latencyBuckets span 1 ms to 60 s: whole LLM answers.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics registers the request metrics on reg. models are the
// configured models; their label children are made up front.
func NewMetrics(reg prometheus.Registerer, models map[string]*Model) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_requests_total",
			Help: "Requests answered, by route template, status class and API error code (empty on success).",
		}, []string{"route", "status_class", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonborn_request_duration_seconds",
			Help:    "Chat requests from receipt to the last byte from upstream (streams: to their end).",
			Buckets: latencyBuckets,
		}, []string{"route", "stream"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonborn_gateway_overhead_seconds",
			Help:    "Time the gateway itself added to a chat request: its duration minus the time spent waiting on the upstream.",
			Buckets: []float64{0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05},
		}, []string{"stream"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moonborn_stream_time_to_first_token_seconds",
			Help:    "Streams: time from receipt to the first delta written to the client.",
			Buckets: latencyBuckets,
		}),
		gap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moonborn_stream_inter_token_gap_seconds",
			Help:    "Streams: time between consecutive deltas written to a client.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moonborn_in_flight_requests",
			Help: "Chat requests being handled, open streams included.",
		}),
		openStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moonborn_open_streams",
			Help: "Streams relaying to a client now.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_tokens_total",
			Help: "Tokens recorded against workspaces, by model, provider and direction (input, output).",
		}, []string{"model", "provider", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_cost_usd_micros_total",
			Help: "Cost recorded against workspaces, in millionths of a US dollar, by model and provider.",
		}, []string{"model", "provider"}),
		cacheTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_cache_tokens_total",
			Help: "Input tokens the upstream's prompt cache served (kind read) or stored (write_5m, write_1h), by model and provider; part of moonborn_tokens_total's input.",
		}, []string{"model", "provider", "kind"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_limit_rejections_total",
			Help: "Requests refused by rate limits or quotas, by reason (requests, tokens, quota_cost, quota_tokens, limiter_unavailable).",
		}, []string{"reason"}),
		unreadables: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonborn_unreadable_requests_total",
			Help: "Requests the server could not read, by reason (headers_too_large, body_too_large, timeout, malformed_headers, malformed_body, malformed).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.duration, m.overhead, m.ttft, m.gap, m.inFlight, m.openStreams, m.tokens, m.cost, m.cacheTokens, m.rejections, m.unreadables)
	m.ok = m.requests.WithLabelValues(routeChat, "2xx", "")
	for i, s := range []string{"false", "true"} {
		m.dur[i] = m.duration.WithLabelValues(routeChat, s)
		m.over[i] = m.overhead.WithLabelValues(s)
	}
	m.modelMetrics = m.forModels(models)
	return m
}

// forModels resolves the per-model children of models (a State's).
func (m *Metrics) forModels(models map[string]*Model) map[string]*modelMetrics {
	if m == nil {
		return nil
	}
	out := make(map[string]*modelMetrics, len(models))
	for id, mod := range models {
		out[id] = &modelMetrics{
			in:   m.tokens.WithLabelValues(id, mod.ProviderName, "input"),
			out:  m.tokens.WithLabelValues(id, mod.ProviderName, "output"),
			cost: m.cost.WithLabelValues(id, mod.ProviderName),
			cache: [3]prometheus.Counter{
				m.cacheTokens.WithLabelValues(id, mod.ProviderName, "read"),
				m.cacheTokens.WithLabelValues(id, mod.ProviderName, "write_5m"),
				m.cacheTokens.WithLabelValues(id, mod.ProviderName, "write_1h"),
			},
		}
	}
	return out
}

// routeChat and routeOther are the route labels: the chat template, and
// everything else (unknown paths never become labels).
const (
	routeChat  = "/v1/personas/{id}/chat"
	routeOther = "other"
)

func statusClass(status int) string {
	switch {
	case status < 200:
		return "1xx"
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	}
	return "5xx"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// answered counts one reply of route.
func (m *Metrics) answered(route string, status int, code string) {
	if m == nil {
		return
	}
	if status < 300 && code == "" && route == routeChat {
		m.ok.Inc()
		return
	}
	m.requests.WithLabelValues(route, statusClass(status), code).Inc()
}

// finished records a chat request's duration, overhead and usage. Usage
// is counted under the model's configured provider label (bounded), not
// the deployment that answered.
func (m *Metrics) finished(x *exchange, total time.Duration, u *providers.Usage, cost int64) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	if x.model == nil {
		return // refused before a model was chosen
	}
	m.dur[b2i(x.stream)].Observe(total.Seconds())
	if o := total - x.upstreamWait; o >= 0 && x.upstreamWait > 0 {
		m.over[b2i(x.stream)].Observe(o.Seconds())
	}
	mm := m.modelMetrics[x.model.ID]
	if x.st != nil {
		mm = x.st.metrics[x.model.ID]
	}
	if mm == nil {
		return
	}
	if u.InputTokens > 0 {
		mm.in.Add(float64(u.InputTokens))
	}
	if u.OutputTokens > 0 {
		mm.out.Add(float64(u.OutputTokens))
	}
	for i, n := range [3]int64{u.CacheReadTokens, u.CacheWrite5mTokens, u.CacheWrite1hTokens} {
		if n > 0 {
			mm.cache[i].Add(float64(n))
		}
	}
	if cost > 0 {
		mm.cost.Add(float64(cost))
	}
}

func (m *Metrics) started() {
	if m != nil {
		m.inFlight.Inc()
	}
}

func (m *Metrics) rejected(reason string) {
	if m != nil {
		m.rejections.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) unreadable(reason string) {
	if m != nil {
		m.unreadables.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) streamOpened() {
	if m != nil {
		m.openStreams.Inc()
	}
}

func (m *Metrics) streamClosed() {
	if m != nil {
		m.openStreams.Dec()
	}
}

func (m *Metrics) firstToken(d time.Duration) {
	if m != nil {
		m.ttft.Observe(d.Seconds())
	}
}

func (m *Metrics) tokenGap(d time.Duration) {
	if m != nil {
		m.gap.Observe(d.Seconds())
	}
}

// ledgerStats is what the ledger collector reads.
type ledgerStats interface{ Stats() ledger.Stats }

// Collectors report, at scrape time, the counters that pools, the persona
// cache, the ledger and the limiter keep themselves. Nil fields are
// skipped.
type Collectors struct {
	Pools []*providers.Pool
	// CurrentPools, when set, is called instead of reading Pools (the
	// pools change on a config reload).
	CurrentPools func() []*providers.Pool
	Personas     *persona.Resolver
	Ledger       ledgerStats
	// RedisUp reports whether the Redis limiter reaches Redis; nil when
	// limits are local.
	RedisUp func() bool
}

var (
	descBreaker  = prometheus.NewDesc("moonborn_upstream_breaker_state", "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.", []string{"model", "deployment"}, nil)
	descUpInFl   = prometheus.NewDesc("moonborn_upstream_in_flight", "Attempts in flight per deployment.", []string{"model", "deployment"}, nil)
	descUpQueued = prometheus.NewDesc("moonborn_upstream_queued", "Attempts waiting for a free upstream connection per deployment (in flight beyond maxConns).", []string{"model", "deployment"}, nil)
	descAttempts = prometheus.NewDesc("moonborn_upstream_attempts_total", "Upstream attempts per deployment by outcome (success, failure, excluded: caller-caused, cancelled, saturated).", []string{"model", "deployment", "outcome"}, nil)
	descFailures = prometheus.NewDesc("moonborn_upstream_failures_total", "Upstream failures per deployment by kind (status, connect, timeout, truncated, protocol, other).", []string{"model", "deployment", "kind"}, nil)
	descRetries  = prometheus.NewDesc("moonborn_upstream_retries_total", "Attempts started because the previous attempt of the request failed.", []string{"model"}, nil)
	descFailover = prometheus.NewDesc("moonborn_upstream_failovers_total", "Retries that moved to another deployment.", []string{"model"}, nil)
	descHedges   = prometheus.NewDesc("moonborn_upstream_hedges_total", "Hedged attempts by result (started, won, lost).", []string{"model", "result"}, nil)
	descCacheReq = prometheus.NewDesc("moonborn_persona_cache_requests_total", "Persona lookups by result (hit, miss, negative_hit).", []string{"result"}, nil)
	descOrigin   = prometheus.NewDesc("moonborn_persona_origin_calls_total", "Calls made to the persona source.", nil, nil)
	descOriginE  = prometheus.NewDesc("moonborn_persona_origin_errors_total", "Persona source calls that failed (not found excluded).", nil, nil)
	descStale    = prometheus.NewDesc("moonborn_persona_stale_served_total", "Lookups answered with a stale persona while the origin failed.", nil, nil)
	descLQueue   = prometheus.NewDesc("moonborn_ledger_queue_depth", "Usage records waiting for the ledger writer.", nil, nil)
	descLWritten = prometheus.NewDesc("moonborn_ledger_records_written_total", "Usage records stored.", nil, nil)
	descLBatches = prometheus.NewDesc("moonborn_ledger_batches_total", "Batches committed to the ledger store.", nil, nil)
	descLBatchS  = prometheus.NewDesc("moonborn_ledger_batch_seconds_total", "Time spent writing batches (mean = rate of this / rate of batches).", nil, nil)
	descLWErr    = prometheus.NewDesc("moonborn_ledger_write_errors_total", "Usage records lost to write errors (store and spool both failed).", nil, nil)
	descLSErr    = prometheus.NewDesc("moonborn_ledger_store_errors_total", "Failed batch writes to the store (their records were spooled).", nil, nil)
	descLSpool   = prometheus.NewDesc("moonborn_ledger_spooled_records_total", "Usage records written to the local spool while the store was down.", nil, nil)
	descLRedel   = prometheus.NewDesc("moonborn_ledger_redelivered_records_total", "Spooled usage records later delivered to the store.", nil, nil)
	descLFull    = prometheus.NewDesc("moonborn_ledger_queue_full_waits_total", "Requests that waited because the ledger queue was full.", nil, nil)
	descRedisUp  = prometheus.NewDesc("moonborn_limiter_redis_up", "1 while the rate limiter reaches Redis.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBreaker, descUpInFl, descUpQueued, descAttempts, descFailures, descRetries, descFailover, descHedges, descCacheReq, descOrigin, descOriginE, descStale,
		descLQueue, descLWritten, descLBatches, descLBatchS, descLWErr, descLSErr, descLSpool, descLRedel, descLFull, descRedisUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collectors) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	pools := c.Pools
	if c.CurrentPools != nil {
		pools = c.CurrentPools()
	}
	for _, p := range pools {
		snap := p.Snapshot(now)
		for _, d := range snap.Deployments {
			state := 0.0
			switch d.Breaker {
			case "half-open":
				state = 1
			case "open":
				state = 2
			}
			ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, state, snap.Model, d.Name)
			ch <- prometheus.MustNewConstMetric(descUpInFl, prometheus.GaugeValue, float64(d.InFlight), snap.Model, d.Name)
			ch <- prometheus.MustNewConstMetric(descUpQueued, prometheus.GaugeValue, float64(d.Queued), snap.Model, d.Name)
			f, e := d.Failures, d.Excluded
			failed := f.Status + f.Connect + f.Timeout + f.Truncated + f.Protocol + f.Other
			counter(ch, descAttempts, d.Successes, snap.Model, d.Name, "success")
			counter(ch, descAttempts, failed, snap.Model, d.Name, "failure")
			counter(ch, descAttempts, e.Aborted+e.Saturated+e.Unavailable+e.ClientStatus, snap.Model, d.Name, "excluded")
			for _, k := range []struct {
				kind string
				n    int64
			}{{"status", f.Status}, {"connect", f.Connect}, {"timeout", f.Timeout}, {"truncated", f.Truncated}, {"protocol", f.Protocol}, {"other", f.Other}} {
				counter(ch, descFailures, k.n, snap.Model, d.Name, k.kind)
			}
		}
		counter(ch, descRetries, snap.Retries, snap.Model)
		counter(ch, descFailover, snap.Failovers, snap.Model)
		counter(ch, descHedges, snap.HedgesStarted, snap.Model, "started")
		counter(ch, descHedges, snap.HedgesWon, snap.Model, "won")
		counter(ch, descHedges, snap.HedgesLost, snap.Model, "lost")
	}
	if c.Personas != nil {
		st := c.Personas.Stats()
		ch <- prometheus.MustNewConstMetric(descCacheReq, prometheus.CounterValue, float64(st.Hits), "hit")
		ch <- prometheus.MustNewConstMetric(descCacheReq, prometheus.CounterValue, float64(st.Misses), "miss")
		ch <- prometheus.MustNewConstMetric(descCacheReq, prometheus.CounterValue, float64(st.NegativeHits), "negative_hit")
		ch <- prometheus.MustNewConstMetric(descOrigin, prometheus.CounterValue, float64(st.OriginCalls))
		ch <- prometheus.MustNewConstMetric(descOriginE, prometheus.CounterValue, float64(st.OriginErrors))
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(st.StaleServed))
	}
	if c.Ledger != nil {
		st := c.Ledger.Stats()
		ch <- prometheus.MustNewConstMetric(descLQueue, prometheus.GaugeValue, float64(st.QueueDepth))
		ch <- prometheus.MustNewConstMetric(descLWritten, prometheus.CounterValue, float64(st.Written))
		ch <- prometheus.MustNewConstMetric(descLBatches, prometheus.CounterValue, float64(st.Batches))
		ch <- prometheus.MustNewConstMetric(descLBatchS, prometheus.CounterValue, st.BatchLatency.Seconds())
		ch <- prometheus.MustNewConstMetric(descLWErr, prometheus.CounterValue, float64(st.WriteErrors))
		ch <- prometheus.MustNewConstMetric(descLSErr, prometheus.CounterValue, float64(st.StoreErrors))
		ch <- prometheus.MustNewConstMetric(descLSpool, prometheus.CounterValue, float64(st.Spooled))
		ch <- prometheus.MustNewConstMetric(descLRedel, prometheus.CounterValue, float64(st.Redelivered))
		ch <- prometheus.MustNewConstMetric(descLFull, prometheus.CounterValue, float64(st.WaitedFull))
	}
	if c.RedisUp != nil {
		up := 0.0
		if c.RedisUp() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descRedisUp, prometheus.GaugeValue, up)
	}
}

func counter[N int64 | uint64](ch chan<- prometheus.Metric, d *prometheus.Desc, n N, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), labels...)
}
