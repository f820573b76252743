// Package anthropic is the upstream client for Anthropic's Messages API
// (POST {baseURL}/v1/messages), streamed and not.
package anthropic

import (
	"context"
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
	"github.com/valyala/fasthttp"
)

// Provider is one Messages API deployment. It holds one connection pool
// (fasthttp.HostClient) and is safe for concurrent use.
type Provider struct {
	name    string
	http    *providers.UpstreamHTTP
	key     string
	version string
}

var _ providers.Provider = (*Provider)(nil)

// New builds the deployment name from cfg (defaults applied to a copy).
func New(name string, cfg Config) (*Provider, error) {
	h, err := providers.ConfiguredUpstream(name, "/v1/messages", &cfg)
	if err != nil {
		return nil, err
	}
	return &Provider{name: name, http: h, key: cfg.APIKey, version: cfg.Version}, nil
}

// Name is the deployment name given to New.
func (p *Provider) Name() string { return p.name }

// Complete runs r without streaming.
func (p *Provider) Complete(ctx context.Context, r *providers.Request) (providers.Result, error) {
	var res providers.Result
	err := p.http.Complete(ctx, p.newRequest(r, false), func(body []byte) error {
		if err := p.decodeMessage(body, &res); err != nil {
			return err
		}
		if r.Conversation() {
			parseToolUses(body, &res)
		}
		return nil
	})
	return res, err
}

// Stream starts r as a stream; see providers.Stream.
func (p *Provider) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	return p.http.OpenStream(ctx, p.newRequest(r, true), r, newStream)
}

func (p *Provider) newRequest(r *providers.Request, stream bool) *fasthttp.Request {
	req := p.http.NewRequest()
	req.Header.Set("x-api-key", p.key)
	req.Header.Set("anthropic-version", p.version)
	// Build the body in the request's own pooled buffer.
	buf := req.SwapBody(nil)
	req.SwapBody(appendRequestBody(buf[:0], r, stream))
	return req
}

// appendRequestBody writes the Messages API request for r.
func appendRequestBody(dst []byte, r *providers.Request, stream bool) []byte {
	dst = append(dst, `{"model":`...)
	dst = jsonx.AppendString(dst, r.Model)
	dst = append(dst, `,"max_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.MaxOutputTokens), 10)
	if r.System != "" {
		dst = append(dst, `,"system":`...)
		dst = appendSystem(dst, r)
	}
	if r.Conversation() {
		dst = appendMessages(dst, r)
		dst = appendOptions(dst, r)
	} else {
		dst = append(dst, `,"messages":[{"role":"user","content":`...)
		dst = jsonx.AppendString(dst, r.UserText)
		dst = append(dst, `}]`...)
	}
	dst = providers.AppendTemperature(dst, r)
	if stream {
		dst = append(dst, `,"stream":true}`...)
	} else {
		dst = append(dst, `,"stream":false}`...)
	}
	return dst
}

// appendSystem writes the system prompt: a string, or, when it carries
// cache breakpoints, text blocks cut at them, each cut marked with
// cache_control (the text after the last cut goes unmarked). Empty
// blocks are left out: the API refuses them.
func appendSystem(dst []byte, r *providers.Request) []byte {
	if len(r.SystemCache) == 0 {
		return jsonx.AppendString(dst, r.System)
	}
	dst = append(dst, '[')
	from, n := 0, 0
	block := func(text string, ttl providers.CacheTTL) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = providers.AppendTextPart(dst, text)
		dst = markLast(dst, ttl)
	}
	for _, b := range r.SystemCache {
		at := min(max(b.At, from), len(r.System))
		if at > from {
			block(r.System[from:at], b.TTL)
			from = at
		}
	}
	if from < len(r.System) {
		block(r.System[from:], providers.CacheNone)
	}
	return append(dst, ']')
}

// markLast adds a cache_control breakpoint to the content block just
// written (dst ends with its closing brace).
func markLast(dst []byte, ttl providers.CacheTTL) []byte {
	if ttl == providers.CacheNone || len(dst) == 0 || dst[len(dst)-1] != '}' {
		return dst
	}
	return append(providers.AppendCacheControl(dst[:len(dst)-1], ttl), '}')
}
