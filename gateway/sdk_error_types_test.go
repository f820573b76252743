package gateway

import "testing"

// TestSDKErrorTypes holds each API's status → error type table: the
// names both share, and Anthropic's own for 413 and overload.
func TestSDKErrorTypes(t *testing.T) {
	for _, c := range []struct {
		status            int
		openAI, anthropic string
	}{
		{400, "invalid_request_error", "invalid_request_error"},
		{401, "authentication_error", "authentication_error"},
		{403, "permission_error", "permission_error"},
		{404, "not_found_error", "not_found_error"},
		{405, "invalid_request_error", "invalid_request_error"},
		{413, "invalid_request_error", "request_too_large"},
		{429, "rate_limit_error", "rate_limit_error"},
		{500, "api_error", "api_error"},
		{502, "api_error", "api_error"},
		{503, "api_error", "overloaded_error"},
		{529, "api_error", "overloaded_error"},
	} {
		if got := openAIErrorType(c.status); got != c.openAI {
			t.Errorf("openAIErrorType(%d) = %q, want %q", c.status, got, c.openAI)
		}
		if got := anthropicErrorType(c.status); got != c.anthropic {
			t.Errorf("anthropicErrorType(%d) = %q, want %q", c.status, got, c.anthropic)
		}
	}
}
