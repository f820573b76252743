package mock

import (
	"bytes"
	"net/http"

	"github.com/valyala/fasthttp"
)

// RecordedRequest is a copy of the last API request, for tests that assert
// what a client (the gateway) sent upstream.
type RecordedRequest struct {
	Method string
	Path   string
	// Header holds every request header; the values of credential headers
	// (Authorization, X-Api-Key, Api-Key, Cookie, Proxy-Authorization) are
	// replaced by "[redacted]".
	Header http.Header
	// AuthPresent reports whether the route's credential header was sent
	// (Authorization for OpenAI, x-api-key for Anthropic).
	AuthPresent bool
	// AuthMatched reports whether it carried the configured APIKey.
	AuthMatched bool
	// Body is a copy of the request body.
	Body []byte
	// CacheBreakpoints are the Anthropic cache_control markers the body
	// carried, in prefix order (tools → system → messages); nil for none
	// or for a body the server refused.
	CacheBreakpoints []CacheBreakpoint
	// PromptCacheKey is the OpenAI prompt_cache_key sent ("" for none).
	PromptCacheKey string
}

// CacheBreakpoint is one cache_control marker as the mock read it.
type CacheBreakpoint struct {
	// Block is where it was, in Anthropic's error-path form: "tools.0",
	// "system.1", "messages.2.content.0".
	Block string
	// TTL is "5m" or "1h" (a marker without ttl is "5m").
	TTL string
	// PrefixTokens is the prompt's length in the mock's tokens up to and
	// including the marked block: what a write at it would cache.
	PrefixTokens int64
}

// lastRequest is the reused storage behind RecordedRequest: headers are
// flattened as name, value pairs separated by NUL.
type lastRequest struct {
	seen        bool
	method      []byte
	path        []byte
	headers     []byte
	body        []byte
	authPresent bool
	authMatched bool
}

// LastRequest returns a copy of the last API request and whether there was
// one.
func (s *Server) LastRequest() (RecordedRequest, bool) {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	l := &s.last
	if !l.seen {
		return RecordedRequest{}, false
	}
	r := RecordedRequest{
		Method:      string(l.method),
		Path:        string(l.path),
		Header:      http.Header{},
		AuthPresent: l.authPresent,
		AuthMatched: l.authMatched,
		Body:        bytes.Clone(l.body),
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	for h := l.headers; len(h) > 0; {
		k, rest, _ := bytes.Cut(h, []byte{0})
		v, rest2, _ := bytes.Cut(rest, []byte{0})
		r.Header.Add(string(k), string(v))
		h = rest2
	}
	r.CacheBreakpoints, r.PromptCacheKey = cacheView(r.Path, r.Body)
	return r, true
}

// cacheView reads the markers and prompt_cache_key of a recorded body
// (off the hot path: only tests ask).
func cacheView(path string, body []byte) ([]CacheBreakpoint, string) {
	var w wireRequest
	switch path {
	case "/v1/chat/completions":
		if w.decodeScan(body, protoOpenAI, true, 0) != nil {
			return nil, ""
		}
		return nil, string(w.cache.cacheKey)
	case "/v1/messages":
		if w.decodeScan(body, protoAnthropic, true, 0) != nil {
			return nil, ""
		}
		pts, msg := w.cache.anthropicPoints(w.model, nil)
		if msg != "" {
			return nil, ""
		}
		var bps []CacheBreakpoint
		for _, p := range pts {
			if p.ttl == ttlNone {
				continue
			}
			ttl := "5m"
			if p.ttl == ttl1h {
				ttl = "1h"
			}
			bps = append(bps, CacheBreakpoint{Block: blockPath(int(p.sec), p.i, p.j), TTL: ttl, PrefixTokens: p.tokens})
		}
		return bps, ""
	}
	return nil, ""
}

// record keeps a copy of the request for LastRequest.
func (s *Server) record(ctx *fasthttp.RequestCtx, authPresent, authMatched bool) {
	s.lastMu.Lock()
	l := &s.last
	l.seen = true
	l.method = append(l.method[:0], ctx.Method()...)
	l.path = append(l.path[:0], ctx.Path()...)
	l.body = append(l.body[:0], ctx.PostBody()...)
	l.authPresent, l.authMatched = authPresent, authMatched
	l.headers = l.headers[:0]
	for k, v := range ctx.Request.Header.All() {
		l.headers = append(l.headers, k...)
		l.headers = append(l.headers, 0)
		if isSecretHeader(k) {
			l.headers = append(l.headers, "[redacted]"...)
		} else {
			l.headers = append(l.headers, v...)
		}
		l.headers = append(l.headers, 0)
	}
	s.lastMu.Unlock()
}

func isSecretHeader(k []byte) bool {
	for _, h := range [...]string{"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"} {
		if bytes.EqualFold(k, []byte(h)) {
			return true
		}
	}
	return false
}
