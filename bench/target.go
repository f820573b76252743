package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrRemoteTarget is returned for a target that is not on loopback when
// remote targets were not allowed explicitly: a load test aimed at the
// wrong host is an attack on it.
var ErrRemoteTarget = errors.New("target is not a loopback address (pass -allow-remote to load-test another host)")

// CheckLoopback returns ErrRemoteTarget unless rawURL's host is a loopback
// IP literal, "localhost", or a name resolving only to loopback addresses.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("target %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("target %q: scheme must be http", rawURL)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("target %q: no host", rawURL)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("target %q: %w", rawURL, ErrRemoteTarget)
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return fmt.Errorf("target %q: %w", rawURL, ErrRemoteTarget)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("target %q: %w", rawURL, ErrRemoteTarget)
		}
	}
	return nil
}

// Variant is one pre-built request: its URL, bearer credential and body.
// Bodies are built once so the send path only copies bytes.
type Variant struct {
	// Label names the variant in error counts (e.g. the workspace).
	Label string
	URL   string
	Auth  string
	Body  []byte
}

// Target is one endpoint under load: a persona chat API or an upstream's
// chat completions route, with the variants to cycle through.
type Target struct {
	// Name is "gateway" or "direct" in reports.
	Name     string
	Proto    Proto
	Stream   bool
	Variants []Variant
	client   *fasthttp.HostClient
	readers  sync.Pool
}

// RequestSpec is what each request asks for.
type RequestSpec struct {
	UserText        string
	MaxOutputTokens int
	Stream          bool
	// Model is the upstream model name (direct targets only).
	Model string
	// SystemPrompt is sent as the system message to direct targets, so the
	// upstream sees the same prompt size as through the gateway.
	SystemPrompt string
}

// PersonaBody builds the persona chat request body.
func PersonaBody(s RequestSpec) []byte {
	m := map[string]any{"userText": s.UserText}
	if s.MaxOutputTokens > 0 {
		m["maxOutputTokens"] = s.MaxOutputTokens
	}
	if s.Stream {
		m["stream"] = true
	}
	b, _ := json.Marshal(m)
	return b
}

// OpenAIBody builds the chat completions body the gateway would send
// upstream for the same request.
func OpenAIBody(s RequestSpec) []byte {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	m := map[string]any{"model": s.Model}
	var msgs []msg
	if s.SystemPrompt != "" {
		msgs = append(msgs, msg{"system", s.SystemPrompt})
	}
	m["messages"] = append(msgs, msg{"user", s.UserText})
	if s.MaxOutputTokens > 0 {
		m["max_tokens"] = s.MaxOutputTokens
	}
	if s.Stream {
		m["stream"] = true
		m["stream_options"] = map[string]bool{"include_usage": true}
	}
	b, _ := json.Marshal(m)
	return b
}

// NewTarget returns a target whose variants all share one host. maxConns
// bounds its connections (each open stream holds one); timeout bounds each
// read from the server.
func NewTarget(name string, proto Proto, stream bool, variants []Variant, maxConns int, timeout time.Duration) (*Target, error) {
	if len(variants) == 0 {
		return nil, errors.New("target " + name + ": no variants")
	}
	u, err := url.Parse(variants[0].URL)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	for _, v := range variants[1:] {
		if w, err := url.Parse(v.URL); err != nil || w.Host != u.Host {
			return nil, fmt.Errorf("target %s: variants must share one host", name)
		}
	}
	t := &Target{Name: name, Proto: proto, Stream: stream, Variants: variants}
	t.client = &fasthttp.HostClient{
		Addr:                          u.Host,
		MaxConns:                      maxConns,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   timeout,
		WriteTimeout:                  timeout,
		MaxConnWaitTimeout:            timeout,
		StreamResponseBody:            stream,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		ReadBufferSize:                8192,
	}
	t.readers.New = func() any { return &streamReader{br: bufio.NewReaderSize(nil, 4096), p: NewSSEParser(proto)} }
	return t, nil
}

// CloseIdle closes idle connections.
func (t *Target) CloseIdle() { t.client.CloseIdleConnections() }

type streamReader struct {
	br *bufio.Reader
	p  *SSEParser
}

// Outcome is what one request did. Times are offsets from its due time.
type Outcome struct {
	Status int
	// Code is the error code ("" on success): the API's error code, or a
	// transport error class.
	Code string
	// Done is the time the last byte arrived (or the error happened).
	Done time.Duration
	// Sent is when the request was launched; Done and FirstToken minus
	// Sent are the target's service time, without the bench's lateness.
	Sent time.Duration
	// FirstToken is the first delta's arrival (streams; 0 when none).
	FirstToken time.Duration
	Tokens     int
	// Incomplete marks a stream that ended without done/[DONE].
	Incomplete bool
}

// OK reports a 200 whose stream, if any, ended cleanly.
func (o *Outcome) OK() bool { return o.Status == 200 && o.Code == "" && !o.Incomplete }

