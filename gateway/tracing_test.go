package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/internal/leantrace"
	"github.com/moonborn/edge/internal/otlpexport"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/mock"
)

// tracedServer is benchServer with the model served by a Pool over the
// in-process mock (so attempt spans exist) and tracer (nil: off).
func tracedServer(tb testing.TB, tracer trace.Tracer, content bool) *Server {
	tb.Helper()
	auth, res := benchFixture(tb)
	pool, err := providers.NewPool("m", []providers.DeploymentSpec{
		{Name: "mock-a", Provider: mock.New("mock-a", mock.Config{OutputTokens: 20}), Model: "m-up", System: "mock"}},
		providers.PoolConfig{}, nil, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	pool.Tracer = tracer
	models := map[string]*Model{"m": {ID: "m", ProviderName: "mock-a", Provider: pool,
		UpstreamModel: "m-up", MaxOutputTokens: 100}}
	s, err := New(Options{Auth: auth, Personas: res, Ledger: discardLedger{}, Models: models,
		Tracer: tracer, TraceContent: content})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// serveOnce runs one request through the handler.
func serveOnce(h fasthttp.RequestHandler, auth, body string, headers ...string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Init2(nullConn{}, nil, true)
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v1/personas/psn_x/chat")
	if auth != "" {
		ctx.Request.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		ctx.Request.Header.Set(headers[i], headers[i+1])
	}
	ctx.Request.Header.SetContentType("application/json")
	ctx.Request.SetBodyString(body)
	h(&ctx)
	return &ctx
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestTraceServerAndAttemptSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := tracedServer(t, tp.Tracer("test"), false)
	h := s.Handler()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := serveOnce(h, "Bearer key", `{"userText":"secret prompt text"}`,
		"traceparent", parent, "tracestate", "vendor=x")
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want server + attempt", len(spans))
	}
	attempt, server := spans[0], spans[1]
	if server.SpanKind() != trace.SpanKindServer || attempt.SpanKind() != trace.SpanKindClient {
		t.Fatalf("kinds %v, %v", server.SpanKind(), attempt.SpanKind())
	}
	if got := server.Parent().SpanID().String(); got != "00f067aa0ba902b7" || !server.Parent().IsRemote() {
		t.Fatalf("server parent %s, want the caller's span", got)
	}
	if server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %s, want the caller's", server.SpanContext().TraceID())
	}
	if server.SpanContext().TraceState().Get("vendor") != "x" {
		t.Fatalf("tracestate %q not kept", server.SpanContext().TraceState())
	}
	if attempt.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Fatal("attempt span is not the server span's child")
	}
	if server.Name() != "POST /v1/personas/{id}/chat" || attempt.Name() != "chat m-up" {
		t.Fatalf("names %q, %q", server.Name(), attempt.Name())
	}
	sa, aa := attrMap(server.Attributes()), attrMap(attempt.Attributes())
	for k, want := range map[string]string{
		"moonborn.workspace": "w", "moonborn.persona": "psn_x", "gen_ai.request.model": "m",
		"http.response.status_code": "200", "moonborn.outcome": "ok", "gen_ai.usage.output_tokens": "20",
	} {
		if sa[k] != want {
			t.Errorf("server %s = %q, want %q (all: %v)", k, sa[k], want, sa)
		}
	}
	for k, want := range map[string]string{
		"gen_ai.provider.name": "mock", "gen_ai.request.model": "m-up", "gen_ai.operation.name": "chat",
		"moonborn.deployment": "mock-a", "moonborn.attempt": "0", "gen_ai.usage.output_tokens": "20",
		"gen_ai.response.finish_reasons": `["stop"]`,
	} {
		if aa[k] != want {
			t.Errorf("attempt %s = %q, want %q (all: %v)", k, aa[k], want, aa)
		}
	}
	for _, sp := range spans {
		for _, kv := range sp.Attributes() {
			if strings.Contains(kv.Value.Emit(), "secret prompt") || strings.Contains(kv.Value.Emit(), "You are terse") {
				t.Fatalf("%s carries prompt text in %s", sp.Name(), kv.Key)
			}
		}
	}
}

func TestTraceRecordContent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := tracedServer(t, tp.Tracer("test"), true).Handler()
	serveOnce(h, "Bearer key", `{"userText":"secret prompt text"}`)
	sa := attrMap(rec.Ended()[1].Attributes())
	if !strings.Contains(sa["gen_ai.input.messages"], `"content":"secret prompt text"`) ||
		!strings.Contains(sa["gen_ai.input.messages"], `"role":"system"`) {
		t.Fatalf("input messages %q", sa["gen_ai.input.messages"])
	}
	if !strings.Contains(sa["gen_ai.output.messages"], `"role":"assistant"`) {
		t.Fatalf("output messages %q", sa["gen_ai.output.messages"])
	}
}

func TestTraceRefusedRequestsHaveSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := tracedServer(t, tp.Tracer("test"), false).Handler()
	cases := []struct {
		name, auth, body string
		status           int
		code             string
	}{
		{"no credentials", "", `{"userText":"hi"}`, 401, "unauthenticated"},
		{"bad body", "Bearer key", `{"userText":`, 422, "invalid_request"},
		{"unknown model", "Bearer key", `{"userText":"hi","modelId":"nope"}`, 422, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(rec.Ended())
			ctx := serveOnce(h, c.auth, c.body)
			if ctx.Response.StatusCode() != c.status {
				t.Fatalf("status %d, want %d", ctx.Response.StatusCode(), c.status)
			}
			spans := rec.Ended()[before:]
			if len(spans) != 1 || spans[0].SpanKind() != trace.SpanKindServer {
				t.Fatalf("%d spans, want one server span", len(spans))
			}
			a := attrMap(spans[0].Attributes())
			if a["http.response.status_code"] != strconv.Itoa(c.status) || a["moonborn.outcome"] != "refused" || a["moonborn.error_code"] == "" {
				t.Fatalf("attributes %v", a)
			}
		})
	}
}

func TestParseTraceparent(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"valid sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"valid unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"future version with more", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what", true},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"v00 too long", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", false},
		{"uppercase", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"short", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"empty", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, ok := parseTraceparent([]byte(c.in))
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if ok {
				var buf []byte
				got := string(providers.AppendTraceparent(buf, sc))
				if got[3:53] != c.in[3:53] {
					t.Fatalf("round trip %q from %q", got, c.in)
				}
			}
		})
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, in string) {
		sc, ok := parseTraceparent([]byte(in))
		if ok && !sc.IsValid() {
			t.Fatal("accepted an invalid span context")
		}
	})
}

// Tracing off adds nothing to a request: the same allocations as a
// server without the tracing hooks would make (checked against the
// figure with a Tracer that is never set).
func TestTracingOffAllocatesNothing(t *testing.T) {
	s := tracedServer(t, nil, false)
	h := s.Handler()
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/personas/psn_x/chat")
	req.Header.Set("Authorization", "Bearer key")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.SetBodyString(`{"userText":"Hello there"}`)
	var ctx fasthttp.RequestCtx
	run := func() {
		ctx.Init2(nullConn{}, nil, true)
		req.CopyTo(&ctx.Request)
		h(&ctx)
	}
	// Averages to a fraction over many runs: under -race sync.Pool drops
	// some of what is put back, at random, which adds a fraction of an
	// allocation per run to both sides alike; an allocation the
	// traceparent really cost would add a whole one to every run.
	avg := func() float64 {
		run() // warm
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		const n = 2000
		for range n {
			run()
		}
		runtime.ReadMemStats(&b)
		return float64(b.Mallocs-a.Mallocs) / n
	}
	with := avg()
	req.Header.Del("traceparent")
	without := avg()
	if with-without >= 0.5 {
		t.Fatalf("a traceparent costs %.2f allocations with tracing off (%.2f vs %.2f)", with-without, with, without)
	}
}

// BenchmarkChatTracing prices tracing on the handler path with a Pool
// (server span + attempt span): off; on at sampling 1.0 with what ships
// (internal/leantrace's spans, exported through internal/otlpexport to a
// loopback receiver that discards) and its spans alone (an exporter that
// drops); and, for comparison, the SDK's spans with the SDK's batcher and
// OTLP exporter. cpu-ns/op is the process's CPU time (user+system) per
// request, so the exporting goroutine is counted too.
func BenchmarkChatTracing(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchTraced(b, nil) })
	lean := func(exp leantrace.Exporter) *leantrace.Provider {
		return leantrace.New(leantrace.Options{Exporter: exp})
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	b.Run("on", func(b *testing.B) {
		tp := lean(otlpexport.New(otlpexport.Options{URL: sink.URL + "/v1/traces", Timeout: 10 * time.Second,
			Resource: []attribute.KeyValue{attribute.String("service.name", "bench")}, ScopeName: "bench",
			MaxQueue: 8192, MaxBatch: 1024, Interval: 5 * time.Second}))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		benchTraced(b, tp.Tracer("bench"))
	})
	b.Run("on-noexport", func(b *testing.B) {
		tp := lean(discardExporter{})
		defer func() { _ = tp.Shutdown(context.Background()) }()
		benchTraced(b, tp.Tracer("bench"))
	})
	b.Run("on-sdk", func(b *testing.B) {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp,
			sdktrace.WithMaxQueueSize(8192), sdktrace.WithMaxExportBatchSize(1024)))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		benchTraced(b, tp.Tracer("bench"))
	})
}

// discardExporter drops every span.
type discardExporter struct{}

func (discardExporter) Add(*otlpexport.Span)             {}
func (discardExporter) ForceFlush(context.Context) error { return nil }
func (discardExporter) Shutdown(context.Context) error   { return nil }

func benchTraced(b *testing.B, tracer trace.Tracer) {
	s := tracedServer(b, tracer, false)
	h := s.Handler()
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/personas/psn_x/chat")
	req.Header.Set("Authorization", "Bearer key")
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"userText":"Hello there, how are you today?"}`)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		ctx.Init2(nullConn{}, nil, true)
		req.CopyTo(&ctx.Request)
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
