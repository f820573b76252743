package providers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultMaxBodyBytes caps a non-streaming upstream reply when
// UpstreamOptions.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 8 << 20

// UpstreamOptions are the transport settings of one upstream deployment, as
// the wire-protocol packages pass them to NewUpstreamHTTP after applying
// their Config defaults. Every duration must be positive.
type UpstreamOptions struct {
	// Timeout bounds a whole non-streaming exchange, body included.
	Timeout time.Duration
	// ConnectTimeout bounds dialing a new connection (TCP only; the TLS
	// handshake counts against the request's own deadline).
	ConnectTimeout time.Duration
	// FirstTokenTimeout bounds a stream from sending the request to the
	// first text delta (the protocol layer calls SSEBody.Delivered).
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds the gap between two events after the first delta.
	IdleTimeout time.Duration
	// MaxConns caps open connections; every open stream holds one.
	MaxConns int
	// MaxEventBytes caps one SSE event; 0 means DefaultSSEMaxEvent.
	MaxEventBytes int
	// MaxBodyBytes caps a non-streaming reply; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int
}

// UpstreamHTTP is the HTTP side shared by the wire-protocol packages: one
// fasthttp.HostClient for one endpoint URL, the mapping of transport
// failures to *UpstreamError, and the deadlines of streamed replies. It is
// safe for concurrent use.
type UpstreamHTTP struct {
	name    string
	url     string
	client  *fasthttp.HostClient
	opts    UpstreamOptions
	readers sync.Pool // *SSEReader
	bodies  sync.Pool // *[]byte, non-streaming reply bodies
}

// ParseUpstreamURL checks that raw is an absolute http or https URL with a
// host and returns it parsed; the configs validate base URLs with it.
func ParseUpstreamURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, errors.New("must be an absolute http(s) URL without credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not carry a query or fragment")
	}
	return u, nil
}

// NewUpstreamHTTP builds the client for endpoint (the full URL requests are
// posted to). name labels errors.
func NewUpstreamHTTP(name, endpoint string, opts UpstreamOptions) (*UpstreamHTTP, error) {
	u, err := ParseUpstreamURL(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %w", err)
	}
	if opts.Timeout <= 0 || opts.ConnectTimeout <= 0 || opts.FirstTokenTimeout <= 0 || opts.IdleTimeout <= 0 || opts.MaxConns <= 0 {
		return nil, errors.New("upstream timeouts and MaxConns must be positive")
	}
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = DefaultSSEMaxEvent
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	isTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if isTLS {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	h := &UpstreamHTTP{name: name, url: endpoint, opts: opts}
	h.client = &fasthttp.HostClient{
		Addr:               addr,
		Name:               "moonborn-edge",
		IsTLS:              isTLS,
		MaxConns:           opts.MaxConns,
		StreamResponseBody: true,
		// Error texts must not quote upstream bytes.
		SecureErrorLogMessage: true,
		// POST is never retried here: the pool decides about retries.
		RetryIf: func(*fasthttp.Request) bool { return false },
		Dial: func(addr string) (net.Conn, error) {
			c, err := dialer.Dial("tcp", addr)
			if err != nil {
				return nil, &upstreamDialError{err: err}
			}
			return newUpstreamConn(c), nil
		},
	}
	return h, nil
}

// Name is the deployment name given to NewUpstreamHTTP.
func (h *UpstreamHTTP) Name() string { return h.name }

// NewRequest returns a pooled POST request to the endpoint with a JSON
// content type. The caller adds its headers and body, then hands it to
// Complete or Stream, which release it.
func (h *UpstreamHTTP) NewRequest() *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(h.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	return req
}

// Complete posts req (releasing it) asking for a JSON reply, and calls
// decode with the whole 2xx reply body, which is valid only during the
// call. Transport failures and non-2xx replies are *UpstreamError;
// decode's error is returned as is.
func (h *UpstreamHTTP) Complete(req *fasthttp.Request, decode func(body []byte) error) error {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	defer fasthttp.ReleaseRequest(req)
	req.Header.Set(fasthttp.HeaderAccept, "application/json")
	req.SetTimeout(h.opts.Timeout)
	if err := h.client.Do(req, resp); err != nil {
		return h.doError(err)
	}
	body, ok := resp.BodyStream().(fasthttp.ReadCloserWithError)
	if !ok {
		return Errorf(h.name, KindProtocol, "reply without a body stream")
	}
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		e := h.statusError(resp, time.Now())
		discardBody(body)
		return e
	}
	bp, _ := h.bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer h.bodies.Put(bp)
	data, err := readBody(body, (*bp)[:0], h.opts.MaxBodyBytes)
	*bp = data[:0]
	if err != nil {
		_ = body.CloseWithError(err)
		if errors.Is(err, errBodyTooLarge) {
			return &UpstreamError{Kind: KindProtocol, Provider: h.name, Detail: "reply body too large"}
		}
		return h.readError(err, "reading reply")
	}
	_ = body.CloseWithError(nil)
	return decode(data)
}