// Do sends variant v due at due and waits for the whole answer; gaps
// receives each inter-token gap of a stream.
func (t *Target) Do(v int, due time.Time, deadline time.Time, gaps func(time.Duration)) Outcome {
	vr := &t.Variants[v%len(t.Variants)]
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	vr.fill(req)
	var o Outcome
	err := t.client.DoDeadline(req, resp, deadline)
	if err != nil {
		o.Done = time.Since(due)
		o.Code = transportCode(err)
		return o
	}
	o.Status = resp.StatusCode()
	bs := resp.BodyStream()
	if o.Status != 200 {
		o.Code = errorStatusCode(resp, bs, o.Status)
		o.Done = time.Since(due)
		return o
	}
	if !t.Stream {
		if bs != nil {
			_, _ = io.Copy(io.Discard, bs)
			_ = resp.CloseBodyStream()
		}
		o.Done = time.Since(due)
		return o
	}
	if bs == nil {
		o.Done = time.Since(due)
		o.Incomplete = true
		o.Code = "no_stream"
		return o
	}
	t.readStream(bs, due, gaps, &o)
	_ = resp.CloseBodyStream()
	return o
}

// errorStatusCode reads a non-200 answer's body and names it for the
// error table: "http_503", or "503 rate_limited" when the body carries an
// error code.
func errorStatusCode(resp *fasthttp.Response, bs io.Reader, status int) string {
	var body []byte
	if bs != nil {
		body, _ = io.ReadAll(io.LimitReader(bs, 4096))
		_ = resp.CloseBodyStream()
	} else {
		body = resp.Body()
	}
	if c := errorCode(body); len(c) > 0 {
		return strconv.Itoa(status) + " " + string(c)
	}
	return "http_" + strconv.Itoa(status)
}

// readStream reads an event stream to its end into o: tokens, the time to
// the first, the gaps between them (to gaps, when not nil), and whether
// and how it ended.
func (t *Target) readStream(bs io.Reader, due time.Time, gaps func(time.Duration), o *Outcome) {
	sr := t.readers.Get().(*streamReader)
	sr.br.Reset(bs)
	sr.p.Reset()
	o.Incomplete = true
	var last time.Duration
	for {
		line, err := sr.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue // an over-long line: only its tail matters to us
		}
		if len(line) > 0 {
			switch sr.p.Line(line) {
			case EvToken:
				now := time.Since(due)
				if o.Tokens == 0 {
					o.FirstToken = now
				} else if gaps != nil {
					gaps(now - last)
				}
				last = now
				o.Tokens++
			case EvDone:
				o.Incomplete = false
			case EvError:
				o.Code = "stream " + string(sr.p.ErrorCode())
			}
		}
		if err != nil {
			if err != io.EOF && o.Incomplete && o.Code == "" {
				o.Code = "stream_" + transportCode(err)
			}
			break
		}
	}
	if o.Incomplete && o.Code == "" {
		o.Code = "stream_incomplete"
	}
	o.Done = time.Since(due)
	sr.br.Reset(nil)
	t.readers.Put(sr)
}

var contentJSON = []byte("application/json")

// transportCode classifies a client-side failure for the error table.
func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrConnPoolStrategyNotImpl):
		return "no_free_conns"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn_closed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.EADDRNOTAVAIL):
		return "out_of_sockets"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport_error"
}

// holdOne opens one stream, reports (once) when its first delta arrived or
// it failed, and keeps it open until release is closed.
func (t *Target) holdOne(v int, deadline time.Time, release <-chan struct{}, first func(code string)) {
	vr := &t.Variants[v%len(t.Variants)]
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	vr.fill(req)
	if err := t.client.DoDeadline(req, resp, deadline); err != nil {
		first(transportCode(err))
		return
	}
	bs := resp.BodyStream()
	if resp.StatusCode() != 200 || bs == nil {
		first("http_" + strconv.Itoa(resp.StatusCode()))
		if bs != nil {
			_ = resp.CloseBodyStream()
		}
		return
	}
	p := NewSSEParser(t.Proto)
	br := bufio.NewReaderSize(bs, 512)
	for {
		line, err := br.ReadSlice('\n')
		if k := p.Line(line); k == EvToken {
			first("")
			break
		} else if k == EvDone || k == EvError || (err != nil && err != bufio.ErrBufferFull) {
			first("stream_ended_before_hold")
			_ = resp.CloseBodyStream()
			return
		}
	}
	<-release
	if c, ok := bs.(fasthttp.ReadCloserWithError); ok {
		_ = c.CloseWithError(errors.New("hold released"))
	} else {
		_ = resp.CloseBodyStream()
	}
}

// fill makes req the variant's POST.
func (vr *Variant) fill(req *fasthttp.Request) {
	req.SetRequestURI(vr.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentTypeBytes(contentJSON)
	if vr.Auth != "" {
		req.Header.Set("Authorization", vr.Auth)
	}
	req.SetBodyRaw(vr.Body)
}
