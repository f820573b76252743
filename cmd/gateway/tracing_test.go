package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// The collector the tracing tests export to is a real OpenTelemetry
// Collector built from the collector's Go modules (internal/otelcol, a
// module of its own): OTLP receiver in, OTLP/HTTP exporter out to a
// loopback sink here that decodes what it forwards. The test builds it
// once into the user's cache directory, keyed by the module's files, so
// CI needs nothing installed and later runs reuse the binary.

// collectorBinary builds (or finds) the test collector.
func collectorBinary(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("../../internal/otelcol")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "moonborn", "otelcol-"+hex.EncodeToString(h.Sum(nil))[:16]) // beside .ci/run's helm
	bin := filepath.Join(dir, "otelcol")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test collector: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the test collector in %v", time.Since(start).Round(time.Second))
	return bin
}

// siblingAttempts checks that a trace has two attempt spans, both the
// server span's children, and returns them with their attributes by
// deployment.
func siblingAttempts(t *testing.T, spans []*tracepb.Span) ([]*tracepb.Span, map[string]map[string]string) {
	t.Helper()
	srv := byKind(spans, tracepb.Span_SPAN_KIND_SERVER)[0]
	clients := byKind(spans, tracepb.Span_SPAN_KIND_CLIENT)
	if len(clients) != 2 {
		t.Fatalf("%d attempt spans, want 2", len(clients))
	}
	deps := map[string]map[string]string{}
	for _, c := range clients {
		if string(c.ParentSpanId) != string(srv.SpanId) {
			t.Fatal("an attempt span is not the server span's child")
		}
		a := spanAttrs(c)
		deps[a["moonborn.deployment"]] = a
	}
	return clients, deps
}

// spanSink receives what the collector exports, decoded.
type spanSink struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []*tracepb.ResourceSpans
}

func (s *spanSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		s.res = append(s.res, rs)
		for _, ss := range rs.ScopeSpans {
			s.spans = append(s.spans, ss.Spans...)
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// trace returns the spans of trace id (hex) received so far.
func (s *spanSink) trace(id string) []*tracepb.Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*tracepb.Span
	for _, sp := range s.spans {
		if hex.EncodeToString(sp.TraceId) == id {
			out = append(out, sp)
		}
	}
	return out
}

func (s *spanSink) all() []*tracepb.Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*tracepb.Span(nil), s.spans...)
}

// startCollector runs the test collector until the test ends and returns
// its OTLP/HTTP traces URL and the sink behind it.
func startCollector(t *testing.T) (string, *spanSink) {
	t.Helper()
	bin := collectorBinary(t)
	sink := &spanSink{}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	addr := testkit.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  otlp_http:
    endpoint: %s
    compression: none
    retry_on_failure: {enabled: false}
    sending_queue: {enabled: false}
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp_http]
`, addr, srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := testkit.StartProcess(t, "collector", 5*time.Second, exec.Command(bin, "--config", "file:"+cfg))
	testkit.Eventually(t, 30*time.Second, "the collector listening", func() bool {
		if proc.Exited() {
			t.Fatalf("the collector exited:\n%s", proc.Out.String())
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/v1/traces", sink
}

// recordingProxy forwards to a mock upstream and keeps the traceparent
// header of every request it forwarded ("" when there was none).
type recordingProxy struct {
	mu   sync.Mutex
	seen []string
	addr string
}

func startRecordingProxy(t *testing.T, up *mocktest.Upstream) *recordingProxy {
	t.Helper()
	target, _ := url.Parse("http://" + up.Addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0) // a lost hedge cancels its request: expected
	p := &recordingProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Header.Get("traceparent"))
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *recordingProxy) headers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// tracingConfig is testConfig with tracing to endpoint (empty: tracing
// off) and models served through recording proxies: tr-1 on one healthy
// upstream, fo-1 failing over from a (answers 500) to b, he-1 hedging
// from slow to b.
func tracingConfig(t *testing.T, endpoint string, good, failing, slow *recordingProxy) string {
	t.Helper()
	text := testConfig(t, nil, "")
	text = strings.Replace(text, "providers:\n", fmt.Sprintf(`providers:
  - {name: good, type: openai, openai: {baseURL: "http://%s/v1", apiKey: k, timeout: 5s, firstTokenTimeout: 5s}}
  - {name: failing, type: openai, openai: {baseURL: "http://%s/v1", apiKey: k, timeout: 2s}}
  - {name: slow, type: anthropic, anthropic: {baseURL: "http://%s", apiKey: k, timeout: 5s, firstTokenTimeout: 5s}}
