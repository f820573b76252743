package gateway

import (
	"net/http"
	"slices"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/valyala/fasthttp"
)

// serveModels handles GET /v1/models: every public model id, which every
// workspace may use (models are not scoped per workspace). The shape is
// OpenAI's list, or Anthropic's when the request carries
// anthropic-version (both SDKs call this path).
func (s *Server) serveModels(ctx *fasthttp.RequestCtx) {
	kind := modelsKind(ctx)
	if !s.modelsAuth(ctx, kind) {
		return
	}
	models := s.State().Models
	ids := make([]string, 0, len(models))
	for id := range models {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	buf := ctx.Response.Body()[:0]
	if kind == apiOpenAI {
		buf = append(buf, `{"object":"list","data":[`...)
	} else {
		buf = append(buf, `{"data":[`...)
	}
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendModel(buf, kind, id)
	}
	if kind == apiOpenAI {
		buf = append(buf, "]}"...)
	} else {
		buf = append(buf, `],"has_more":false,"first_id":`...)
		buf = appendIDOrNull(buf, ids, 0)
		buf = append(buf, `,"last_id":`...)
		buf = appendIDOrNull(buf, ids, len(ids)-1)
		buf = append(buf, '}')
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(buf)
	s.opts.Metrics.answered(routeModels, http.StatusOK, "")
}

// serveModel handles GET /v1/models/{model}.
func (s *Server) serveModel(ctx *fasthttp.RequestCtx) {
	kind := modelsKind(ctx)
	if !s.modelsAuth(ctx, kind) {
		return
	}
	id, _ := ctx.UserValue("model").(string)
	if s.State().Models[id] == nil {
		ae := notFoundError("model: unknown model " + id)
		writeSDKError(ctx, kind, ae)
		s.opts.Metrics.answered(routeModels, ae.status, ae.code)
		return
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(appendModel(ctx.Response.Body()[:0], kind, id))
	s.opts.Metrics.answered(routeModels, http.StatusOK, "")
}

func modelsKind(ctx *fasthttp.RequestCtx) apiKind {
	if len(ctx.Request.Header.Peek("Anthropic-Version")) > 0 {
		return apiAnthropic
	}
	return apiOpenAI
}

func (s *Server) modelsAuth(ctx *fasthttp.RequestCtx, kind apiKind) bool {
	token, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		token = ctx.Request.Header.Peek("X-Api-Key")
	}
	var err error
	if len(token) == 0 {
		err = unauthenticatedError("missing credentials; send Authorization: Bearer <key> or x-api-key")
	} else {
		_, err = s.State().Auth.Authenticate(token, s.now())
	}
	if err != nil {
		ae := toAPIError(err)
		writeSDKError(ctx, kind, ae)
		s.opts.Metrics.answered(routeModels, ae.status, ae.code)
		return false
	}
	return true
}

func appendModel(dst []byte, kind apiKind, id string) []byte {
	if kind == apiOpenAI {
		dst = append(dst, `{"id":`...)
		dst = jsonx.AppendString(dst, id)
		return append(dst, `,"object":"model","created":0,"owned_by":"moonborn"}`...)
	}
	dst = append(dst, `{"type":"model","id":`...)
	dst = jsonx.AppendString(dst, id)
	dst = append(dst, `,"display_name":`...)
	dst = jsonx.AppendString(dst, id)
	return append(dst, `,"created_at":"1970-01-01T00:00:00Z"}`...)
}

func appendIDOrNull(dst []byte, ids []string, i int) []byte {
	if i < 0 || i >= len(ids) {
		return append(dst, "null"...)
	}
	return jsonx.AppendString(dst, ids[i])
}