// Stream posts req (releasing it, now or with the returned body) asking
// for an event stream, and returns the reply's event stream once a 2xx
// text/event-stream reply's headers arrived. The first-token deadline
// starts now.
func (h *UpstreamHTTP) Stream(req *fasthttp.Request) (*SSEBody, error) {
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	req.Header.Set(fasthttp.HeaderAccept, "text/event-stream")
	req.SetTimeout(h.opts.FirstTokenTimeout)
	fail := func(err error) (*SSEBody, error) {
		fasthttp.ReleaseResponse(resp)
		fasthttp.ReleaseRequest(req)
		return nil, err
	}
	if err := h.client.Do(req, resp); err != nil {
		return fail(h.doError(err))
	}
	body, ok := resp.BodyStream().(fasthttp.ReadCloserWithError)
	if !ok {
		return fail(Errorf(h.name, KindProtocol, "reply without a body stream"))
	}
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		e := h.statusError(resp, time.Now())
		discardBody(body)
		return fail(e)
	}
	if !bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		_ = body.CloseWithError(errSSEUnfinished)
		return fail(Errorf(h.name, KindProtocol, "reply is not an event stream"))
	}
	// fasthttp left the first-token deadline armed on the connection; from
	// here the stream's timer governs, so lift it or it would cut every
	// stream longer than FirstTokenTimeout.
	var raw *upstreamConn
	if a, ok := resp.LocalAddr().(*upstreamConnAddr); ok {
		raw = a.conn
		_ = raw.Conn.SetReadDeadline(time.Time{})
	}
	rd, _ := h.readers.Get().(*SSEReader)
	if rd == nil {
		rd = &SSEReader{}
	}
	rd.Reset(body, h.opts.MaxEventBytes)
	b := &SSEBody{h: h, req: req, resp: resp, body: body, rd: rd, raw: raw}
	b.timer = time.AfterFunc(h.opts.FirstTokenTimeout-time.Since(start), b.expire)
	return b, nil
}

// SSEBody is the event stream of one streamed upstream reply, read under
// the first-token and idle deadlines. Its owner (the protocol package's
// Stream) calls Next, Delivered, Finish and Close from one goroutine; Abort
// may come from any goroutine, before or after Close. Timeouts and Abort
// interrupt a blocked read by closing the connection, which also tells the
// upstream to stop generating.
type SSEBody struct {
	h     *UpstreamHTTP
	req   *fasthttp.Request
	resp  *fasthttp.Response
	body  fasthttp.ReadCloserWithError
	rd    *SSEReader
	timer *time.Timer
	state atomic.Uint32

	// rawMu guards raw and released: Abort and the deadline timer close
	// the connection itself, which unblocks a read at once, instead of
	// calling the body's CloseWithError, which waits for a read in
	// progress to return (and the owner may be inside its NotifyWait
	// hook, writing to a slow client). released is set before the
	// connection can go back to the pool, after which it is not ours.
	rawMu    sync.Mutex
	raw      *upstreamConn
	released bool

	started bool // a text delta was delivered: the idle deadline applies
	ended   bool // the protocol's end marker was read
	closed  bool
	err     error
}

const (
	bodyLive uint32 = iota
	bodyAborted
	bodyExpired
)

