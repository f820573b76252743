package gateway

// The exchange: one chat request from resolution to its end.

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// exchange is what one chat request resolved to before the upstream call.
// Once the upstream call starts it is read-only, so DiscardedUsage may
// read it from another goroutine.
type exchange struct {
	s *Server
	// st is the State the request started on; it keeps it to the end.
	st        *State
	start     time.Time
	requestID string
	principal policy.Principal
	personaID string
	model     *Model
	req       providers.Request
	stream    bool
	// deployment names who answered, when the provider says (a Pool).
	deployment string
	// admitted holds the limiter's reservation once admitted; settled
	// exactly once, with the real usage, when the request is recorded.
	decision policy.Decision
	admitted bool
	// upstreamWait is the time spent blocked on the upstream, for the
	// overhead metric.
	upstreamWait time.Duration
	discarded    atomic.Int32 // discarded attempts recorded so far

	// ctx is the request's own context from the upstream call on, passed
	// to every attempt: its deadline is server.requestTimeout
	// (server.maxStreamDuration for a stream), and it is cancelled when
	// the client leaves and when the request ends (finish). It is the one
	// owner of the request's time: whoever ends it, every upstream
	// connection of the request closes.
	ctx    context.Context
	cancel context.CancelFunc
	// gone is set by the client-gone watcher when the client closed or
	// reset its connection; watch is that registration (0: none).
	gone  atomic.Bool
	watch uint64

	// route is the metrics label of an SDK-compatible route; empty on the
	// persona route. api shapes its replies; nil on the persona route.
	route string
	api   *sdkAPI

	// personaBreak backs x.req.SystemCache when the persona's prompt is
	// its only breakpoint, so marking it costs no allocation.
	personaBreak [1]providers.CacheBreak

	// span is the request's server span; nil without tracing. output is
	// the reply's text it records with TraceContent (tracing.go).
	span   trace.Span
	output string
}

// clientLeft runs on the client-gone watcher's goroutine.
func (x *exchange) clientLeft() {
	x.gone.Store(true)
	x.cancel()
}

// beginUpstream gives the exchange its context and watches the client's
// connection, which from here until finish nobody reads: fasthttp reads
// the next request only after the handler returns, and a stream's relay
// never reads.
func (s *Server) beginUpstream(ctx *fasthttp.RequestCtx, x *exchange) {
	limit := s.opts.RequestTimeout
	if x.stream {
		limit = s.opts.MaxStreamDuration
	}
	base := context.Background()
	if s.opts.Tracer != nil {
		base = s.startSpan(ctx, x)
	}
	x.ctx, x.cancel = context.WithTimeout(base, limit)
	x.watch = s.gone.watch(ctx.Conn(), x.clientLeft)
}

// DiscardedUsage implements providers.UsageObserver: an attempt that
// consumed upstream tokens but never reached the client (a losing hedge,
// a failure before the first delta) is still recorded, under a derived
// request id so the ledger's one-row-per-id rule keeps both.
func (x *exchange) DiscardedUsage(deployment string, u providers.Usage) {
	if u.InputTokens == 0 && u.OutputTokens == 0 {
		return
	}
	n := x.discarded.Add(1)
	r := x.s.usageRecord(x, deployment, u, costOf(x.model, u), 0, "discarded_attempt", x.s.now())
	r.RequestID = x.requestID + ".d" + strconv.Itoa(int(n))
	x.s.opts.Ledger.Record(r)
}

// callUpstream serves an admitted exchange: the relay for a stream,
// else the reply in its route's shape (the persona route's, or its SDK's).
func (s *Server) callUpstream(ctx *fasthttp.RequestCtx, x *exchange) {
	s.beginUpstream(ctx, x)
	switch {
	case x.stream:
		s.startStream(ctx, x)
	case x.api != nil:
		s.completeSDK(ctx, x)
	default:
		s.complete(ctx, x)
	}
}

// refuse ends a request refused before the upstream call (credentials,
// body, persona, model, limits): the error reply in the route's shape,
// the span, and finish with no usage.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, x *exchange, err error) {
	ae := toAPIError(err)
	x.writeError(ctx, ae)
	s.traceRefused(ctx, x)
	s.finish(x, providers.Usage{}, ae.status, ae.code, s.now())
}

// fail ends an exchange that failed before anything was streamed: the
// error reply (unless the client left, which is all it gets told), the
// log line for upstream failures, and finish with the one mapping of err.
func (s *Server) fail(ctx *fasthttp.RequestCtx, x *exchange, u providers.Usage, err error, end time.Time) {
	if x.gone.Load() {
		err = errClientGone
	}
	ae := toAPIError(err)
	if ae.upstream {
		s.logUpstream(x, err)
	}
	x.writeError(ctx, ae)
	s.finish(x, u, ae.status, ae.code, end)
}

func (s *Server) logUpstream(x *exchange, err error) {
	s.log.Warn("upstream failed", "request_id", x.requestID, "model", x.model.ID,
		"provider", x.model.ProviderName, "err", err.Error())
}

// costOf prices u at m's prices, each kind of token at its own.
func costOf(m *Model, u providers.Usage) int64 {
	return m.Prices.Cost(policy.Tokens{
		Input:        u.Uncached(),
		Output:       u.OutputTokens,
		CacheRead:    u.CacheReadTokens,
		CacheWrite5m: u.CacheWrite5mTokens,
		CacheWrite1h: u.CacheWrite1hTokens,
	})
}
