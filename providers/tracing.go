package providers

import (
	"context"
	"errors"
	"io"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
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
	attrRequestModel = attribute.Key("gen_ai.request.model")
	attrInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	attrOutputTokens = attribute.Key("gen_ai.usage.output_tokens")
	attrFinish       = attribute.Key("gen_ai.response.finish_reasons")
	attrErrorType    = attribute.Key("error.type")
	attrHTTPStatus   = attribute.Key("http.response.status_code")
	attrDeployment   = attribute.Key("moonborn.deployment")
	attrAttempt      = attribute.Key("moonborn.attempt")
	attrHedge        = attribute.Key("moonborn.hedge")
	attrOutcome      = attribute.Key("moonborn.outcome")
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

// errLostRace marks, for its span only, a hedge attempt that ended
// because another attempt won.
var errLostRace = errors.New("lost the hedge race")

// startAttempt starts the client span of attempt n (0 for the first try)
// on d, a child of ctx's span; it returns ctx unchanged and a nil span
// when the pool has no Tracer or ctx carries no span.
func (p *Pool) startAttempt(ctx context.Context, d *Deployment, r *Request, n int, hedge bool) (context.Context, trace.Span) {
	if p.Tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	ctx, sp := p.Tracer.Start(ctx, d.spanName(r), trace.WithSpanKind(trace.SpanKindClient))
	if !sp.IsRecording() {
		return ctx, sp
	}
	// Few attributes (at most eight on success), for the reason given at
	// the gateway's endSpan.
	attrs := [6]attribute.KeyValue{
		attrOperation.String("chat"),
		attrProviderName.String(d.system),
		attrRequestModel.String(r.Model),
		attrDeployment.String(d.name),
		attrAttempt.Int(n),
	}
	k := 5
	if hedge {
		attrs[k] = attrHedge.Bool(true)
		k++
	}
	sp.SetAttributes(attrs[:k]...)
	return ctx, sp
}

// spanName is the attempt span's name in the conventions' form,
// "chat {model}", made once per deployment when its model is fixed.
func (d *Deployment) spanName(r *Request) string {
	if d.model != "" {
		return d.chatName
	}
	return "chat " + r.Model
}

// endAttempt ends an attempt span (nil: none) with the attempt's outcome:
// err nil or io.EOF is success, with the usage and finish reason the
// attempt reported; ErrAborted (a lost hedge, a client that left) is no
// failure of the upstream.
func endAttempt(sp trace.Span, u Usage, finish string, err error) {
	if sp == nil {
		return
	}
	if !sp.IsRecording() {
		sp.End()
		return
	}
	var attrs [3]attribute.KeyValue
	k := 0
	switch {
	case err == nil || err == io.EOF:
		attrs[0] = attrInputTokens.Int64(u.InputTokens)
		attrs[1] = attrOutputTokens.Int64(u.OutputTokens)
		k = 2
		if finish != "" {
			attrs[k] = FinishReasonAttr(finish)
			k++
		}
	case err == errLostRace:
		attrs[0] = attrOutcome.String("lost")
		k = 1
	case errors.Is(err, ErrAborted):
		attrs[0] = attrOutcome.String("aborted")
		k = 1
	default:
		var ue *UpstreamError
		kind := "error"
		if errors.As(err, &ue) {
			kind = ue.Kind.String()
			if ue.Status != 0 {
				attrs[k] = attrHTTPStatus.Int(ue.Status)
				k++
			}
		}
		attrs[k] = attrErrorType.String(kind)
		k++
		sp.SetStatus(codes.Error, kind)
	}
	sp.SetAttributes(attrs[:k]...)
	sp.End()
}

// endStreamAttempt ends a stream attempt's span with the stream's usage
// and finish reason.
func endStreamAttempt(sp trace.Span, st Stream, err error) {
	if sp == nil {
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
	endAttempt(sp, u, finish, err)
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
