package gateway

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/policy"
)

// The X-RateLimit-* headers on every reply after admission, spelled as
// OpenAI spells them (its clients read them); setRequestID keeps header
// names as written.
const (
	headerLimitRequests     = "X-RateLimit-Limit-Requests"
	headerRemainingRequests = "X-RateLimit-Remaining-Requests"
	headerResetRequests     = "X-RateLimit-Reset-Requests"
	headerLimitTokens       = "X-RateLimit-Limit-Tokens"
	headerRemainingTokens   = "X-RateLimit-Remaining-Tokens"
	headerResetTokens       = "X-RateLimit-Reset-Tokens"
)

// setRateLimitHeaders sets the headers of each limited dimension of d
// (requests, tokens); an unlimited one (Limit 0) gets none. Limit is the
// bucket size, Remaining what is left now, Reset the time until the
// bucket is full again as a Go duration ("1s", "6m0s"), as OpenAI sends
// it. It does not allocate.
func setRateLimitHeaders(h *fasthttp.ResponseHeader, d *policy.Decision) {
	setLimitTriple(h, &d.Requests, headerLimitRequests, headerRemainingRequests, headerResetRequests)
	setLimitTriple(h, &d.Tokens, headerLimitTokens, headerRemainingTokens, headerResetTokens)
}

func setLimitTriple(h *fasthttp.ResponseHeader, s *policy.LimitStatus, limit, remaining, reset string) {
	if s.Limit <= 0 {
		return
	}
	var buf [32]byte
	h.SetBytesV(limit, strconv.AppendInt(buf[:0], s.Limit, 10))
	h.SetBytesV(remaining, strconv.AppendInt(buf[:0], s.Remaining, 10))
	h.SetBytesV(reset, policy.AppendDuration(buf[:0], s.Reset))
}
