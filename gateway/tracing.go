package gateway

import (
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/internal/spanattr"
	"github.com/moonborn/edge/providers"
)

// Tracing. With Options.Tracer set, every chat request — answered,
// failed, or refused before any upstream call (401, 400, 404, 429) — gets
// one server span, a child of the caller's W3C traceparent when it sent
// one. Its context is the request's (exchange.ctx), so the pool's attempt
// spans are its children and the upstreams get a traceparent naming
// them. The span starts at the request's start and ends in finish; its
// attributes are set once, at the end, in one call (one lock, one slice).
// Without a Tracer none of this runs: exchange.span stays nil.
//
// Attributes never carry prompts, completions, keys or tokens: only with
// Options.TraceContent are the request's messages and a non-streaming
// reply's text added (gen_ai.input.messages, gen_ai.output.messages).

// Attribute keys of the GenAI and HTTP semantic conventions and ours.
const (
	attrRequestModel = spanattr.RequestModel
	attrInputTokens  = spanattr.InputTokens
	attrOutputTokens = spanattr.OutputTokens
	attrCacheRead    = spanattr.CacheRead
	attrInputMsgs    = attribute.Key("gen_ai.input.messages")
	attrOutputMsgs   = attribute.Key("gen_ai.output.messages")
	attrStatus       = spanattr.HTTPStatus
	attrRequestID    = attribute.Key("moonborn.request_id")
	attrWorkspace    = attribute.Key("moonborn.workspace")
	attrPersona      = attribute.Key("moonborn.persona")
	attrStream       = attribute.Key("moonborn.stream")
	attrOutcome      = spanattr.Outcome
	attrErrorCode    = attribute.Key("moonborn.error_code")
)

// serverKind is the option of every server span, made once (an option
// built per call is an allocation).
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// Span names: the HTTP server convention's "{method} {route}", constant
// so no name is built per request.
var spanNames = map[string]string{
	routeChat:        "POST " + routeChat,
	routeOpenAIChat:  "POST " + routeOpenAIChat,
	routeAnthropicMs: "POST " + routeAnthropicMs,
}

// startSpan starts x's server span, a child of the caller's traceparent
// when it sent a valid one, and returns the context carrying it. Called
// once per request, where its upstream work begins (beginUpstream) or,
// for a refusal, before finish (traceRefused).
func (s *Server) startSpan(ctx *fasthttp.RequestCtx, x *exchange) context.Context {
	parent := context.Background()
	if sc, ok := parseTraceparent(ctx.Request.Header.Peek("traceparent")); ok {
		if ts := ctx.Request.Header.Peek("tracestate"); len(ts) > 0 {
			if state, err := trace.ParseTraceState(string(ts)); err == nil {
				sc = sc.WithTraceState(state)
			}
		}
		parent = trace.ContextWithRemoteSpanContext(parent, sc)
	}
	route := x.route
	if route == "" {
		route = routeChat
	}
	c, sp := s.opts.Tracer.Start(parent, spanNames[route],
		serverKind, trace.WithTimestamp(x.start))
	x.span = sp
	return c
}

// traceRefused gives a request refused before its upstream call its
// span, so every request has one with its outcome.
func (s *Server) traceRefused(ctx *fasthttp.RequestCtx, x *exchange) {
	if s.opts.Tracer != nil && x.span == nil {
		s.startSpan(ctx, x)
	}
}

// noteResult keeps a non-streaming reply's text for the span when
// content is recorded (TraceContent).
func (x *exchange) noteResult(res *providers.Result) {
	if x.span != nil && x.s.opts.TraceContent {
		x.output = res.Content
	}
}