`, good.addr, failing.addr, slow.addr), 1)
	text = strings.Replace(text, "models:\n", `models:
  - {id: tr-1, provider: good, upstreamModel: gpt-tr, maxOutputTokens: 100}
  - id: fo-1
    deployments: [{provider: failing, upstreamModel: gpt-fail, priority: 0}, {provider: good, upstreamModel: gpt-ok, priority: 1}]
    pool: {strategy: priority, maxAttempts: 2}
  - id: he-1
    deployments: [{provider: slow, upstreamModel: claude-slow, priority: 0}, {provider: good, upstreamModel: gpt-fast, priority: 1}]
    pool: {strategy: priority, maxAttempts: 2, hedge: {enabled: true, delay: 50ms}}
`, 1)
	if endpoint != "" {
		text += fmt.Sprintf("tracing: {enabled: true, endpoint: %q, batchTimeout: 20ms, serviceName: edge-test}\n", endpoint)
	}
	return text
}

func spanAttrs(sp *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes {
		m[kv.Key] = anyString(kv.Value)
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.Values {
			parts = append(parts, anyString(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return ""
}

// waitTrace waits until trace id has n spans at the sink.
func waitTrace(t *testing.T, sink *spanSink, id string, n int) []*tracepb.Span {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%d spans of trace %s", n, id), func() bool { return len(sink.trace(id)) >= n })
	return sink.trace(id)
}

func byKind(spans []*tracepb.Span, k tracepb.Span_SpanKind) []*tracepb.Span {
	var out []*tracepb.Span
	for _, sp := range spans {
		if sp.Kind == k {
			out = append(out, sp)
		}
	}
	return out
}

// TestTracesReachACollector: a real collector receives one server span
// per request and one client span per upstream attempt, with the caller's
// trace continued, attempts (failover and hedge) as siblings under the
// server span, the GenAI attributes, no prompt text, a span for a
// refused request, and the upstreams receive a traceparent naming their
// attempt span.
func TestTracesReachACollector(t *testing.T) {
	endpoint, sink := startCollector(t)
	good := startRecordingProxy(t, mocktest.Start(t, mock.ServerConfig{OutputTokens: 9}))
	failing := startRecordingProxy(t, mocktest.Start(t, mock.ServerConfig{FailStatus: 500}))
	slow := startRecordingProxy(t, mocktest.Start(t, mock.ServerConfig{TimeToFirstToken: 2 * time.Second}))
	g := startGateway(t, tracingConfig(t, endpoint, good, failing, slow))

	t.Run("caller's trace continued, upstream gets the attempt's traceparent", func(t *testing.T) {
		const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		r := g.Post("/v1/personas/psn_demo/chat", mocktest.KeyDemo, `{"userText":"the secret prompt","modelId":"tr-1"}`,
			"traceparent", "00-"+tid+"-00f067aa0ba902b7-01", "X-Request-Id", "req-traced-1")
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		spans := waitTrace(t, sink, tid, 2)
		servers, clients := byKind(spans, tracepb.Span_SPAN_KIND_SERVER), byKind(spans, tracepb.Span_SPAN_KIND_CLIENT)
		if len(servers) != 1 || len(clients) != 1 {
			t.Fatalf("%d server and %d client spans, want 1 and 1", len(servers), len(clients))
		}
		srv, att := servers[0], clients[0]
		if hex.EncodeToString(srv.ParentSpanId) != "00f067aa0ba902b7" {
			t.Fatalf("server span's parent %x, want the caller's span", srv.ParentSpanId)
		}
		if string(att.ParentSpanId) != string(srv.SpanId) {
			t.Fatal("the attempt span is not the server span's child")
		}
		sa, aa := spanAttrs(srv), spanAttrs(att)
		for k, want := range map[string]string{
			"moonborn.workspace": "wsp_demo", "moonborn.persona": "psn_demo", "gen_ai.request.model": "tr-1",
			"http.response.status_code": "200", "moonborn.outcome": "ok",
			"gen_ai.usage.output_tokens": "9", "moonborn.request_id": "req-traced-1",
		} {
			if sa[k] != want {
				t.Errorf("server span %s = %q, want %q", k, sa[k], want)
			}
		}
		for k, want := range map[string]string{
			"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-tr",
			"gen_ai.usage.output_tokens": "9", "moonborn.deployment": "good",
		} {
			if aa[k] != want {
				t.Errorf("attempt span %s = %q, want %q", k, aa[k], want)
			}
		}
		want := "00-" + tid + "-" + hex.EncodeToString(att.SpanId) + "-01"
		found := false
		for _, h := range good.headers() {
			found = found || h == want
		}
		if !found {
			t.Fatalf("the upstream received traceparents %q, want %q", good.headers(), want)
		}
	})

	t.Run("failover attempts are siblings", func(t *testing.T) {
		r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"fo-1"}`)
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		clients, deps := siblingAttempts(t, waitTrace(t, sink, traceOfProxy(t, failing), 3))
		if f := deps["failing"]; f["error.type"] != "status" || f["http.response.status_code"] != "500" || f["moonborn.attempt"] != "0" {
			t.Fatalf("failed attempt %v", f)
		}
		if ok := deps["good"]; ok["moonborn.attempt"] != "1" || ok["gen_ai.request.model"] != "gpt-ok" {
			t.Fatalf("second attempt %v", ok)
		}
		for _, c := range clients {
			if c.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR != (spanAttrs(c)["moonborn.deployment"] == "failing") {
				t.Fatalf("status of %s: %v", spanAttrs(c)["moonborn.deployment"], c.Status)
			}
		}
	})

	t.Run("a hedge is a sibling of the attempt it raced", func(t *testing.T) {
		resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"he-1","stream":true}`)
		defer resp.Body.Close()
		sr.UntilDone(t)
		spans := waitTrace(t, sink, traceOfProxy(t, slow), 3)
		_, deps := siblingAttempts(t, spans)
		srv := byKind(spans, tracepb.Span_SPAN_KIND_SERVER)[0]
		if deps["slow"]["moonborn.outcome"] != "lost" || deps["good"]["moonborn.hedge"] != "true" ||
			deps["good"]["gen_ai.response.finish_reasons"] != "[stop]" {
			t.Fatalf("attempts %v", deps)
		}
		if spanAttrs(srv)["moonborn.stream"] != "true" {
			t.Fatalf("server span %v", spanAttrs(srv))
		}
	})

	t.Run("a refused request has its span", func(t *testing.T) {
		const tid = "0af7651916cd43dd8448eb211c80319c"
		r := g.Post("/v1/chat/completions", "", `{"model":"tr-1","messages":[{"role":"user","content":"hi"}]}`,
			"traceparent", "00-"+tid+"-b7ad6b7169203331-01")
		if r.Status != 401 {
			t.Fatalf("status %d", r.Status)
		}
		spans := waitTrace(t, sink, tid, 1)
		a := spanAttrs(spans[0])
		if len(spans) != 1 || spans[0].Kind != tracepb.Span_SPAN_KIND_SERVER || a["http.response.status_code"] != "401" ||
			a["moonborn.outcome"] != "refused" || spans[0].Name != "POST /v1/chat/completions" {
			t.Fatalf("spans %v, attributes %v", spans, a)
		}
	})

	t.Run("no prompt text, no key in any attribute", func(t *testing.T) {
		for _, sp := range sink.all() {
			for k, v := range spanAttrs(sp) {
				for _, secret := range []string{"secret prompt", "You are terse", mocktest.KeyDemo, "sk-test"} {
					if strings.Contains(v, secret) {
						t.Fatalf("span %s attribute %s carries %q", sp.Name, k, secret)
					}
				}
			}
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if rs := sink.res[0]; resourceAttr(rs, "service.name") != "edge-test" {
			t.Fatalf("service.name %q", resourceAttr(rs, "service.name"))
		}
	})
}

func resourceAttr(rs *tracepb.ResourceSpans, key string) string {
	for _, kv := range rs.Resource.GetAttributes() {
		if kv.Key == key {
			return anyString(kv.Value)
		}
	}
	return ""
}

// traceOfProxy is the trace id of the latest traceparent p forwarded.
func traceOfProxy(t *testing.T, p *recordingProxy) string {
	t.Helper()
	h := p.headers()
	if len(h) == 0 || len(h[len(h)-1]) != 55 {
		t.Fatalf("upstream traceparents %q", h)
	}
	return h[len(h)-1][3:35]
}

// TestTracingOffSendsNoTraceparent: with tracing off (the default) an
// upstream gets no traceparent, even when the caller sent one.
func TestTracingOffSendsNoTraceparent(t *testing.T) {
	good := startRecordingProxy(t, mocktest.Start(t, mock.ServerConfig{}))
	g := startGateway(t, tracingConfig(t, "", good, good, good))
	r := g.Post("/v1/personas/psn_demo/chat", mocktest.KeyDemo, `{"userText":"hi","modelId":"tr-1"}`,
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if h := good.headers(); len(h) != 1 || h[0] != "" {
		t.Fatalf("upstream traceparents %q, want one request without", h)
	}
}
