package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// The route labels of the SDK-compatible routes (bounded: templates).
const (
	routeOpenAIChat  = "/v1/chat/completions"
	routeModels      = "/v1/models"
	routeAnthropicMs = "/v1/messages"
)

// apiKind names the wire shape an SDK route answers in.
type apiKind uint8

const (
	apiOpenAI apiKind = iota + 1
	apiAnthropic
)

// sdkAPI is the per-request state of an SDK-compatible reply: its shape,
// id and, for streams, the event prefix built once so a relayed delta
// costs no allocation. nil on the persona route.
type sdkAPI struct {
	kind         apiKind
	id           string
	created      int64
	includeUsage bool
	started      bool   // the stream's opening event went out
	textOpen     bool   // Anthropic: the text block was started
	prefix       []byte // OpenAI: a content chunk up to its string value
}

// serveOpenAIChat handles POST /v1/chat/completions: the same pipeline as
// the persona route (credentials, body, persona, model, limits, pool,
// relay, usage), answered in OpenAI's shapes.
func (s *Server) serveOpenAIChat(ctx *fasthttp.RequestCtx) {
	s.serveSDK(ctx, apiOpenAI, routeOpenAIChat, decodeOpenAIRequest)
}

// serveSDK runs one SDK-compatible chat request.
func (s *Server) serveSDK(ctx *fasthttp.RequestCtx, kind apiKind, route string, decode func([]byte, *conversation) *apiError) {
	start := s.now()
	s.opts.Metrics.started()
	api := &sdkAPI{kind: kind, created: start.Unix()}
	x := &exchange{s: s, start: start, requestID: string(ctx.Response.Header.Peek("X-Request-Id")), route: route, api: api}
	api.id = x.requestID
	err := s.prepareSDK(ctx, x, decode)
	if err != nil {
		ae := toAPIError(err)
		x.writeError(ctx, ae)
		s.traceRefused(ctx, x)
		s.finish(x, providers.Usage{}, ae.status, ae.code, s.now())
		return
	}
	s.beginUpstream(ctx, x)
	if x.stream {
		s.startStream(ctx, x)
		return
	}
	s.completeSDK(ctx, x)
}

// prepareSDK authenticates (Bearer, or x-api-key as Anthropic's SDK
// sends it), decodes and resolves, then admits.
func (s *Server) prepareSDK(ctx *fasthttp.RequestCtx, x *exchange, decode func([]byte, *conversation) *apiError) error {
	token, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		if k := ctx.Request.Header.Peek("X-Api-Key"); len(k) > 0 {
			token, ok = k, true
		}
	}
	if !ok {
		return unauthenticatedError("missing credentials; send Authorization: Bearer <key> or x-api-key")
	}
	x.st = s.State()
	principal, err := x.st.Auth.Authenticate(token, x.start)
	if err != nil {
		return err
	}
	x.principal = principal
	var c conversation
	if ae := decode(ctx.Request.Body(), &c); ae != nil {
		return ae
	}
	x.api.includeUsage = c.includeUsage
	if err := s.resolveConversation(x, &c); err != nil {
		return err
	}
	return s.admit(ctx, x)
}

// completeSDK serves a non-streaming SDK request.
func (s *Server) completeSDK(ctx *fasthttp.RequestCtx, x *exchange) {
	callStart := s.now()
	res, err := x.model.Provider.Complete(x.ctx, &x.req)
	end := s.now()
	x.upstreamWait = end.Sub(callStart)
	x.deployment = res.Deployment
	if err != nil {
		s.fail(ctx, x, providers.Usage{}, err, end)
		return
	}
	x.noteResult(&res)
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.SetContentType("application/json")
	buf := ctx.Response.Body()[:0]
	if x.api.kind == apiOpenAI {
		buf = x.api.appendOpenAICompletion(buf, x, &res)
	} else {
		buf = x.api.appendAnthropicMessage(buf, x, &res)
	}
	ctx.Response.SetBodyRaw(buf)
	s.finish(x, res.Usage, http.StatusOK, "", end)
}

func (a *sdkAPI) appendOpenAIHead(dst []byte, object, model string) []byte {
	dst = append(dst, `{"id":"chatcmpl-`...)
	dst = append(dst, a.id...) // request ids are [A-Za-z0-9._:-]: no escaping
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, a.created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonx.AppendString(dst, model)
	return append(dst, `,"system_fingerprint":null,"choices":`...)
}

// appendOpenAIUsage writes u in OpenAI's terms: prompt_tokens is the
// whole input, cached_tokens its part read from the cache (OpenAI has no
// field for cache writes: they count as ordinary prompt tokens there).
func appendOpenAIUsage(dst []byte, u providers.Usage) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, u.InputTokens, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, u.OutputTokens, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, u.InputTokens+u.OutputTokens, 10)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheReadTokens, 10)
	dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
	dst = strconv.AppendInt(dst, u.ReasoningTokens, 10)
	return append(dst, "}}"...)
}

