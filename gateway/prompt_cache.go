package gateway

import (
	"strconv"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// cachePersona asks the upstream to cache persona p's prompt, the first n
// bytes of x.req.System, unless its model or the persona turned caching
// off:
//
//   - for Anthropic deployments, a cache_control breakpoint right after
//     the prompt, so what follows it (a memory digest, the caller's own
//     system text) stays out of the cached prefix and the prefix is the
//     same on every call. Only when the prompt is at least the model's
//     minimum (a shorter prefix is not cached upstream, and a breakpoint
//     is a scarce thing: four per request, the caller's own first), and
//     with a TTL that keeps Anthropic's order (no 1-hour breakpoint after
//     a 5-minute one), else the other TTL, else none;
//   - for OpenAI-compatible ones, which cache prefixes on their own, the
//     persona's prompt_cache_key, unless the caller sent its own.
//
// The caller's breakpoints (x.req.SystemCache, on messages and tools) are
// kept as they are.
func cachePersona(x *exchange, p *persona.Persona, n int) {
	m := x.model
	if m.PromptCache.Off || p.PromptCache == "off" || n == 0 {
		return
	}
	r := &x.req
	if r.CacheKey == "" {
		r.CacheKey = p.CacheKey()
	}
	if p.PromptTokens() < m.PromptCache.MinTokens || r.CacheBreakpoints() >= providers.MaxCacheBreakpoints {
		return
	}
	want := m.PromptCache.TTL
	switch p.PromptCacheTTL {
	case "5m":
		want = providers.Cache5m
	case "1h":
		want = providers.Cache1h
	}
	ttl := fitTTL(r, want)
	if ttl == providers.CacheNone {
		return
	}
	b := providers.CacheBreak{At: n, TTL: ttl}
	if len(r.SystemCache) == 0 {
		x.personaBreak[0] = b
		r.SystemCache = x.personaBreak[:]
		return
	}
	r.SystemCache = append([]providers.CacheBreak{b}, r.SystemCache...)
}

// fitTTL returns want, or the other TTL, whichever a breakpoint at the
// start of the system prompt can take: Anthropic refuses a 1-hour
// breakpoint after a 5-minute one, in its order tools, system, messages.
// CacheNone when neither fits.
func fitTTL(r *providers.Request, want providers.CacheTTL) providers.CacheTTL {
	earlier5m, later1h := false, false
	for i := range r.Tools {
		earlier5m = earlier5m || r.Tools[i].Cache == providers.Cache5m
	}
	for _, b := range r.SystemCache {
		later1h = later1h || b.TTL == providers.Cache1h
	}
	for i := range r.Messages {
		later1h = later1h || r.Messages[i].Cache == providers.Cache1h
	}
	fits := func(t providers.CacheTTL) bool {
		return (t != providers.Cache1h || !earlier5m) && (t != providers.Cache5m || !later1h)
	}
	switch {
	case fits(want):
		return want
	case want == providers.Cache5m && fits(providers.Cache1h):
		return providers.Cache1h
	case want == providers.Cache1h && fits(providers.Cache5m):
		return providers.Cache5m
	}
	return providers.CacheNone
}

// checkCallerCache refuses what Anthropic would refuse of a caller's own
// breakpoints, naming it in Anthropic's words: more than four, or a
// 1-hour one after a 5-minute one.
func checkCallerCache(r *providers.Request) *apiError {
	if n := r.CacheBreakpoints(); n > providers.MaxCacheBreakpoints {
		return badRequest("cache_control", "A maximum of "+strconv.Itoa(providers.MaxCacheBreakpoints)+
			" blocks with cache_control may be provided. Found "+strconv.Itoa(n)+".")
	}
	seen5m := false
	check := func(t providers.CacheTTL, field string) *apiError {
		if t == providers.Cache1h && seen5m {
			return badRequest(field, `a ttl="1h" cache_control block must not come after a ttl="5m" one`)
		}
		seen5m = seen5m || t == providers.Cache5m
		return nil
	}
	for i := range r.Tools {
		if ae := check(r.Tools[i].Cache, "tools."+strconv.Itoa(i)+".cache_control"); ae != nil {
			return ae
		}
	}
	for _, b := range r.SystemCache {
		if ae := check(b.TTL, "system.cache_control"); ae != nil {
			return ae
		}
	}
	for i := range r.Messages {
		if ae := check(r.Messages[i].Cache, "messages.cache_control"); ae != nil {
			return ae
		}
	}
	return nil
}

// decodeCacheControl reads a block's cache_control: {"type":"ephemeral"}
// with an optional "ttl" of "5m" or "1h".
func decodeCacheControl(v []byte, field string) (providers.CacheTTL, *apiError) {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return 0, badRequest(field, "must be an object")
	}
	ttl := providers.Cache5m
	typed := false
	for k, cv, ok := obj.Member(); ok; k, cv, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			if string(cv) != `"ephemeral"` {
				return 0, badRequest(field+".type", `must be "ephemeral"`)
			}
			typed = true
		case jsonx.KeyIs(k, "ttl"):
			switch string(cv) {
			case `"5m"`:
			case `"1h"`:
				ttl = providers.Cache1h
			default:
				return 0, badRequest(field+".ttl", `must be "5m" or "1h"`)
			}
		}
	}
	if !typed {
		return 0, badRequest(field+".type", "Field required")
	}
	return ttl, nil
}
