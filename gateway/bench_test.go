package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers/mock"
)

// benchServer is a Server with the in-process mock provider (20 tokens,
// no delay), a real authenticator and a real persona resolver, and a
// ledger that discards.
func benchServer(b testing.TB, withMetrics bool) *Server {
	return mockServer(b, withMetrics, mock.Config{OutputTokens: 20})
}

// benchFixture is the handler benchmarks' caller and persona: API key
// "key" of workspace w, persona psn_x (default model m).
func benchFixture(tb testing.TB) (*policy.Authenticator, *persona.Resolver) {
	tb.Helper()
	auth, err := policy.NewAuthenticator(policy.AuthConfig{APIKeys: []policy.APIKeyConfig{
		{ID: "k", Workspace: "w", SHA256: policy.HashKey("key")}}})
	if err != nil {
		tb.Fatal(err)
	}
	var pc persona.Config
	pc.SetDefaults()
	res, err := persona.NewResolver(persona.NewFileSource([]persona.Persona{
		{ID: "psn_x", Workspace: "w", SystemPrompt: "You are terse.", DefaultModel: "m"}}), pc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(res.Close)
	return auth, res
}

// mockServer is benchServer with the mock provider configured by mc.
func mockServer(b testing.TB, withMetrics bool, mc mock.Config) *Server {
	b.Helper()
	auth, res := benchFixture(b)
	in, _ := policy.ParsePrice("0.15")
	out, _ := policy.ParsePrice("0.6")
	models := map[string]*Model{"m": {ID: "m", ProviderName: "mock", Provider: mock.New("mock", mc),
		UpstreamModel: "m", Prices: policy.Prices{Input: in, Output: out}, MaxOutputTokens: 100}}
	var m *Metrics
	if withMetrics {
		m = NewMetrics(prometheus.NewRegistry(), models)
	}
	s, err := New(Options{Auth: auth, Personas: res, Ledger: discardLedger{}, Models: models, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

type discardLedger struct{}

func (discardLedger) Record(ledger.UsageRecord) {}
func (discardLedger) Close() error              { return nil }

// nullConn is a connection that discards writes; the stream relay needs
// one to move its write deadline.
type nullConn struct{ net.Conn }

func (nullConn) Write(p []byte) (int, error)      { return len(p), nil }
func (nullConn) SetWriteDeadline(time.Time) error { return nil }
func (nullConn) SetReadDeadline(time.Time) error  { return nil }
func (nullConn) LocalAddr() net.Addr              { return benchAddr }
func (nullConn) RemoteAddr() net.Addr             { return benchAddr }

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

func benchHandler(b *testing.B, body string, withMetrics bool) {
	benchRoute(b, benchServer(b, withMetrics), "/v1/personas/psn_x/chat", body)
}

// benchRoute serves one POST to path with body (and hdr, name/value
// pairs) through s's handler per iteration, without a network.
func benchRoute(b *testing.B, s *Server, path, body string, hdr ...string) {
	h := s.Handler()
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.Header.Set("Authorization", "Bearer key")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Init2(nullConn{}, nil, true)
		req.CopyTo(&ctx.Request)
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// benchStream serves the gateway on loopback TCP and reads whole
// streams over it with a raw HTTP/1.1 client: the relay runs on the
// hijacked connection as in production.
func benchStream(b *testing.B, withMetrics bool) {
	s := benchServer(b, withMetrics)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	b.Cleanup(func() { _ = s.Shutdown(context.Background()); _ = ln.Close() })
	body := `{"userText":"Hello there, how are you today?","stream":true}`
	req := []byte(fmt.Sprintf("POST /v1/personas/psn_x/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	buf := make([]byte, 64<<10)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() { // one keep-alive connection, stream after stream
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], []byte("0\r\n\r\n")) {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				b.Fatalf("after %q: %v", buf[:n], err)
			}
		}
		if !bytes.Contains(buf[:n], []byte("event: done")) {
			b.Fatalf("stream: %q", buf[:n])
		}
	}
}

func BenchmarkChat(b *testing.B) {
	benchHandler(b, `{"userText":"Hello there, how are you today?"}`, true)
}

// BenchmarkChatNoMetrics is BenchmarkChat without instrumentation, to
// price the metrics.
func BenchmarkChatNoMetrics(b *testing.B) {
	benchHandler(b, `{"userText":"Hello there, how are you today?"}`, false)
}

// BenchmarkChatStream is the same with stream: true and a 20-delta relay.
func BenchmarkChatStream(b *testing.B) { benchStream(b, true) }

// BenchmarkChatStreamNoMetrics prices the stream instrumentation.
func BenchmarkChatStreamNoMetrics(b *testing.B) { benchStream(b, false) }

// sseWriterRelay is a relay writing to a connection that discards, as
// the relay's SSE writer sees it mid-stream.
func sseWriterRelay(tb testing.TB) *relay {
	s := benchServer(tb, false)
	r := newRelay(s, &exchange{}, nil, nil, false)
	r.conn = nullConn{}
	r.headSent = true
	r.ping = time.NewTimer(time.Hour)
	tb.Cleanup(func() { r.ping.Stop() })
	return r
}

// Writing a delta event (encode, chunk, write) allocates nothing.
func TestWriteDeltaAllocs(t *testing.T) {
	r := sseWriterRelay(t)
	d := []byte(`Hello "world" \ 1`)
	if n := testing.AllocsPerRun(1000, func() {
		if err := r.writeDelta(d); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per delta written, want 0", n)
	}
}

// BenchmarkSSEWriter is the relay's per-delta cost: JSON-escape the text,
// frame the event as an HTTP chunk, write it.
func BenchmarkSSEWriter(b *testing.B) {
	r := sseWriterRelay(b)
	d := []byte(" the quick brown fox")
	b.ReportAllocs()
	for b.Loop() {
		if err := r.writeDelta(d); err != nil {
			b.Fatal(err)
		}
	}
}
