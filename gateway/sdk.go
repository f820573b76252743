package gateway

import (
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

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

// serveSDK runs one SDK-compatible chat request.
func (s *Server) serveSDK(ctx *fasthttp.RequestCtx, kind apiKind, route string, decode func([]byte, *conversation) *apiError) {
	start := s.now()
	s.opts.Metrics.started()
	api := &sdkAPI{kind: kind, created: start.Unix()}
	x := &exchange{s: s, start: start, requestID: string(ctx.Response.Header.Peek("X-Request-Id")), route: route, api: api}
	api.id = x.requestID
	err := s.prepareSDK(ctx, x, decode)
	if err != nil {
		s.refuse(ctx, x, err)
		return
	}
	s.callUpstream(ctx, x)
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
	res, end, ok := s.completeUpstream(ctx, x)
	if !ok {
		return
	}
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

// allowedMethod is the one method the request's route takes.
func allowedMethod(ctx *fasthttp.RequestCtx) string {
	if strings.HasPrefix(string(ctx.Path()), routeModels) {
		return "GET"
	}
	return "POST"
}