func appendOpenAIToolCalls(dst []byte, calls []providers.ToolCall, indexed bool) []byte {
	dst = append(dst, `"tool_calls":[`...)
	for i := range calls {
		c := &calls[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if indexed {
			dst = append(dst, `"index":`...)
			dst = strconv.AppendInt(dst, int64(i), 10)
			dst = append(dst, ',')
		}
		dst = append(dst, `"id":`...)
		dst = jsonx.AppendString(dst, c.ID)
		dst = append(dst, `,"type":"function","function":{"name":`...)
		dst = jsonx.AppendString(dst, c.Name)
		dst = append(dst, `,"arguments":`...)
		dst = jsonx.AppendString(dst, c.Arguments)
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}

func finishReasonOf(reason string, calls []providers.ToolCall) string {
	switch {
	case len(calls) > 0:
		return providers.FinishToolCalls
	case reason == "":
		return providers.FinishStop
	}
	return reason
}

func (a *sdkAPI) appendOpenAICompletion(dst []byte, x *exchange, res *providers.Result) []byte {
	dst = a.appendOpenAIHead(dst, "chat.completion", x.model.ID)
	dst = append(dst, `[{"index":0,"message":{"role":"assistant","content":`...)
	if res.Content == "" && len(res.ToolCalls) > 0 {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, res.Content)
	}
	if len(res.ToolCalls) > 0 {
		dst = append(dst, ',')
		dst = appendOpenAIToolCalls(dst, res.ToolCalls, false)
	}
	dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, finishReasonOf(res.FinishReason, res.ToolCalls)...)
	dst = append(dst, `"}],"usage":`...)
	dst = appendOpenAIUsage(dst, res.Usage)
	return append(dst, '}')
}

// openAIChunkTail closes a content chunk after its string value.
const openAIChunkTail = `},"finish_reason":null}]}` + "\n\n"

// appendOpenAIDelta appends one content chunk, preceded by the role chunk
// on the first. The prefix is built once per stream.
func (a *sdkAPI) appendOpenAIDelta(dst []byte, x *exchange, d []byte) []byte {
	if !a.started {
		dst = a.appendOpenAIStart(dst, x)
	}
	dst = append(dst, a.prefix...)
	dst = jsonx.AppendString(dst, d)
	return append(dst, openAIChunkTail...)
}

