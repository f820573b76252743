package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
)

func TestToAPIError(t *testing.T) {
	secret := "sk-live-SECRET"
	cases := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"unauthenticated", fmt.Errorf("%w: token expired", policy.ErrUnauthenticated), 401, codeUnauthenticated, 0},
		{"persona origin down", fmt.Errorf("x: %w", persona.ErrUnavailable), 503, codeUpstreamUnavailable, time.Second},
		{"upstream 429", &providers.UpstreamError{Kind: providers.KindStatus, Status: 429, RetryAfter: 3 * time.Second}, 429, codeRateLimited, 3 * time.Second},
		{"upstream 429 no hint", &providers.UpstreamError{Kind: providers.KindStatus, Status: 429}, 429, codeRateLimited, time.Second},
		{"upstream 500", &providers.UpstreamError{Kind: providers.KindStatus, Status: 500, Detail: secret}, 502, codeUpstreamError, 0},
		{"upstream 401", &providers.UpstreamError{Kind: providers.KindStatus, Status: 401, Detail: secret}, 502, codeUpstreamError, 0},
		{"timeout", &providers.UpstreamError{Kind: providers.KindTimeout}, 504, codeUpstreamTimeout, 0},
		{"connect", &providers.UpstreamError{Kind: providers.KindConnect, Err: errors.New(secret)}, 503, codeUpstreamUnavailable, time.Second},
		{"saturated", &providers.UpstreamError{Kind: providers.KindSaturated}, 503, codeUpstreamUnavailable, time.Second},
		{"truncated", &providers.UpstreamError{Kind: providers.KindTruncated}, 502, codeUpstreamError, 0},
		{"protocol wrapped", fmt.Errorf("attempt: %w", &providers.UpstreamError{Kind: providers.KindProtocol}), 502, codeUpstreamError, 0},
		{"bug", errors.New("nil map " + secret), 500, codeInternal, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ae := toAPIError(c.err)
			if ae.status != c.status || ae.code != c.code || ae.retryAfter != c.retryAfter {
				t.Fatalf("got %d %s %v; want %d %s %v", ae.status, ae.code, ae.retryAfter, c.status, c.code, c.retryAfter)
			}
			if strings.Contains(ae.message, secret) {
				t.Fatalf("message leaks upstream detail: %q", ae.message)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {2 * time.Second, 2}} {
		if got := retryAfterSeconds(c.d); got != c.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}