var (
	errSSEUnfinished = errors.New("stream closed before its end")
	errSSEExpired    = errors.New("stream deadline passed")
	errBodyTooLarge  = errors.New("body too large")
)

// Next returns the next event. It returns io.EOF when the body ended
// cleanly (the protocol decides whether that was complete), ErrAborted
// after Abort, and an *UpstreamError for a deadline (KindTimeout), an
// oversized event (KindProtocol) or a broken connection (KindTruncated).
// Errors are sticky.
func (b *SSEBody) Next() (SSEEvent, error) {
	if b.err != nil {
		return SSEEvent{}, b.err
	}
	if b.state.Load() == bodyLive {
		ev, err := b.rd.Next()
		if err == nil {
			if b.started {
				b.timer.Reset(b.h.opts.IdleTimeout)
			}
			return ev, nil
		}
		b.err = err
	}
	switch b.state.Load() {
	case bodyAborted:
		b.err = ErrAborted
	case bodyExpired:
		detail := "no first token within " + b.h.opts.FirstTokenTimeout.String()
		if b.started {
			detail = "no event within idle timeout " + b.h.opts.IdleTimeout.String()
		}
		b.err = &UpstreamError{Kind: KindTimeout, Provider: b.h.name, Detail: detail}
	default:
		switch {
		case b.err == io.EOF:
		case errors.Is(b.err, errWaitAbandoned):
			// The owner's reader left (its NotifyWait hook said so): the
			// owner ended the stream, the upstream did nothing wrong, and
			// breakers must not count it.
			b.err = ErrAborted
		case errors.Is(b.err, ErrSSEEventTooLarge):
			b.err = &UpstreamError{Kind: KindProtocol, Provider: b.h.name, Detail: "event too large", Err: b.err}
		default:
			b.err = b.h.readError(b.err, "stream broke")
			if ue, ok := b.err.(*UpstreamError); ok && ue.Kind != KindTimeout {
				ue.Kind = KindTruncated
			}
		}
	}
	return SSEEvent{}, b.err
}

// Delivered records that a text delta went out: the first-token deadline
// is met and the idle deadline applies from now on.
func (b *SSEBody) Delivered() {
	if !b.started {
		b.started = true
		b.timer.Reset(b.h.opts.IdleTimeout)
	}
}

// NotifyWait implements WaitNotifier: f runs before each read from the
// upstream connection, which is where Next may block (bytes already
// buffered are parsed without a read). It reports false when the reply
// did not come on one of this client's connections.
func (b *SSEBody) NotifyWait(f func() bool) bool {
	if b.raw == nil || b.closed {
		return false
	}
	b.raw.beforeRead = f
	return true
}

// Finish records that the protocol's end marker was read, so Close may
// return the connection to the pool.
func (b *SSEBody) Finish() { b.ended = true }

// Aborted reports whether Abort was called.
func (b *SSEBody) Aborted() bool { return b.state.Load() == bodyAborted }

// Abort interrupts the stream from any goroutine: a blocked Next returns
// ErrAborted and the connection is closed. Safe to call more than once
// and after Close.
func (b *SSEBody) Abort() {
	if b.state.CompareAndSwap(bodyLive, bodyAborted) {
		b.interrupt(ErrAborted)
	}
}

func (b *SSEBody) expire() {
	if b.state.CompareAndSwap(bodyLive, bodyExpired) {
		b.interrupt(errSSEExpired)
	}
}

// interrupt cuts the upstream connection from any goroutine without
// waiting for the owner: the owner's read fails, and its Close releases
// the rest (the connection is then discarded, never pooled).
func (b *SSEBody) interrupt(cause error) {
	b.rawMu.Lock()
	if b.released {
		b.rawMu.Unlock()
		return
	}
	if b.raw != nil {
		_ = b.raw.Conn.Close()
		b.rawMu.Unlock()
		return
	}
	b.rawMu.Unlock()
	_ = b.body.CloseWithError(cause) // a connection not dialed by us
}

