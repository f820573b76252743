package otlpexport

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func testSpans() []sdktrace.ReadOnlySpan {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	res := resource.NewSchemaless(attribute.String("service.name", "edge-test"))
	scope := instrumentation.Scope{Name: "github.com/moonborn/edge", Version: "v1"}
	t0 := time.Unix(1700000000, 123456789)
	server := tracetest.SpanStub{
		Name: "POST /v1/personas/{id}/chat",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
			TraceFlags: trace.FlagsSampled}),
		Parent: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
			TraceFlags: trace.FlagsSampled, Remote: true}),
		SpanKind:  trace.SpanKindServer,
		StartTime: t0, EndTime: t0.Add(1500 * time.Microsecond),
		Attributes: []attribute.KeyValue{
			attribute.Int("http.response.status_code", 502), attribute.String("moonborn.workspace", "w"),
			attribute.Bool("moonborn.stream", true), attribute.Float64("x.ratio", 0.25),
			attribute.StringSlice("gen_ai.response.finish_reasons", []string{"stop", "length"}),
			attribute.Int64Slice("x.ints", []int64{-1, 300}),
		},
		Status:   sdktrace.Status{Code: codes.Error, Description: "upstream_error"},
		Events:   []sdktrace.Event{{Name: "ev", Time: t0, Attributes: []attribute.KeyValue{attribute.String("k", "v")}}},
		Resource: res, InstrumentationScope: scope,
	}
	client := tracetest.SpanStub{
		Name:        "chat gpt-x",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}),
		Parent:      server.SpanContext,
		SpanKind:    trace.SpanKindClient,
		StartTime:   t0, EndTime: t0.Add(time.Millisecond),
		Attributes: []attribute.KeyValue{attribute.String("gen_ai.provider.name", "openai")},
		Resource:   res, InstrumentationScope: scope,
	}
	return tracetest.SpanStubs{client, server}.Snapshots()
}

// What AppendRequest writes decodes, with the generated OTLP types, to
// the spans it was given.
func TestAppendRequestDecodes(t *testing.T) {
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(AppendRequest(nil, testSpans()), &req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 1 {
		t.Fatalf("grouping: %v", &req)
	}
	rs := req.ResourceSpans[0]
	if kv := rs.Resource.Attributes; len(kv) != 1 || kv[0].Key != "service.name" || kv[0].Value.GetStringValue() != "edge-test" {
		t.Fatalf("resource %v", rs.Resource)
	}
	ss := rs.ScopeSpans[0]
	if ss.Scope.Name != "github.com/moonborn/edge" || ss.Scope.Version != "v1" || len(ss.Spans) != 2 {
		t.Fatalf("scope %v, %d spans", ss.Scope, len(ss.Spans))
	}
	client, server := ss.Spans[0], ss.Spans[1]
	if hex.EncodeToString(server.TraceId) != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		hex.EncodeToString(server.SpanId) != "0102030405060708" || hex.EncodeToString(server.ParentSpanId) != "0909090909090909" {
		t.Fatalf("ids %x %x %x", server.TraceId, server.SpanId, server.ParentSpanId)
	}
	if string(client.ParentSpanId) != string(server.SpanId) || client.Kind != tracepb.Span_SPAN_KIND_CLIENT ||
		server.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Fatalf("client %v", client)
	}
	if server.StartTimeUnixNano != 1700000000123456789 || server.EndTimeUnixNano-server.StartTimeUnixNano != 1500000 {
		t.Fatalf("times %d %d", server.StartTimeUnixNano, server.EndTimeUnixNano)
	}
	if server.Flags != 0x301 || client.Flags != 0x101 {
		t.Fatalf("flags %#x %#x", server.Flags, client.Flags)
	}
	if server.Status.Code != tracepb.Status_STATUS_CODE_ERROR || server.Status.Message != "upstream_error" || client.Status != nil {
		t.Fatalf("status %v / %v", server.Status, client.Status)
	}
	a := server.Attributes
	if len(a) != 6 || a[0].Value.GetIntValue() != 502 || a[1].Value.GetStringValue() != "w" || !a[2].Value.GetBoolValue() ||
		a[3].Value.GetDoubleValue() != 0.25 {
		t.Fatalf("attributes %v", a)
	}
	if fr := a[4].Value.GetArrayValue().Values; len(fr) != 2 || fr[0].GetStringValue() != "stop" || fr[1].GetStringValue() != "length" {
		t.Fatalf("string slice %v", fr)
	}
	if xs := a[5].Value.GetArrayValue().Values; len(xs) != 2 || xs[0].GetIntValue() != -1 || xs[1].GetIntValue() != 300 {
		t.Fatalf("int slice %v", xs)
	}
	if len(server.Events) != 1 || server.Events[0].Name != "ev" || server.Events[0].Attributes[0].Value.GetStringValue() != "v" {
		t.Fatalf("events %v", server.Events)
	}
}

func TestExportPosts(t *testing.T) {
	got := make(chan *http.Request, 1)
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		got <- r
	}))
	defer srv.Close()
	e := New(srv.URL+"/v1/traces", map[string]string{"x-api-key": "k"}, time.Second)
	if err := e.ExportSpans(context.Background(), testSpans()); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("x-api-key") != "k" {
		t.Fatalf("request %s %v", r.URL.Path, r.Header)
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil || len(req.ResourceSpans[0].ScopeSpans[0].Spans) != 2 {
		t.Fatalf("body: %v", err)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	if err := New(bad.URL, nil, time.Second).ExportSpans(context.Background(), testSpans()); err == nil {
		t.Fatal("a 503 was not an error")
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	spans := testSpans()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], spans)
	}
}
