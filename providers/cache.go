package providers

// CacheTTL is how long a prompt-cache breakpoint asks the upstream to keep
// the prefix it ends; the zero value is no breakpoint.
type CacheTTL uint8

// The breakpoint TTLs Anthropic offers (cache_control ttl "5m", "1h").
const (
	CacheNone CacheTTL = iota
	Cache5m
	Cache1h
)

// MaxCacheBreakpoints is how many cache_control breakpoints one Messages
// API request may carry.
const MaxCacheBreakpoints = 4

// CacheBreak is a prompt-cache breakpoint inside Request.System: the
// block of System that ends at byte offset At is marked with TTL.
type CacheBreak struct {
	At  int
	TTL CacheTTL
}

// CacheBreakpoints counts r's breakpoints: on System, on messages and on
// tools.
func (r *Request) CacheBreakpoints() int {
	n := len(r.SystemCache)
	for i := range r.Messages {
		if r.Messages[i].Cache != CacheNone {
			n++
		}
	}
	for i := range r.Tools {
		if r.Tools[i].Cache != CacheNone {
			n++
		}
	}
	return n
}

// AppendCacheControl appends Anthropic's cache_control member for ttl
// (nothing for CacheNone). The 5-minute TTL is the API's default and goes
// without a ttl, which every API version accepts.
func AppendCacheControl(dst []byte, ttl CacheTTL) []byte {
	switch ttl {
	case Cache5m:
		dst = append(dst, `,"cache_control":{"type":"ephemeral"}`...)
	case Cache1h:
		dst = append(dst, `,"cache_control":{"type":"ephemeral","ttl":"1h"}`...)
	}
	return dst
}
