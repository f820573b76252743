package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Requests fasthttp could not read. fasthttp's own error text quotes the
// raw request (credentials included) unless SecureErrorLogMessage is set,
// and an anonymous caller can send such requests as fast as the network
// allows; so what reaches the log is a fixed reason, counted in a metric,
// at a bounded rate, never the error's text.

// The reasons of moonborn_unreadable_requests_total and of the log line.
const (
	reasonHeadersTooLarge = "headers_too_large"
	reasonBodyTooLarge    = "body_too_large"
	reasonTimeout         = "timeout"
	reasonBadHeaders      = "malformed_headers"
	reasonBadBody         = "malformed_body"
	reasonMalformed       = "malformed"
)

// unreadableReason classifies a read or parse error into a fixed reason.
func unreadableReason(err error) string {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return reasonBodyTooLarge
	case errors.As(err, &small):
		return reasonHeadersTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return reasonTimeout
	}
	// Matched on fasthttp's fixed wording, never logged.
	switch msg := err.Error(); {
	case strings.Contains(msg, "request headers"), strings.Contains(msg, "header"),
		strings.Contains(msg, "content-length"), strings.Contains(msg, "transfer-encoding"):
		return reasonBadHeaders
	case strings.Contains(msg, "body"), strings.Contains(msg, "chunk"):
		return reasonBadBody
	}
	return reasonMalformed
}

// serveParseError answers requests fasthttp could not read, in the API's
// error shape rather than fasthttp's plain text, counts them and logs a
// short reason at a bounded rate. The reply is followed by a lingering
// close (see linger) so that clients still writing (an oversized or
// unparsable body, huge headers) read it rather than a reset.
func (s *Server) serveParseError(ctx *fasthttp.RequestCtx, err error) {
	s.setRequestID(ctx)
	reason := unreadableReason(err)
	s.opts.Metrics.unreadable(reason)
	s.unreadable.logLimited.log(s.log, s.now(), "unreadable request", "reason", reason, "remote", remoteIP(ctx))
	switch reason {
	case reasonBodyTooLarge:
		writeRouteError(ctx, &apiError{status: http.StatusRequestEntityTooLarge, code: codePayloadTooLarge,
			message: "request body exceeds " + strconv.Itoa(s.opts.MaxBodyBytes) + " bytes"})
	case reasonHeadersTooLarge:
		writeError(ctx, &apiError{status: http.StatusRequestHeaderFieldsTooLarge, code: codePayloadTooLarge,
			message: "request headers too large"})
	case reasonTimeout:
		// API.md has no code of its own for this; the request was not
		// received whole, as for a malformed one.
		writeError(ctx, &apiError{status: http.StatusRequestTimeout, code: codeValidation,
			message: "request not received within the server's read timeout"})
	default:
		writeError(ctx, validationError("request", "malformed HTTP request"))
	}
	s.opts.Metrics.answered(routeOther, ctx.Response.StatusCode(), "")
	ctx.SetConnectionClose()
	if reason != reasonTimeout { // a client past the read timeout gets no more of it
		s.linger(ctx)
	}
}

func remoteIP(ctx *fasthttp.RequestCtx) string {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// linger sends the reply now, half-closes the connection and reads what the
// client still sends before fasthttp closes it. Closing a socket with
// unread bytes makes the kernel answer with a reset, which destroys the
// reply in the client's receive buffer before a client that writes its
// whole body first (Python's http.client, curl, Go's net/http often) has
// read it. The drain is bounded by lingerBytes and by the server's read
// timeout, the budget any request body has, so it is no slowloris
// vector; past either bound the connection is closed as before.
//
// fasthttp writes the reply again after the handler; that write fails on
// the half-closed socket and is ignored, as the error path ignores it.
func (s *Server) linger(ctx *fasthttp.RequestCtx) {
	c := ctx.Conn()
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	hc, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	if _, err := ctx.Response.WriteTo(c); err != nil {
		return
	}
	if hc.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(s.opts.ReadTimeout))
	buf := s.unreadable.drainBufs.Get().(*[]byte)
	defer s.unreadable.drainBufs.Put(buf)
	limit := s.lingerBytes()
	for n := int64(0); n < limit; {
		m, err := c.Read(*buf)
		n += int64(m)
		if err != nil {
			return
		}
	}
}

// lingerBytes bounds the drain after a 413: 64 times the body limit, so
// bodies up to 64× the limit still see their reply.
func (s *Server) lingerBytes() int64 { return 64 * int64(s.opts.MaxBodyBytes) }

// unreadableRequests is what the Server keeps for requests fasthttp
// could not read: the log lines anonymous callers can cause, at a bounded
// rate, and the buffers the lingering close after a 413 reads through.
type unreadableRequests struct {
	logLimited logLimiter
	drainBufs  sync.Pool // *[]byte
}

// logLimiter lets through a burst of lines, then one per interval, and
// says how many it held back. The zero value is ready; it is safe for
// concurrent use.
type logLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

const (
	logBurst    = 10
	logInterval = time.Second
)

// allow reports whether a line may be written at now, and how many were
// held back since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = logBurst
	} else if d := now.Sub(l.last); d > 0 {
		l.tokens = min(logBurst, l.tokens+float64(d)/float64(logInterval))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// log writes msg at Warn when the limiter allows it.
func (l *logLimiter) log(log *slog.Logger, now time.Time, msg string, args ...any) {
	ok, held := l.allow(now)
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	log.Warn(msg, args...)
}

// fasthttpLogger routes fasthttp's own messages into slog with every
// error reduced to its reason: the error of a request fasthttp could not
// read quotes the request. Lines share the parse errors' rate limit.
type fasthttpLogger struct{ s *Server }

func (l fasthttpLogger) Printf(format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = unreadableReason(err)
		}
	}
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(format, "error when serving connection") {
		// A request's own error: a parse error was answered, counted and
		// logged by serveParseError; the rest are clients going away.
		l.s.log.Debug(msg, "component", "fasthttp")
		return
	}
	l.s.unreadable.logLimited.log(l.s.log, l.s.now(), msg, "component", "fasthttp")
}
