package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/moonborn/edge/internal/sse"
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
	// MaxQueue > 0 lets a request wait for a free connection (up to its
	// deadline) when MaxConns are busy; the Pool bounds how many wait.
	// 0 fails such a request at once as saturated.
	MaxQueue int
	// MaxEventBytes caps one SSE event; 0 means sse.DefaultMaxEvent.
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
	readers sync.Pool // *sse.Reader
	// leases hands each in-flight request's lease (by *fasthttp.Request)
	// to RoundTrip, which runs inside the HostClient's Do.
	leases sync.Map
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
		opts.MaxEventBytes = sse.DefaultMaxEvent
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
		Addr:     addr,
		Name:     "moonborn-edge",
		IsTLS:    isTLS,
		MaxConns: opts.MaxConns,
		// Complete buffers the reply up to this; Stream asks per request
		// for a streamed body.
		MaxResponseBodySize: opts.MaxBodyBytes,
		// Error texts must not quote upstream bytes.
		SecureErrorLogMessage: true,
		// POST is never retried here: the pool decides about retries.
		RetryIf: func(*fasthttp.Request) bool { return false },
		Dial: func(addr string) (net.Conn, error) {
			c, err := dialer.Dial("tcp", addr)
			if err != nil {
				return nil, &upstreamDialError{err: err}
			}
			return &upstreamConn{Conn: c}, nil
		},
	}
	if opts.MaxQueue > 0 {
		// Each wait is bounded by the attempt's own deadline (RoundTrip
		// passes it to AcquireConn); this is only the ceiling.
		h.client.MaxConnWaitTimeout = max(opts.Timeout, opts.FirstTokenTimeout)
	}
	h.client.Transport = h
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

// Complete posts req (releasing it) under ctx asking for a JSON reply,
// and calls decode with the whole 2xx reply body, which is valid only
// during the call. Transport failures and non-2xx replies are
// *UpstreamError; ctx's end is ErrAborted (cancelled) or a KindTimeout
// error (deadline); decode's error is returned as is. The exchange is
// bounded by Timeout and by ctx's deadline, whichever comes first.
func (h *UpstreamHTTP) Complete(ctx context.Context, req *fasthttp.Request, decode func(body []byte) error) error {
	defer fasthttp.ReleaseRequest(req)
	if ctx.Err() != nil {
		return ContextError(h.name, ctx)
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.Header.Set(fasthttp.HeaderAccept, "application/json")
	injectTraceparent(ctx, req)
	l := newLease(ctx, time.Now().Add(h.opts.Timeout))
	err := h.do(l, req, resp)
	if err != nil {
		l.release(false)
		return h.leaseError(l, h.doError(err))
	}
	l.release(!resp.ConnectionClose())
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		return h.statusError(resp, time.Now())
	}
	return decode(resp.Body())
}

// Stream posts req (releasing it, now or with the returned body) under
// ctx asking for an event stream, and returns the reply's event stream
// once a 2xx text/event-stream reply's headers arrived. The first-token
// deadline starts now; ctx's cancellation or deadline ends the stream at
// any point, closing the upstream connection.
func (h *UpstreamHTTP) Stream(ctx context.Context, req *fasthttp.Request) (*SSEBody, error) {
	if ctx.Err() != nil {
		fasthttp.ReleaseRequest(req)
		return nil, ContextError(h.name, ctx)
	}
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	req.Header.Set(fasthttp.HeaderAccept, "text/event-stream")
	injectTraceparent(ctx, req)
	resp.StreamBody = true
	l := newLease(ctx, start.Add(h.opts.FirstTokenTimeout))
	fail := func(err error) (*SSEBody, error) {
		l.release(false)
		fasthttp.ReleaseResponse(resp)
		fasthttp.ReleaseRequest(req)
		return nil, h.leaseError(l, err)
	}
	if err := h.do(l, req, resp); err != nil {
		return fail(h.doError(err))
	}
	body := resp.BodyStream()
	if body == nil {
		return fail(Errorf(h.name, KindProtocol, "reply without a body stream"))
	}
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		e := h.statusError(resp, time.Now())
		if drainSmall(body) {
			resp.CloseBodyStream()
			l.release(true)
			fasthttp.ReleaseResponse(resp)
			fasthttp.ReleaseRequest(req)
			return nil, e
		}
		return fail(e)
	}
	if !bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		return fail(Errorf(h.name, KindProtocol, "reply is not an event stream"))
	}
	// RoundTrip left the head's deadline armed on the connection; from
	// here the stream's timer governs, so lift it or it would cut every
	// stream longer than FirstTokenTimeout.
	_ = l.raw.Conn.SetReadDeadline(time.Time{})
	rd, _ := h.readers.Get().(*sse.Reader)
	if rd == nil {
		rd = &sse.Reader{}
	}
	rd.Reset(body, h.opts.MaxEventBytes)
	b := &SSEBody{h: h, l: l, req: req, resp: resp, rd: rd}
	b.timer = time.AfterFunc(h.opts.FirstTokenTimeout-time.Since(start), b.expire)
	return b, nil
}