func (a *sdkAPI) appendOpenAIStart(dst []byte, x *exchange) []byte {
	a.started = true
	a.prefix = append(a.appendOpenAIHead(append(a.prefix[:0], "data: "...), "chat.completion.chunk", x.model.ID),
		`[{"index":0,"delta":{"content":`...)
	dst = append(dst, "data: "...)
	dst = a.appendOpenAIHead(dst, "chat.completion.chunk", x.model.ID)
	return append(dst, `[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
}

// appendOpenAIEnd appends the tool-call chunk (calls are collected while
// streaming and sent whole, which SDKs accumulate like any split), the
// finish chunk, the usage chunk when asked for, and [DONE].
func (a *sdkAPI) appendOpenAIEnd(dst []byte, x *exchange, st providers.Stream, u providers.Usage) []byte {
	if !a.started {
		dst = a.appendOpenAIStart(dst, x)
	}
	var calls []providers.ToolCall
	var reason string
	if ts, ok := st.(providers.ToolCallStream); ok {
		calls, reason = ts.ToolCalls(), ts.FinishReason()
	}
	head := func(dst []byte) []byte {
		return a.appendOpenAIHead(append(dst, "data: "...), "chat.completion.chunk", x.model.ID)
	}
	if len(calls) > 0 {
		dst = append(head(dst), `[{"index":0,"delta":{`...)
		dst = appendOpenAIToolCalls(dst, calls, true)
		dst = append(dst, `},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
	}
	dst = append(head(dst), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, finishReasonOf(reason, calls)...)
	dst = append(dst, `"}]}`+"\n\n"...)
	if a.includeUsage {
		dst = append(head(dst), `[],"usage":`...)
		dst = appendOpenAIUsage(dst, u)
		dst = append(dst, "}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}

// openAIErrorType is the error type OpenAI gives each status; the SDKs
// pick their exception class from the status.
func openAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// errorParam is the field a validation message names ("field: rule").
func errorParam(ae *apiError) string {
	if ae.code != codeValidation {
		return ""
	}
	f, _, ok := strings.Cut(ae.message, ": ")
	if !ok || f == "body" || f == "request" {
		return ""
	}
	return f
}

// sdkStatus is the status an SDK route answers for ae: the persona
// route's 422 validation errors are 400 here, which is what the SDKs
// raise BadRequestError for.
func sdkStatus(ae *apiError) int {
	if ae.status == http.StatusUnprocessableEntity {
		return http.StatusBadRequest
	}
	return ae.status
}

// appendOpenAIError appends {"error":{"message","type","param","code"}}.
func appendOpenAIError(dst []byte, ae *apiError) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonx.AppendString(dst, ae.message)
	dst = append(dst, `,"type":`...)
	dst = jsonx.AppendString(dst, openAIErrorType(sdkStatus(ae)))
	dst = append(dst, `,"param":`...)
	if p := errorParam(ae); p != "" {
		dst = jsonx.AppendString(dst, p)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"code":`...)
	dst = jsonx.AppendString(dst, ae.code)
	return append(dst, "}}"...)
}

// anthropicErrorType is Anthropic's error type for each status.
func anthropicErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusServiceUnavailable || status == 529:
		return "overloaded_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// appendAnthropicError appends {"type":"error","error":{"type","message"}}.
func appendAnthropicError(dst []byte, ae *apiError) []byte {
	dst = append(dst, `{"type":"error","error":{"type":`...)
	dst = jsonx.AppendString(dst, anthropicErrorType(sdkStatus(ae)))
	dst = append(dst, `,"message":`...)
	dst = jsonx.AppendString(dst, ae.message)
	return append(dst, "}}"...)
}

// writeError writes ae in the exchange's API shape: the persona route's
// (writeError), OpenAI's or Anthropic's, with the same status (bar 422 →
// 400), Retry-After and headers. The mapping itself is toAPIError's.
func (x *exchange) writeError(ctx *fasthttp.RequestCtx, ae *apiError) {
	if x.api == nil {
		writeError(ctx, ae)
		return
	}
	writeSDKError(ctx, x.api.kind, ae)
}

func writeSDKError(ctx *fasthttp.RequestCtx, kind apiKind, ae *apiError) {
	status := sdkStatus(ae)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.retryAfter)))
		ctx.Response.Header.Set("Retry-After-Ms", strconv.FormatInt(max(ae.retryAfter, time.Second).Milliseconds(), 10))
	}
	buf := ctx.Response.Body()[:0]
	if kind == apiOpenAI {
		buf = appendOpenAIError(buf, ae)
	} else {
		buf = appendAnthropicError(buf, ae)
	}
	ctx.Response.SetBodyRaw(buf)
}

// appendDelta, appendEnd and appendError are the relay's events in the
// exchange's shape (SSE events only; the relay frames them).
func (a *sdkAPI) appendDelta(dst []byte, x *exchange, st providers.Stream, d []byte) []byte {
	if a.kind == apiOpenAI {
		return a.appendOpenAIDelta(dst, x, d)
	}
	return a.appendAnthropicDelta(dst, x, st, d)
}

func (a *sdkAPI) appendEnd(dst []byte, x *exchange, st providers.Stream, u providers.Usage) []byte {
	if a.kind == apiOpenAI {
		return a.appendOpenAIEnd(dst, x, st, u)
	}
	return a.appendAnthropicEnd(dst, x, st, u)
}

// appendError ends a stream with an error the SDK raises: OpenAI's SDKs
// raise on a data event carrying "error" (and no [DONE] follows);
// Anthropic's on an error event.
func (a *sdkAPI) appendError(dst []byte, ae *apiError) []byte {
	if a.kind == apiOpenAI {
		dst = append(dst, "data: "...)
		dst = appendOpenAIError(dst, ae)
		return append(dst, "\n\n"...)
	}
	dst = append(dst, "event: error\ndata: "...)
	dst = appendAnthropicError(dst, ae)
	return append(dst, "\n\n"...)
}

// sdkKindOf is the SDK shape of a request by its path (0: the persona
// API's): what the router's own replies (404, 405, 413, panics) use, so
// an SDK always reads an error it understands.
func sdkKindOf(ctx *fasthttp.RequestCtx) apiKind {
	p := ctx.Path()
	switch {
	case string(p) == routeOpenAIChat:
		return apiOpenAI
	case string(p) == routeAnthropicMs:
		return apiAnthropic
	case strings.HasPrefix(string(p), routeModels):
		return modelsKind(ctx)
	}
	return 0
}

// writeRouteError writes ae in the shape of the request's route.
func writeRouteError(ctx *fasthttp.RequestCtx, ae *apiError) {
	if k := sdkKindOf(ctx); k != 0 {
		writeSDKError(ctx, k, ae)
		return
	}
	writeError(ctx, ae)
}

// allowedMethod is the one method the request's route takes.
func allowedMethod(ctx *fasthttp.RequestCtx) string {
	if strings.HasPrefix(string(ctx.Path()), routeModels) {
		return "GET"
	}
	return "POST"
}
