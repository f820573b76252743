package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
)

// memoryDigestHeader introduces a caller's memoryDigest inside the system
// prompt. The form is documented in the README; changing it changes what
// every persona sees.
const (
	memoryDigestOpen  = "\n\n<memory_digest>\n"
	memoryDigestClose = "\n</memory_digest>"
)

// serveChat handles POST /v1/personas/{id}/chat. Order: body size (done
// by fasthttp before the body is read), credentials, body, persona, model.
// Credentials come before the body so an anonymous caller learns nothing
// about validation rules or which personas exist.
func (s *Server) serveChat(ctx *fasthttp.RequestCtx) {
	start := s.now()
	s.opts.Metrics.started()
	x, err := s.prepare(ctx, start)
	if err != nil {
		if x == nil { // unauthenticated: no workspace to record against
			x = &exchange{start: start, requestID: string(ctx.Response.Header.Peek("X-Request-Id"))}
		}
		s.refuse(ctx, x, err)
		return
	}
	s.callUpstream(ctx, x)
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

// completeUpstream makes a non-streaming request's upstream call, for
// both routes. On failure the error reply and the record are made, and
// ok is false.
func (s *Server) completeUpstream(ctx *fasthttp.RequestCtx, x *exchange) (res providers.Result, end time.Time, ok bool) {
	callStart := s.now()
	res, err := x.model.Provider.Complete(x.ctx, &x.req)
	end = s.now()
	x.upstreamWait = end.Sub(callStart)
	x.deployment = res.Deployment
	if err != nil {
		s.fail(ctx, x, providers.Usage{}, err, end)
		return res, end, false
	}
	x.noteResult(&res)
	return res, end, true
}

// complete serves a non-streaming request.
func (s *Server) complete(ctx *fasthttp.RequestCtx, x *exchange) {
	res, end, ok := s.completeUpstream(ctx, x)
	if !ok {
		return
	}
	cost := costOf(x.model, res.Usage)
	latency := end.Sub(x.start).Milliseconds()

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
