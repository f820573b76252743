// Package openai is the upstream client for the OpenAI chat completions
// wire protocol (POST {baseURL}/chat/completions), streamed and not.
package openai

import (
	"context"
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
	"github.com/valyala/fasthttp"
)

// Provider is one OpenAI-compatible deployment. It holds one connection
// pool (fasthttp.HostClient) and is safe for concurrent use.
type Provider struct {
	name string
	http *providers.UpstreamHTTP
	auth string // "Bearer <key>", built once
	org  string
	wire wireOptions
}

// wireOptions are the deployment's choices in how a body is written.
type wireOptions struct {
	maxTokensField string // "max_tokens" or "max_completion_tokens"
	cacheKey       bool   // send prompt_cache_key
}

var _ providers.Provider = (*Provider)(nil)

// New builds the deployment name from cfg (defaults applied to a copy).
func New(name string, cfg Config) (*Provider, error) {
	h, err := providers.ConfiguredUpstream(name, "/chat/completions", &cfg)
	if err != nil {
		return nil, err
	}
	return &Provider{name: name, http: h, auth: "Bearer " + cfg.APIKey, org: cfg.Organization,
		wire: wireOptions{maxTokensField: cfg.MaxTokensField, cacheKey: cfg.sendsCacheKey()}}, nil
}

// Name is the deployment name given to New.
func (p *Provider) Name() string { return p.name }

// Complete runs r without streaming.
func (p *Provider) Complete(ctx context.Context, r *providers.Request) (providers.Result, error) {
	var res providers.Result
	err := p.http.Complete(ctx, p.newRequest(r, false), func(body []byte) error {
		return p.decodeCompletion(body, r, &res)
	})
	return res, err
}

// Stream starts r as a stream; see providers.Stream.
func (p *Provider) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	return p.http.OpenStream(ctx, p.newRequest(r, true), r, newStream)
}

func (p *Provider) newRequest(r *providers.Request, stream bool) *fasthttp.Request {
	req := p.http.NewRequest()
	req.Header.Set(fasthttp.HeaderAuthorization, p.auth)
	if p.org != "" {
		req.Header.Set("OpenAI-Organization", p.org)
	}
	// Build the body in the request's own pooled buffer.
	buf := req.SwapBody(nil)
	req.SwapBody(appendRequestBody(buf[:0], p.wire, r, stream))
	return req
}

// appendRequestBody writes the chat completions request for r.
func appendRequestBody(dst []byte, w wireOptions, r *providers.Request, stream bool) []byte {
	dst = append(dst, `{"model":`...)
	dst = jsonx.AppendString(dst, r.Model)
	dst = append(dst, `,"messages":[`...)
	if r.Conversation() {
		dst = appendMessages(dst, r)
		dst = append(dst, ']')
		dst = appendOptions(dst, r)
	} else {
		dst = appendPersonaMessages(dst, r)
	}
	return appendTail(dst, w, r, stream)
}

// appendPersonaMessages writes the persona route's two messages.
func appendPersonaMessages(dst []byte, r *providers.Request) []byte {
	if r.System != "" {
		dst = append(dst, `{"role":"system","content":`...)
		dst = jsonx.AppendString(dst, r.System)
		dst = append(dst, `},`...)
	}
	dst = append(dst, `{"role":"user","content":`...)
	dst = jsonx.AppendString(dst, r.UserText)
	return append(dst, `}]`...)
}

// appendTail writes temperature, the output cap and stream and closes
// the body.
func appendTail(dst []byte, w wireOptions, r *providers.Request, stream bool) []byte {
	dst = providers.AppendTemperature(dst, r)
	dst = append(dst, `,"`...)
	dst = append(dst, w.maxTokensField...)
	dst = append(dst, `":`...)
	dst = strconv.AppendInt(dst, int64(r.MaxOutputTokens), 10)
	if r.CacheKey != "" && w.cacheKey {
		dst = append(dst, `,"prompt_cache_key":`...)
		dst = jsonx.AppendString(dst, r.CacheKey)
	}
	if stream {
		dst = append(dst, `,"stream":true,"stream_options":{"include_usage":true}}`...)
	} else {
		dst = append(dst, `,"stream":false}`...)
	}
	return dst
}