// endSpan sets the span's attributes, in one call from a pooled buffer
// (spanattr), and ends it. They are few on purpose (eight on an ordinary
// success): each is encoded for export on every request, and what the
// attempt spans say (deployment, provider, finish reason, the upstream
// model) is not repeated here.
func (s *Server) endSpan(x *exchange, u providers.Usage, status int, code string) {
	sp := x.span
	if !sp.IsRecording() {
		sp.End()
		return
	}
	buf := spanattr.Get()
	defer buf.Release()
	attrs := append(buf.KV,
		attrStatus.Int(status),
		attrRequestID.String(x.requestID),
		attrOutcome.String(outcomeOf(status, code)),
	)
	if x.principal.Workspace != "" {
		attrs = append(attrs, attrWorkspace.String(x.principal.Workspace))
	}
	if x.personaID != "" {
		attrs = append(attrs, attrPersona.String(x.personaID))
	}
	if x.model != nil {
		attrs = append(attrs, attrRequestModel.String(x.model.ID))
		if x.stream {
			attrs = append(attrs, attrStream.Bool(true))
		}
	}
	if x.ctx != nil { // the upstream was called
		attrs = append(attrs, attrInputTokens.Int64(u.InputTokens), attrOutputTokens.Int64(u.OutputTokens))
		if u.CacheReadTokens > 0 { // a prompt-cache hit
			attrs = append(attrs, attrCacheRead.Int64(u.CacheReadTokens))
		}
	}
	if code != "" {
		attrs = append(attrs, attrErrorCode.String(code))
	}
	if status >= 500 {
		sp.SetStatus(codes.Error, code)
	}
	if s.opts.TraceContent && x.model != nil {
		attrs = append(attrs, attrInputMsgs.String(string(appendInputMessages(nil, &x.req))))
		if x.output != "" {
			attrs = append(attrs, attrOutputMsgs.String(string(appendOutputMessage(nil, x.output))))
		}
	}
	sp.SetAttributes(attrs...)
	buf.KV = attrs
	sp.End()
}

// outcomeOf names how a request ended for moonborn.outcome: ok, refused
// (4xx before any upstream answer: credentials, validation, limits),
// client_closed, or error (5xx, or an error after the stream began).
func outcomeOf(status int, code string) string {
	switch {
	case status == statusClientClosed:
		return "client_closed"
	case status < 300 && code == "":
		return "ok"
	case status >= 400 && status < 500:
		return "refused"
	}
	return "error"
}

// traceIDOf is the trace id for the access log; empty without a span or
// when the trace was not sampled (no trace to look up).
func (x *exchange) traceIDOf() string {
	if x.span == nil {
		return ""
	}
	if sc := x.span.SpanContext(); sc.IsSampled() {
		return sc.TraceID().String()
	}
	return ""
}

// parseTraceparent reads a W3C traceparent header: version-trace id-
// parent id-flags in lowercase hex. A future version (not ff) is read by
// its first four fields, as the spec asks; anything malformed, or an
// all-zero id, is ignored (the request starts a trace of its own).
func parseTraceparent(h []byte) (trace.SpanContext, bool) {
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return trace.SpanContext{}, false
	}
	ver, ok := hexByte(h[0], h[1])
	if !ok || ver == 0xff || (ver == 0 && len(h) != 55) || (len(h) > 55 && h[55] != '-') {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	for i := range tid {
		if tid[i], ok = hexByte(h[3+2*i], h[4+2*i]); !ok {
			return trace.SpanContext{}, false
		}
	}
	for i := range sid {
		if sid[i], ok = hexByte(h[36+2*i], h[37+2*i]); !ok {
			return trace.SpanContext{}, false
		}
	}
	flags, ok := hexByte(h[53], h[54])
	if !ok {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags) & trace.FlagsSampled, Remote: true,
	})
	return sc, sc.IsValid()
}

func hexByte(a, b byte) (byte, bool) {
	hi, ok1 := hexVal(a)
	lo, ok2 := hexVal(b)
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// appendInputMessages renders the request's messages as the conventions'
// gen_ai.input.messages JSON: [{"role":…,"parts":[{"type":"text","content":…}]}].
// Only for TraceContent.
func appendInputMessages(dst []byte, r *providers.Request) []byte {
	dst = append(dst, '[')
	n := 0
	msg := func(role, text string) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, `{"role":"`...)
		dst = append(dst, role...)
		dst = append(dst, `","parts":[{"type":"text","content":`...)
		dst = jsonx.AppendString(dst, text)
		dst = append(dst, `}]}`...)
	}
	if r.System != "" {
		msg("system", r.System)
	}
	if len(r.Messages) == 0 {
		msg("user", r.UserText)
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		role := "user"
		switch m.Role {
		case providers.RoleSystem:
			role = "system"
		case providers.RoleAssistant:
			role = "assistant"
		case providers.RoleTool:
			role = "tool"
		}
		msg(role, m.Text)
	}
	return append(dst, ']')
}

// appendOutputMessage renders a reply's text as gen_ai.output.messages.
func appendOutputMessage(dst []byte, text string) []byte {
	dst = append(dst, `[{"role":"assistant","parts":[{"type":"text","content":`...)
	dst = jsonx.AppendString(dst, text)
	return append(dst, `}]}]`...)
}