// OpenStream is Stream for a wire protocol's Provider.Stream: it posts
// req for r and hands the reply's event stream, as the protocol-independent
// part of r's stream (NewStreamBase), to wrap, which adds the protocol's
// reading of its events.
func (h *UpstreamHTTP) OpenStream(ctx context.Context, req *fasthttp.Request, r *Request, wrap func(StreamBase) Stream) (Stream, error) {
	body, err := h.Stream(ctx, req)
	if err != nil {
		return nil, err
	}
	return wrap(NewStreamBase(h.name, body, r)), nil
}

// do runs one exchange through the HostClient (which runs RoundTrip)
// with l as its lease.
func (h *UpstreamHTTP) do(l *lease, req *fasthttp.Request, resp *fasthttp.Response) error {
	h.leases.Store(req, l)
	err := h.client.Do(req, resp)
	h.leases.Delete(req)
	return err
}

// RoundTrip implements fasthttp.RoundTripper for the HostClient: one
// exchange on a pooled connection that the request's lease holds, so the
// lease can cut it at any moment. It writes the request and reads the
// reply's head (for a streamed reply; the whole reply otherwise) by the
// lease's deadline. Reusable connections go back to the pool when the
// reply was read whole; a streamed reply's connection stays leased until
// its SSEBody is closed. It never asks for a retry: the Pool decides.
func (h *UpstreamHTTP) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	v, ok := h.leases.Load(req)
	if !ok {
		return false, errors.New("upstream request without a lease")
	}
	l := v.(*lease)
	cc, err := hc.AcquireConn(time.Until(l.deadline), false)
	if err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			err = errQueueTimeout // the deadline passed while queued for a connection
		}
		return false, err
	}
	conn := cc.Conn()
	raw := rawUpstreamConn(conn)
	give := func(discard bool) {
		if discard {
			hc.CloseConn(cc)
		} else {
			hc.ReleaseConn(cc)
		}
	}
	if raw == nil {
		give(true)
		return false, errors.New("upstream connection of an unknown kind")
	}
	if !l.attach(raw, give) {
		return false, errLeaseCut
	}
	resp.ParseNetConn(conn)
	if err := conn.SetDeadline(l.deadline); err != nil {
		return false, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		return false, err
	}
	br := hc.AcquireReader(conn)
	if err := resp.ReadLimitBody(br, hc.MaxResponseBodySize); err != nil {
		hc.ReleaseReader(br)
		return false, err
	}
	if resp.StreamBody && resp.BodyStream() != nil {
		l.reader = func() { hc.ReleaseReader(br) }
		return false, nil
	}
	hc.ReleaseReader(br)
	return false, nil
}

// drainSmall reads a small error body to its end, reporting whether it
// ended (so the connection can be reused).
func drainSmall(body io.Reader) bool {
	var scratch [4096]byte
	for range 16 {
		_, err := body.Read(scratch[:])
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
