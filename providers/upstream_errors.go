package providers

// What an upstream failure becomes: the lease's cut, the request's
// context, a transport error, an unreadable reply or an error status,
// each as the UpstreamError (or context error) the pool and the
// gateway's error mapping read.

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// leaseError explains a failure by the lease's cut when there was one:
// the request's context ended (ContextError), or the stream's owner cut
// it; otherwise err stands.
func (h *UpstreamHTTP) leaseError(l *lease, err error) error {
	switch cause := l.cause(); {
	case cause == nil:
		return err
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		return ContextError(h.name, l.ctx)
	default:
		return ErrAborted
	}
}

// errQueueTimeout: an attempt waited for a free connection until its
// deadline.
var errQueueTimeout = errors.New("queued for a connection until the deadline")

// ContextError is the error of an attempt whose request context ended:
// ErrAborted when it was cancelled (the caller left, or a hedge lost),
// an *UpstreamError of KindTimeout when its deadline passed.
func ContextError(provider string, ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &UpstreamError{Kind: KindTimeout, Provider: provider, Detail: "request deadline passed", Err: context.DeadlineExceeded}
	}
	return ErrAborted
}

// doError maps a failed Do to an *UpstreamError.
func (h *UpstreamHTTP) doError(err error) *UpstreamError {
	e := &UpstreamError{Provider: h.name, Err: err}
	var de *upstreamDialError
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		e.Kind, e.Detail, e.Err = KindSaturated, "no free connection", nil
	case errors.Is(err, errQueueTimeout):
		e.Kind, e.Detail, e.Err = KindSaturated, "no free connection before the deadline", nil
	case errors.As(err, &de):
		e.Kind, e.Detail, e.Err = KindConnect, "dial", de.err
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Kind, e.Detail, e.Err = KindTimeout, "no reply in time", nil
	default:
		e.Kind = KindConnect
	}
	return e
}

// readError maps a failed body read: a passed deadline is KindTimeout,
// anything else a connection that broke mid-reply (KindConnect; streams
// turn it into KindTruncated).
func (h *UpstreamHTTP) readError(err error, detail string) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return &UpstreamError{Kind: KindTimeout, Provider: h.name, Detail: detail}
	}
	return &UpstreamError{Kind: KindConnect, Provider: h.name, Detail: detail, Err: err}
}

// statusError describes a non-2xx reply by status and retry hint only: the
// body can quote credentials and is never read into the error.
func (h *UpstreamHTTP) statusError(resp *fasthttp.Response, now time.Time) *UpstreamError {
	return &UpstreamError{
		Kind:       KindStatus,
		Status:     resp.StatusCode(),
		Provider:   h.name,
		RetryAfter: UpstreamRetryAfter(&resp.Header, now),
	}
}

// UpstreamRetryAfter reads OpenAI's retry-after-ms (milliseconds) and then
// the standard Retry-After (seconds or HTTP date, relative to now); 0 when
// neither is usable.
func UpstreamRetryAfter(h *fasthttp.ResponseHeader, now time.Time) time.Duration {
	if v := h.Peek("retry-after-ms"); len(v) > 0 {
		if ms, err := strconv.ParseFloat(string(v), 64); err == nil && ms > 0 && ms <= 86400e3 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return ParseRetryAfter(h.Peek("retry-after"), now)
}
