package gateway_test

import (
	"strconv"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestRateLimitHeadersAndRefusal: every reply carries the X-RateLimit-*
// headers of API.md, spelled as OpenAI's clients read them; an empty
// bucket answers 429 rate_limited with Retry-After and Remaining 0.
func TestRateLimitHeadersAndRefusal(t *testing.T) {
	w := newWorld(t, nil)
	w.RateLimits = &policy.LimitsConfig{Default: policy.WorkspaceLimits{RateLimits: policy.RateLimits{
		RequestsPerMinute: 60, RequestBurst: 2, TokensPerMinute: 100000}}}
	g := w.start()
	for i := 0; i < 2; i++ {
		r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`)
		testkit.DecodeOK(t, r)
		for _, h := range []string{"X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests", "X-RateLimit-Reset-Requests",
			"X-RateLimit-Limit-Tokens", "X-RateLimit-Remaining-Tokens", "X-RateLimit-Reset-Tokens"} {
			if r.Header.Get(h) == "" {
				t.Fatalf("reply %d lacks %s: %v", i, h, r.Header)
			}
		}
		if got := r.Header.Get("X-RateLimit-Remaining-Requests"); got != strconv.Itoa(1-i) {
			t.Fatalf("reply %d: remaining requests %q", i, got)
		}
	}
	r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`)
	e := testkit.DecodeErr(t, r)
	if r.Status != 429 || e.Error.Code != "rate_limited" {
		t.Fatalf("third request: %d %s", r.Status, r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if r.Header.Get("X-RateLimit-Remaining-Requests") != "0" || r.Header.Get("X-RateLimit-Reset-Requests") == "" {
		t.Fatalf("429 headers %v", r.Header)
	}
	// A stream's reply carries them too.
	resp, _ := g.OpenStream(mocktest.KeyOther, "psn_other", `{"userText":"hi","stream":true}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit-Requests") != "2" { // the bucket size
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
}
