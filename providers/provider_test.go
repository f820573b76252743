package providers

import (
	"strings"
	"testing"
)

func TestSafeErrorType(t *testing.T) {
	cases := []struct {
		name, raw, want string
	}{
		{"identifier", "overloaded_error", "overloaded_error"},
		{"dotted and dashed", "rate-limit.v2", "rate-limit.v2"},
		{"empty", "", "unknown"},
		{"space", "bad request", "unknown"},
		{"key-like text", "sk-abc:def", "unknown"},
		{"too long", strings.Repeat("a", 49), "unknown"},
		{"longest kept", strings.Repeat("a", 48), strings.Repeat("a", 48)},
		{"non-ascii", "erreur_é", "unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SafeErrorType([]byte(c.raw)); got != c.want {
				t.Fatalf("SafeErrorType(%q) = %q, want %q", c.raw, got, c.want)
			}
		})
	}
}