// Close releases the reply and request. After Finish it reads the rest of
// the body (briefly) so the connection can be reused; otherwise the
// connection is closed. Called once by the owner after its last Next.
func (b *SSEBody) Close() {
	if b.closed {
		return
	}
	b.closed = true
	if b.raw != nil {
		// The connection may go back to the pool below: the owner's hook
		// must not follow it to the next request.
		b.raw.beforeRead = nil
	}
	cause := errSSEUnfinished
	if b.err == io.EOF && b.state.Load() == bodyLive {
		cause = nil // the body ended cleanly: the connection is reusable
	} else if b.ended && b.err == nil && b.state.Load() == bodyLive {
		b.timer.Reset(min(b.h.opts.IdleTimeout, time.Second))
		if b.drain() {
			cause = nil
		}
	}
	b.timer.Stop()
	b.rawMu.Lock()
	b.released = true // from here the connection may serve another request
	b.rawMu.Unlock()
	if cause == nil && b.state.Load() != bodyLive {
		cause = errSSEUnfinished // cut by Abort or the timer meanwhile
	}
	_ = b.body.CloseWithError(cause)
	b.rd.Reset(nil, 0)
	b.h.readers.Put(b.rd)
	b.rd = nil
	fasthttp.ReleaseResponse(b.resp)
	fasthttp.ReleaseRequest(b.req)
	b.resp, b.req = nil, nil
}

// drain reads what follows the end marker, reporting whether the body
// ended within a few events.
func (b *SSEBody) drain() bool {
	for range 4 {
		if _, err := b.rd.Next(); err != nil {
			return err == io.EOF && b.state.Load() == bodyLive
		}
	}
	return false
}

// doError maps a failed Do to an *UpstreamError.
func (h *UpstreamHTTP) doError(err error) *UpstreamError {
	e := &UpstreamError{Provider: h.name, Err: err}
	var de *upstreamDialError
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		e.Kind, e.Detail, e.Err = KindSaturated, "no free connection", nil
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

// discardBody reads a small error body to its end so the connection can be
// reused, and closes it otherwise.
func discardBody(body fasthttp.ReadCloserWithError) {
	var scratch [4096]byte
	for range 16 {
		_, err := body.Read(scratch[:])
		if err == io.EOF {
			_ = body.CloseWithError(nil)
			return
		}
		if err != nil {
			break
		}
	}
	_ = body.CloseWithError(errSSEUnfinished)
}

// readBody appends r to dst until EOF, failing past limit bytes.
func readBody(r io.Reader, dst []byte, limit int) ([]byte, error) {
	for {
		if cap(dst)-len(dst) < 1024 {
			dst = slices.Grow(dst, max(4096, len(dst)))
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, errBodyTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// upstreamDialError marks a failure to connect, which fasthttp passes
// through from Dial unchanged.
type upstreamDialError struct{ err error }

func (e *upstreamDialError) Error() string { return e.err.Error() }
func (e *upstreamDialError) Unwrap() error { return e.err }

// upstreamConn wraps each dialed connection so a Response leads back to
// it: fasthttp records conn.LocalAddr() in the Response (ParseNetConn), and
// ours carries a pointer to the connection. A TLS connection reports its
// underlying connection's address, so this holds for https too.
type upstreamConn struct {
	net.Conn
	local upstreamConnAddr
	// beforeRead is the NotifyWait hook of the stream reading this
	// connection. Only that stream's owner goroutine sets it and reads
	// from the connection, so it needs no lock.
	beforeRead func() bool
}

// errWaitAbandoned fails a read whose NotifyWait hook said the reader left.
var errWaitAbandoned = errors.New("stream reader left")

// Read calls the registered hook before every read of the connection.
func (c *upstreamConn) Read(p []byte) (int, error) {
	if c.beforeRead != nil && !c.beforeRead() {
		return 0, errWaitAbandoned
	}
	return c.Conn.Read(p)
}

type upstreamConnAddr struct {
	net.Addr
	conn *upstreamConn
}

func newUpstreamConn(c net.Conn) *upstreamConn {
	uc := &upstreamConn{Conn: c}
	uc.local.Addr = c.LocalAddr()
	if uc.local.Addr == nil {
		uc.local.Addr = &net.TCPAddr{}
	}
	uc.local.conn = uc
	return uc
}

func (c *upstreamConn) LocalAddr() net.Addr { return &c.local }
