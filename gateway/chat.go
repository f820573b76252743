package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// memoryDigestHeader introduces a caller's memoryDigest inside the system
// prompt. The form is documented in the README; changing it changes what
// every persona sees.
const (
	memoryDigestOpen  = "\n\n<memory_digest>\n"
	memoryDigestClose = "\n</memory_digest>"
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

// serveChat handles POST /v1/personas/{id}/chat. Order: body size (done
// by fasthttp before the body is read), credentials, body, persona, model.
// Credentials come before the body so an anonymous caller learns nothing
// about validation rules or which personas exist.
func (s *Server) serveChat(ctx *fasthttp.RequestCtx) {
	start := s.now()
	s.opts.Metrics.started()
	x, err := s.prepare(ctx, start)
	if err != nil {
		ae := toAPIError(err)
		writeError(ctx, ae)
		if x == nil { // unauthenticated: no workspace to record against
			x = &exchange{start: start, requestID: string(ctx.Response.Header.Peek("X-Request-Id"))}
		}
		s.traceRefused(ctx, x)
		s.finish(x, providers.Usage{}, ae.status, ae.code, s.now())
		return
	}
	s.beginUpstream(ctx, x)
	if x.stream {
		s.startStream(ctx, x)
		return
	}
	s.complete(ctx, x)
}

// prepare authenticates, decodes and resolves. It returns the exchange
// once the caller is known, so refusals after authentication can be
// recorded against the workspace.
func (s *Server) prepare(ctx *fasthttp.RequestCtx, start time.Time) (*exchange, error) {
	token, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		return nil, unauthenticatedError("missing or malformed Authorization header; expected Bearer token")
	}
	st := s.State()
	principal, err := st.Auth.Authenticate(token, start)
	if err != nil {
		return nil, err
	}
	id, _ := ctx.UserValue("id").(string)
	x := &exchange{
		s:         s,
		st:        st,
		start:     start,
		requestID: string(ctx.Response.Header.Peek("X-Request-Id")),
		principal: principal,
		personaID: id,
	}
	body, ae := decodeChatRequest(ctx.Request.Body())
	if ae != nil {
		return x, ae
	}
	if !persona.ValidID(id) {
		return x, personaNotFound(id)
	}
	p, err := st.Personas.Resolve(context.Background(), principal.Workspace, id, start)
	if err != nil {
		if errors.Is(err, persona.ErrNotFound) {
			return x, personaNotFound(id)
		}
		return x, err
	}
	if err := s.resolveModel(x, p, &body); err != nil {
		return x, err
	}
	return x, s.admit(ctx, x)
}

// admit reserves the request's worst case (estimated input plus the
// output cap) against the caller's buckets and quota, and sets the
// X-RateLimit-* headers every later reply carries.
func (s *Server) admit(ctx *fasthttp.RequestCtx, x *exchange) error {
	if s.opts.Limiter == nil {
		return nil
	}
	reserve := providers.EstimateInputTokens(&x.req) + int64(x.req.MaxOutputTokens)
	d, err := s.opts.Limiter.Admit(context.Background(),
		policy.LimitKey{Workspace: x.principal.Workspace, CredentialID: x.principal.CredentialID, Own: x.principal.Limits}, reserve, x.start)
	if err != nil {
		if errors.Is(err, policy.ErrLimiterUnavailable) {
			s.opts.Metrics.rejected("limiter_unavailable")
		}
		return err
	}
	setRateLimitHeaders(&ctx.Response.Header, &d)
	if !d.Allowed {
		s.opts.Metrics.rejected(reasonLabel(d.Reason))
		return refusal(&d)
	}
	x.decision, x.admitted = d, true
	return nil
}

