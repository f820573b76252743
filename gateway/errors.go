package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
)

// The stable error codes of API.md.
const (
	codeUnauthenticated     = "unauthenticated"
	codePersonaNotFound     = "persona_not_found"
	codeValidation          = "validation_error"
	codeRateLimited         = "rate_limited"
	codeQuotaExceeded       = "quota_exceeded"
	codePayloadTooLarge     = "payload_too_large"
	codeMethodNotAllowed    = "method_not_allowed"
	codeNotFound            = "not_found"
	codeUpstreamError       = "upstream_error"
	codeUpstreamUnavailable = "upstream_unavailable"
	codeUpstreamTimeout     = "upstream_timeout"
	codeInternal            = "internal"
	// codeClientClosed is ours, never sent: the ledger's and the access
	// log's code for a request whose client left (status 499).
	codeClientClosed = "client_closed"
)

// statusClientClosed is what a usage record says when the client left
// before its answer ended (nginx's 499; the client itself saw nothing, or
// a 200 stream cut short).
const statusClientClosed = 499

var (
	// errClientGone marks a request whose client closed or reset its
	// connection, or stopped accepting writes.
	errClientGone = errors.New("client went away")
	// errShuttingDown ends streams still open when Shutdown's deadline
	// passed.
	errShuttingDown = errors.New("gateway shutting down")
)

// apiError is a reply the client sees: status, stable code, human message
// and, for 429 and 503, a retry hint. upstream marks failures of the
// upstream call, which are worth a log line.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
	upstream   bool
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// The replies built outside toAPIError, each in its one shape.

func notFoundError(message string) *apiError {
	return &apiError{status: http.StatusNotFound, code: codeNotFound, message: message}
}

func methodNotAllowedError(message string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, message: message}
}

func unauthenticatedError(message string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: codeUnauthenticated, message: message}
}

func internalError() *apiError {
	return &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error"}
}

// unavailableError is a 503 whose cause should pass within a second.
func unavailableError(message string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: codeUpstreamUnavailable, message: message, retryAfter: time.Second}
}

func validationError(field, rule string) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: codeValidation, message: field + ": " + rule}
}

func personaNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: codePersonaNotFound, message: "persona " + id + " not found"}
}

// refusal is the 429 of a limiter decision that did not admit.
func refusal(d *policy.Decision) *apiError {
	code, msg := codeRateLimited, "rate limit exceeded"
	switch d.Reason {
	case policy.ReasonQuotaCost, policy.ReasonQuotaTokens:
		code, msg = codeQuotaExceeded, "monthly quota exhausted"
	}
	return &apiError{status: http.StatusTooManyRequests, code: code, message: msg, retryAfter: d.RetryAfter}
}

// toAPIError is the one place where an error becomes an HTTP status, code
// and message, for every reply path: JSON errors, a stream's error
// event, the ledger's error code and the access log. Messages never carry
// upstream bodies or credentials: an upstream's own error text can quote
// the key it was sent.
func toAPIError(err error) *apiError {
	var ae *apiError
	var ue *providers.UpstreamError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, errClientGone), errors.Is(err, providers.ErrAborted):
		// Aborted attempts are ours: the request's owner cancelled them
		// because its client left.
		return &apiError{status: statusClientClosed, code: codeClientClosed, message: "client closed the connection"}
	case errors.Is(err, errShuttingDown):
		return unavailableError("gateway shutting down")
	case errors.Is(err, policy.ErrUnauthenticated):
		return unauthenticatedError(err.Error())
	case errors.Is(err, persona.ErrUnavailable):
		return unavailableError("persona store unavailable")
	case errors.Is(err, policy.ErrLimiterUnavailable):
		return unavailableError("rate limiter unavailable; retry later")
	case errors.As(err, &ue):
		ae := upstreamAPIError(ue)
		ae.upstream = true
		return ae
	}
	return internalError()
}

func upstreamAPIError(ue *providers.UpstreamError) *apiError {
	if errors.Is(ue, context.DeadlineExceeded) {
		return &apiError{status: http.StatusGatewayTimeout, code: codeUpstreamTimeout,
			message: "the request exceeded its deadline"}
	}
	switch ue.Kind {
	case providers.KindStatus:
		if ue.Status == http.StatusTooManyRequests {
			return &apiError{status: http.StatusTooManyRequests, code: codeRateLimited,
				message: "upstream provider is rate limiting; retry later", retryAfter: retryHint(ue)}
		}
		return &apiError{status: http.StatusBadGateway, code: codeUpstreamError,
			message: "upstream provider answered with status " + strconv.Itoa(ue.Status)}
	case providers.KindTimeout:
		return &apiError{status: http.StatusGatewayTimeout, code: codeUpstreamTimeout,
			message: "upstream provider timed out"}
	case providers.KindUnavailable:
		return &apiError{status: http.StatusServiceUnavailable, code: codeUpstreamUnavailable,
			message: "no upstream provider available for this model; retry later", retryAfter: retryHint(ue)}
	case providers.KindSaturated:
		return &apiError{status: http.StatusServiceUnavailable, code: codeUpstreamUnavailable,
			message: "upstream capacity for this model is exhausted (every connection busy and the queue full); retry later", retryAfter: retryHint(ue)}
	case providers.KindConnect:
		return &apiError{status: http.StatusServiceUnavailable, code: codeUpstreamUnavailable,
			message: "no upstream provider available", retryAfter: retryHint(ue)}
	case providers.KindTruncated:
		return &apiError{status: http.StatusBadGateway, code: codeUpstreamError,
			message: "upstream stream ended early"}
	}
	return &apiError{status: http.StatusBadGateway, code: codeUpstreamError,
		message: "upstream provider failed"}
}

// retryHint is the upstream's retry-after, else a second.
func retryHint(ue *providers.UpstreamError) time.Duration {
	if ue.RetryAfter > 0 {
		return ue.RetryAfter
	}
	return time.Second
}

// appendErrorBody appends {"error":{"code":…,"message":…}}.
func appendErrorBody(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = jsonx.AppendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = jsonx.AppendString(dst, message)
	return append(dst, "}}"...)
}

// retryAfterSeconds rounds a hint up to whole seconds, at least 1, as
// Retry-After carries integers.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
