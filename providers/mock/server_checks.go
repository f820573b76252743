package mock

import (
	"bytes"
	"crypto/subtle"
	"strconv"

	"github.com/valyala/fasthttp"
)

// validate applies the protocols' semantic checks and returns the output
// cap (0 for none). It writes the error reply itself and reports false.
func validate(ctx *fasthttp.RequestCtx, r *wireRequest, p protocol) (maxTokens int, ok bool) {
	if p == protoOpenAI {
		switch {
		case !r.hasModel || len(r.model) == 0:
			writeOpenAIError(ctx, 400, "invalid_request_error", "", "", "you must provide a model parameter")
		case !r.hasMessages:
			writeOpenAIError(ctx, 400, "invalid_request_error", "messages", "missing_required_parameter",
				"Missing required parameter: 'messages'.")
		case r.messages == 0:
			writeOpenAIError(ctx, 400, "invalid_request_error", "messages", "empty_array",
				"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
		case r.hasMaxCompletionTokens && r.maxCompletionTokens < 1:
			writeOpenAIError(ctx, 400, "invalid_request_error", "max_completion_tokens", "integer_below_min_value",
				"Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got "+strconv.FormatInt(r.maxCompletionTokens, 10)+" instead.")
		case r.hasMaxTokens && r.maxTokens < 1:
			writeOpenAIError(ctx, 400, "invalid_request_error", "max_tokens", "integer_below_min_value",
				"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got "+strconv.FormatInt(r.maxTokens, 10)+" instead.")
		case r.hasTemperature && (r.temperature < 0 || r.temperature > 2):
			writeOpenAIError(ctx, 400, "invalid_request_error", "temperature", "decimal_out_of_range",
				"Invalid 'temperature': expected a value between 0 and 2.")
		default:
			// max_completion_tokens supersedes the deprecated max_tokens.
			switch {
			case r.hasMaxCompletionTokens:
				return clampInt(r.maxCompletionTokens), true
			case r.hasMaxTokens:
				return clampInt(r.maxTokens), true
			}
			return 0, true
		}
		return 0, false
	}
	switch {
	case !r.hasModel || len(r.model) == 0:
		writeAnthropicError(ctx, 400, "invalid_request_error", "model: Field required")
	case !r.hasMaxTokens:
		writeAnthropicError(ctx, 400, "invalid_request_error", "max_tokens: Field required")
	case r.maxTokens < 1:
		writeAnthropicError(ctx, 400, "invalid_request_error", "max_tokens: Input should be greater than or equal to 1")
	case !r.hasMessages:
		writeAnthropicError(ctx, 400, "invalid_request_error", "messages: Field required")
	case r.messages == 0:
		writeAnthropicError(ctx, 400, "invalid_request_error", "messages: at least one message is required")
	case r.hasTemperature && (r.temperature < 0 || r.temperature > 1):
		writeAnthropicError(ctx, 400, "invalid_request_error", "temperature: range: 0..1")
	default:
		return clampInt(r.maxTokens), true
	}
	return 0, false
}

func clampInt(v int64) int {
	return int(min(v, maxOutputTokens+1))
}

// checkAuth looks at the route's credential header.
func checkAuth(ctx *fasthttp.RequestCtx, key string, p protocol) (present, matched bool) {
	var got []byte
	if p == protoOpenAI {
		h := ctx.Request.Header.Peek("Authorization")
		present = len(h) > 0
		if len(h) > 7 && bytes.EqualFold(h[:7], []byte("bearer ")) {
			got = bytes.TrimSpace(h[7:])
		}
	} else {
		got = ctx.Request.Header.Peek("x-api-key")
		present = len(got) > 0
	}
	matched = key != "" && len(got) > 0 && subtle.ConstantTimeCompare(got, []byte(key)) == 1
	return present, matched
}