// resolveModel picks the model and fills the upstream request: explicit
// values, then the persona's defaults, then the model's.
func (s *Server) resolveModel(x *exchange, p *persona.Persona, body *chatRequest) *apiError {
	var m *Model
	if body.HasModelID {
		m = x.st.Models[string(body.ModelID)] // no allocation: the conversion is only a map key
		if m == nil {
			return validationError("modelId", "unknown model "+strconv.Quote(string(body.ModelID)))
		}
		if len(p.AllowedModels) > 0 && !contains(p.AllowedModels, m.ID) {
			return validationError("modelId", "model "+strconv.Quote(m.ID)+" is not allowed for this persona")
		}
	} else if m = x.st.Models[p.DefaultModel]; m == nil {
		return validationError("modelId", "the persona's default model "+strconv.Quote(p.DefaultModel)+" is not served; name a model")
	}
	x.model = m
	x.stream = body.Stream

	req := &x.req
	req.Observer = x
	req.Model = m.UpstreamModel
	req.UserText = body.UserText
	// The digest goes after the persona's prompt, behind its cache
	// breakpoint: the cached prefix stays the same whatever the digest.
	req.System = p.SystemPrompt
	if d := body.MemoryDigest; d != "" {
		req.System = p.SystemPrompt + memoryDigestOpen + d + memoryDigestClose
	}
	cachePersona(x, p, len(p.SystemPrompt))
	switch {
	case body.HasTemperature:
		req.Temperature, req.HasTemperature = body.Temperature, true
	case p.Temperature != nil:
		req.Temperature, req.HasTemperature = *p.Temperature, true
	case m.Temperature != nil:
		req.Temperature, req.HasTemperature = *m.Temperature, true
	}
	switch {
	case body.HasMaxOutputTokens:
		if body.MaxOutputTokens > float64(m.MaxOutputTokens) {
			return validationError("maxOutputTokens", "must be at most "+strconv.Itoa(m.MaxOutputTokens)+" for model "+m.ID)
		}
		req.MaxOutputTokens = int(body.MaxOutputTokens)
	case p.MaxOutputTokens > 0:
		req.MaxOutputTokens = min(p.MaxOutputTokens, m.MaxOutputTokens)
	default:
		req.MaxOutputTokens = m.MaxOutputTokens
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// bearerToken extracts the token of "Bearer <token>" (scheme case-insensitive).
func bearerToken(h []byte) ([]byte, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil, false
	}
	tok := bytes.TrimSpace(h[len(scheme):])
	return tok, len(tok) > 0
}

// complete serves a non-streaming request.
func (s *Server) complete(ctx *fasthttp.RequestCtx, x *exchange) {
	callStart := s.now()
	res, err := x.model.Provider.Complete(x.ctx, &x.req)
	end := s.now()
	x.upstreamWait = end.Sub(callStart)
	x.deployment = res.Deployment
	if err != nil {
		s.fail(ctx, x, providers.Usage{}, err, end)
		return
	}
	cost := costOf(x.model, res.Usage)
	latency := end.Sub(x.start).Milliseconds()
	x.noteResult(&res)

	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.SetContentType("application/json")
	buf := ctx.Response.Body()[:0]
	buf = append(buf, `{"content":`...)
	buf = jsonx.AppendString(buf, res.Content)
	buf = appendUsageFields(buf, res.Usage, cost, x.model.ID, latency)
	buf = append(buf, '}')
	ctx.Response.SetBodyRaw(buf)
	s.finish(x, res.Usage, http.StatusOK, "", end)
}

// appendUsageFields appends the fields shared by the 200 body and the
// stream's done event: ,"inputTokens":…,"latencyMs":….
func appendUsageFields(dst []byte, u providers.Usage, cost int64, model string, latencyMs int64) []byte {
	dst = append(dst, `,"inputTokens":`...)
	dst = strconv.AppendInt(dst, u.InputTokens, 10)
	dst = append(dst, `,"outputTokens":`...)
	dst = strconv.AppendInt(dst, u.OutputTokens, 10)
	dst = append(dst, `,"costUsdMicros":`...)
	dst = strconv.AppendInt(dst, cost, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonx.AppendString(dst, model)
	dst = append(dst, `,"latencyMs":`...)
	return strconv.AppendInt(dst, latencyMs, 10)
}

// finish is the one place a chat request ends, whatever ended it: metrics,
// the access log and, for an authenticated caller (one with a workspace),
// limiter settlement and the ledger. Called exactly once per request.
func (s *Server) finish(x *exchange, u providers.Usage, status int, code string, end time.Time) {
	if x.cancel != nil {
		// Unwatch before the connection can be closed or serve another
		// request (see goneWatcher); cancel releases the context's timer.
		s.gone.unwatch(x.watch)
		x.cancel()
	}
	var cost int64
	if x.model != nil {
		cost = costOf(x.model, u)
	}
	total := end.Sub(x.start)
	route := routeChat
	if x.route != "" {
		route = x.route
	}
	s.opts.Metrics.answered(route, status, code)
	s.opts.Metrics.finished(x, total, &u, cost)
	if s.opts.AccessLog {
		s.accessLog(x, u, cost, status, code, total)
	}
	if x.span != nil {
		s.endSpan(x, u, status, code)
	}
	if x.principal.Workspace == "" {
		return
	}
	if x.admitted {
		x.admitted = false
		if err := s.opts.Limiter.Settle(context.Background(), x.decision.Reservation,
			u.InputTokens+u.OutputTokens, cost, end); err != nil {
			s.log.Warn("limiter settle failed", "request_id", x.requestID, "err", err.Error())
		}
	}
	s.opts.Ledger.Record(s.usageRecord(x, x.deployment, u, cost, status, code, end))
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

// usageRecord is the ledger line of an exchange answered by deployment
// (empty: the model's provider). It reads only what is fixed once the
// upstream call started, so a losing hedge's goroutine may call it while
// the handler goes on.
func (s *Server) usageRecord(x *exchange, deployment string, u providers.Usage, cost int64, status int, code string, end time.Time) ledger.UsageRecord {
	r := ledger.UsageRecord{
		RequestID:          x.requestID,
		Time:               x.start,
		Workspace:          x.principal.Workspace,
		CredentialID:       x.principal.CredentialID,
		Persona:            x.personaID,
		Stream:             x.stream,
		InputTokens:        u.InputTokens,
		OutputTokens:       u.OutputTokens,
		CacheReadTokens:    u.CacheReadTokens,
		CacheWrite5mTokens: u.CacheWrite5mTokens,
		CacheWrite1hTokens: u.CacheWrite1hTokens,
		Estimated:          u.Estimated,
		CostUsdMicros:      cost,
		LatencyMs:          end.Sub(x.start).Milliseconds(),
		Status:             status,
		ErrorCode:          code,
		Route:              x.route,
	}
	if x.model != nil {
		if u.CacheReadTokens != 0 || u.CacheWriteTokens() != 0 {
			// Against the same tokens all at the input price.
			r.CacheSavingsUsdMicros = x.model.Prices.Cost(policy.Tokens{Input: u.InputTokens, Output: u.OutputTokens}) - cost
		}
		r.Model = x.model.ID
		r.Provider = x.model.ProviderName
		if deployment != "" {
			r.Provider = deployment
		}
	}
	return r
}

func (s *Server) logUpstream(x *exchange, err error) {
	s.log.Warn("upstream failed", "request_id", x.requestID, "model", x.model.ID,
		"provider", x.model.ProviderName, "err", err.Error())
}

// startStream serves stream: true. Nothing is written until the first
// delta arrives, so every earlier failure is an ordinary JSON error. Once
// a delta is in hand the relay takes ownership of the upstream stream.
func (s *Server) startStream(ctx *fasthttp.RequestCtx, x *exchange) {
	callStart := s.now()
	st, err := x.model.Provider.Stream(x.ctx, &x.req)
	if err != nil {
		x.upstreamWait = s.now().Sub(callStart)
		s.fail(ctx, x, providers.Usage{}, err, s.now())
		return
	}
	first, err := st.Next()
	x.upstreamWait = s.now().Sub(callStart)
	if err != nil && err != io.EOF {
		u := st.Usage()
		st.Close()
		s.fail(ctx, x, u, err, s.now())
		return
	}
	if sv, ok := st.(providers.Served); ok {
		x.deployment = sv.Deployment()
	}
	r := newRelay(s, x, st, first, err == io.EOF)
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.Header.SetContentLength(-1) // chunked
	r.head = append(r.head, ctx.Response.Header.Header()...)
	s.mu.Lock()
	s.streams[r] = struct{}{}
	s.relays.Add(1)
	s.mu.Unlock()
	// The relay writes the response itself on the hijacked connection:
	// one goroutine per stream and a write per burst of events, instead of
	// fasthttp's stream writer, which adds a goroutine and an in-memory
	// pipe that copies every event twice more. After a complete stream
	// the relay serves the connection's next requests (keep-alive). It
	// runs on a reused worker goroutine (see relayWorkers).
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(r.hijacked)
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

// accessLog writes the request's access line. Credentials never appear:
// the credential id is the key's configured id or the JWT subject.
func (s *Server) accessLog(x *exchange, u providers.Usage, cost int64, status int, code string, total time.Duration) {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	model, deployment := "", x.deployment
	if x.model != nil {
		model = x.model.ID
		if deployment == "" {
			deployment = x.model.ProviderName
		}
	}
	l := s.newAccessLine("request")
	l.str("request_id", x.requestID)
	l.str("workspace", x.principal.Workspace)
	l.str("credential", x.principal.CredentialID)
	l.str("persona", x.personaID)
	l.str("model", model)
	l.str("deployment", deployment)
	l.bool("stream", x.stream)
	l.int("status", int64(status))
	l.str("code", code)
	l.int("input_tokens", u.InputTokens)
	l.int("output_tokens", u.OutputTokens)
	l.int("cache_read_tokens", u.CacheReadTokens)
	l.int("cache_write_tokens", u.CacheWriteTokens())
	l.int("cost_usd_micros", cost)
	l.int("latency_ms", total.Milliseconds())
	l.int("overhead_us", (total - x.upstreamWait).Microseconds())
	l.str("trace_id", x.traceIDOf())
	s.writeAccess(l)
}

// reasonLabel names a refusal reason for the rejections metric.
func reasonLabel(r policy.Reason) string {
	switch r {
	case policy.ReasonRequests:
		return "requests"
	case policy.ReasonTokens:
		return "tokens"
	case policy.ReasonQuotaCost:
		return "quota_cost"
	case policy.ReasonQuotaTokens:
		return "quota_tokens"
	}
	return "other"
}
