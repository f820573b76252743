package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/internal/jsonx"
)

// openAIErrorType is the error type OpenAI gives each status; the SDKs
// pick their exception class from the status.
func openAIErrorType(status int) string { return sharedErrorType(status) }

// sharedErrorType is the error type both APIs name alike for a status
// (authentication, permission, not found, rate limit, server, else
// invalid request). Anthropic's table adds its own on top.
func sharedErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// errorParam is the field a validation message names ("field: rule").
func errorParam(ae *apiError) string {
	if ae.code != codeValidation {
		return ""
	}
	f, _, ok := strings.Cut(ae.message, ": ")
	if !ok || f == "body" || f == "request" {
		return ""
	}
	return f
}

// sdkStatus is the status an SDK route answers for ae: the persona
// route's 422 validation errors are 400 here, which is what the SDKs
// raise BadRequestError for.
func sdkStatus(ae *apiError) int {
	if ae.status == http.StatusUnprocessableEntity {
		return http.StatusBadRequest
	}
	return ae.status
}

// appendOpenAIError appends {"error":{"message","type","param","code"}}.
func appendOpenAIError(dst []byte, ae *apiError) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonx.AppendString(dst, ae.message)
	dst = append(dst, `,"type":`...)
	dst = jsonx.AppendString(dst, openAIErrorType(sdkStatus(ae)))
	dst = append(dst, `,"param":`...)
	if p := errorParam(ae); p != "" {
		dst = jsonx.AppendString(dst, p)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"code":`...)
	dst = jsonx.AppendString(dst, ae.code)
	return append(dst, "}}"...)
}

// anthropicErrorType is Anthropic's error type for each status: the
// shared names, and its own for 413 and for overload (503, 529).
func anthropicErrorType(status int) string {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusServiceUnavailable || status == 529:
		return "overloaded_error"
	}
	return sharedErrorType(status)
}

// appendAnthropicError appends {"type":"error","error":{"type","message"}}.
func appendAnthropicError(dst []byte, ae *apiError) []byte {
	dst = append(dst, `{"type":"error","error":{"type":`...)
	dst = jsonx.AppendString(dst, anthropicErrorType(sdkStatus(ae)))
	dst = append(dst, `,"message":`...)
	dst = jsonx.AppendString(dst, ae.message)
	return append(dst, "}}"...)
}

// writeError writes ae in the exchange's API shape: the persona route's
// (writeError), OpenAI's or Anthropic's, with the same status (bar 422 →
// 400), Retry-After and headers. The mapping itself is toAPIError's.
func (x *exchange) writeError(ctx *fasthttp.RequestCtx, ae *apiError) {
	if x.api == nil {
		writeError(ctx, ae)
		return
	}
	writeSDKError(ctx, x.api.kind, ae)
}

func writeSDKError(ctx *fasthttp.RequestCtx, kind apiKind, ae *apiError) {
	status := sdkStatus(ae)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.retryAfter)))
		ctx.Response.Header.Set("Retry-After-Ms", strconv.FormatInt(max(ae.retryAfter, time.Second).Milliseconds(), 10))
	}
	buf := ctx.Response.Body()[:0]
	if kind == apiOpenAI {
		buf = appendOpenAIError(buf, ae)
	} else {
		buf = appendAnthropicError(buf, ae)
	}
	ctx.Response.SetBodyRaw(buf)
}

// writeRouteError writes ae in the shape of the request's route.
func writeRouteError(ctx *fasthttp.RequestCtx, ae *apiError) {
	if k := sdkKindOf(ctx); k != 0 {
		writeSDKError(ctx, k, ae)
		return
	}
	writeError(ctx, ae)
}
