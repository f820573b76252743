package providers

import (
	"context"
	"errors"
	"io"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/internal/spanattr"
)

// Tracing of upstream attempts. A Pool with a Tracer starts one client
// span per attempt — the first try, each failover and each hedge — as a
// child of the span in the request's context (the gateway's server span),
// so the attempts of one request are siblings. An attempt span ends with
// its attempt: a failed or losing one when it fails or loses, the winner
// when its stream is closed or its completion returned. Without a span in
// the request's context nothing is started, so tracing off costs a
// context lookup per attempt. UpstreamHTTP sends the attempt span's
// context upstream as a W3C traceparent (and tracestate) header.
//
// Attributes follow OpenTelemetry's GenAI semantic conventions; no prompt,
// completion or credential is ever put on an attempt span.

// Attribute keys of the GenAI semantic conventions and ours.
const (
	attrOperation    = attribute.Key("gen_ai.operation.name")
	attrProviderName = attribute.Key("gen_ai.provider.name")
	attrRequestModel = spanattr.RequestModel
	attrInputTokens  = spanattr.InputTokens
	attrOutputTokens = spanattr.OutputTokens
	attrCacheRead    = spanattr.CacheRead
	attrCacheWrite   = attribute.Key("gen_ai.usage.cache_creation.input_tokens")
	attrFinish       = attribute.Key("gen_ai.response.finish_reasons")
	attrErrorType    = attribute.Key("error.type")
	attrHTTPStatus   = spanattr.HTTPStatus
	attrDeployment   = attribute.Key("moonborn.deployment")
	attrAttempt      = attribute.Key("moonborn.attempt")
	attrHedge        = attribute.Key("moonborn.hedge")
	attrOutcome      = spanattr.Outcome
)

// FinishReasonAttr is the gen_ai.response.finish_reasons attribute of
// reason, built once for the canonical reasons so a span end does not
// allocate the one-element slice.
func FinishReasonAttr(reason string) attribute.KeyValue {
	switch reason {
	case FinishStop:
		return finishStopAttr
	case FinishLength:
		return finishLengthAttr
	case FinishToolCalls:
		return finishToolsAttr
	}
	return attrFinish.StringSlice([]string{reason})
}

var (
	finishStopAttr   = attrFinish.StringSlice([]string{FinishStop})
	finishLengthAttr = attrFinish.StringSlice([]string{FinishLength})
	finishToolsAttr  = attrFinish.StringSlice([]string{FinishToolCalls})
)

// clientKind is the option of every attempt span, made once (an option
// built per call is an allocation).
var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// errLostRace marks, for its span only, a hedge attempt that ended
// because another attempt won.
var errLostRace = errors.New("lost the hedge race")

// attemptSpan is an attempt's span and what its attributes say; all of
// them are set when it ends, in one call (one lock and one slice in the
// SDK). The zero value is no span.
type attemptSpan struct {
	sp    trace.Span
	d     *Deployment
	model string // the upstream model
	n     int
	hedge bool
}

// startAttempt starts the client span of attempt n (0 for the first try)
// on d, a child of ctx's span; it returns ctx unchanged and no span when
// the pool has no Tracer or ctx carries no span.
func (p *Pool) startAttempt(ctx context.Context, d *Deployment, r *Request, n int, hedge bool) (context.Context, attemptSpan) {
	if p.Tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, attemptSpan{}
	}
	ctx, sp := p.Tracer.Start(ctx, d.spanName(r), clientKind)
	return ctx, attemptSpan{sp: sp, d: d, model: r.Model, n: n, hedge: hedge}
}

// spanName is the attempt span's name in the conventions' form,
// "chat {model}", made once per deployment when its model is fixed.
func (d *Deployment) spanName(r *Request) string {
	if d.model != "" {
		return d.chatName
	}
	return "chat " + r.Model
}

// end ends the span (none: nothing) with the attempt's outcome: err nil
// or io.EOF is success, with the usage and finish reason the attempt
// reported; ErrAborted (a client that left) and errLostRace are no
// failure of the upstream. At most eight attributes on success, for the
// reason given at the gateway's endSpan.
func (a attemptSpan) end(u Usage, finish string, err error) {
	sp := a.sp
	if sp == nil {
		return
	}
	if !sp.IsRecording() {
		sp.End()
		return
	}
	buf := spanattr.Get()
	defer buf.Release()
	attrs := append(buf.KV,
		attrOperation.String("chat"),
		attrProviderName.String(a.d.system),
		attrRequestModel.String(a.model),
		attrDeployment.String(a.d.name),
		attrAttempt.Int(a.n),
	)
	if a.hedge {
		attrs = append(attrs, attrHedge.Bool(true))
	}
	switch {
	case err == nil || err == io.EOF:
		attrs = append(attrs, attrInputTokens.Int64(u.InputTokens), attrOutputTokens.Int64(u.OutputTokens))
		// Prompt-cache tokens only when there are some: the ordinary
		// span stays at eight attributes.
		if u.CacheReadTokens > 0 {
			attrs = append(attrs, attrCacheRead.Int64(u.CacheReadTokens))
		}
		if w := u.CacheWrite5mTokens + u.CacheWrite1hTokens; w > 0 {
			attrs = append(attrs, attrCacheWrite.Int64(w))
		}
		if finish != "" {
			attrs = append(attrs, FinishReasonAttr(finish))
		}
	case err == errLostRace:
		attrs = append(attrs, attrOutcome.String("lost"))
	case errors.Is(err, ErrAborted):
		attrs = append(attrs, attrOutcome.String("aborted"))
	default:
		var ue *UpstreamError
		kind := "error"
		if errors.As(err, &ue) {
			kind = ue.Kind.String()
			if ue.Status != 0 {
				attrs = append(attrs, attrHTTPStatus.Int(ue.Status))
			}
		}
		attrs = append(attrs, attrErrorType.String(kind))
		sp.SetStatus(codes.Error, kind)
	}
	sp.SetAttributes(attrs...)
	buf.KV = attrs
	sp.End()
}

// endStream ends a stream attempt's span with the stream's usage and
// finish reason.
func (a attemptSpan) endStream(st Stream, err error) {
	if a.sp == nil {
		return
	}
	var u Usage
	var finish string
	if st != nil {
		u = st.Usage()
		if ts, ok := st.(ToolCallStream); ok {
			finish = ts.FinishReason()
		}
	}
	a.end(u, finish, err)
}

// injectTraceparent sets the W3C traceparent (and tracestate) of ctx's
// span on an upstream request; nothing when ctx carries no span. Written
// by hand rather than through a propagator: no carrier adapter, no
// allocation.
func injectTraceparent(ctx context.Context, req *fasthttp.Request) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	var buf [55]byte
	req.Header.SetBytesV("traceparent", AppendTraceparent(buf[:0], sc))
	if sc.TraceState().Len() > 0 {
		req.Header.Set("tracestate", sc.TraceState().String())
	}
}

// AppendTraceparent appends sc as a version-00 W3C traceparent value:
// 00-{trace id}-{span id}-{flags}.
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	const hexDigits = "0123456789abcdef"
	hex := func(dst []byte, b []byte) []byte {
		for _, c := range b {
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		return dst
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex(dst, tid[:])
	dst = append(dst, '-')
	dst = hex(dst, sid[:])
	dst = append(dst, '-')
	return hex(dst, []byte{byte(sc.TraceFlags())})
}
