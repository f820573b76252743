package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/policy"
)

func TestRateLimitHeaders(t *testing.T) {
	d := policy.Decision{
		Requests: policy.LimitStatus{Limit: 60, Remaining: 59, Reset: time.Second},
		Tokens:   policy.LimitStatus{Limit: 150000, Remaining: 149000, Reset: 6*time.Minute + 20*time.Millisecond},
	}
	headers := func(d *policy.Decision) []string {
		var h fasthttp.ResponseHeader
		h.DisableNormalizing()
		setRateLimitHeaders(&h, d)
		var got []string
		for k, v := range h.All() {
			if strings.HasPrefix(string(k), "X-RateLimit-") {
				got = append(got, string(k)+": "+string(v))
			}
		}
		return got
	}
	want := []string{
		"X-RateLimit-Limit-Requests: 60", "X-RateLimit-Remaining-Requests: 59", "X-RateLimit-Reset-Requests: 1s",
		"X-RateLimit-Limit-Tokens: 150000", "X-RateLimit-Remaining-Tokens: 149000", "X-RateLimit-Reset-Tokens: 6m0.02s",
	}
	if got := headers(&d); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("headers:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	d.Tokens = policy.LimitStatus{}
	if got := headers(&d); len(got) != 3 {
		t.Errorf("unlimited tokens still sent headers: %v", got)
	}
	var h fasthttp.ResponseHeader
	allocs := testing.AllocsPerRun(100, func() { setRateLimitHeaders(&h, &d) })
	if allocs != 0 {
		t.Errorf("setRateLimitHeaders allocates %v times", allocs)
	}
}
