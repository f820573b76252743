package otlpexport

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

var testOptions = Options{
	Resource:  []attribute.KeyValue{attribute.String("service.name", "edge-test")},
	ScopeName: "github.com/moonborn/edge", ScopeVersion: "v1",
}

func testSpans() []*Span {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	ts, _ := trace.ParseTraceState("vendor=v1")
	t0 := time.Unix(1700000000, 123456789)
	server := &Span{
		Name:    "POST /v1/personas/{id}/chat",
		TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, Flags: trace.FlagsSampled, TraceState: ts,
		Parent: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}, ParentRemote: true,
		Kind:  trace.SpanKindServer,
		Start: t0, End: t0.Add(1500 * time.Microsecond),
		Attrs: []attribute.KeyValue{
			attribute.Int("http.response.status_code", 502), attribute.String("moonborn.workspace", "w"),
			attribute.Bool("moonborn.stream", true), attribute.Float64("x.ratio", 0.25),
			attribute.StringSlice("gen_ai.response.finish_reasons", []string{"stop", "length"}),
			attribute.Int64Slice("x.ints", []int64{-1, 300}),
		},
		Status: codes.Error, StatusDesc: "upstream_error",
		DroppedEvents: 2,
	}
	client := &Span{
		Name:    "chat gpt-x",
		TraceID: tid, SpanID: trace.SpanID{2}, Flags: trace.FlagsSampled,
		Parent: server.SpanID,
		Kind:   trace.SpanKindClient,
		Start:  t0, End: t0.Add(time.Millisecond),
		Attrs: []attribute.KeyValue{attribute.String("gen_ai.provider.name", "openai")},
	}
	return []*Span{client, server}
}

// What AppendRequest writes decodes, with the generated OTLP types, to
// the spans it was given.
func TestAppendRequestDecodes(t *testing.T) {
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(exporter("http://127.0.0.1:9/", 10, 10).AppendRequest(nil, testSpans()), &req); err != nil {
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
	if server.TraceState != "vendor=v1" || client.TraceState != "" || server.DroppedEventsCount != 2 || len(server.Events) != 0 {
		t.Fatalf("tracestate %q / %q, dropped events %d", server.TraceState, client.TraceState, server.DroppedEventsCount)
	}
}

// collector is a loopback OTLP/HTTP receiver: it decodes every request
// and keeps the span count of each; block, when set, holds every request
// until it is closed.
type collector struct {
	*httptest.Server
	mu      sync.Mutex
	batches []int
	reqs    []*http.Request
	block   chan struct{}
}

func newCollector(t *testing.T, block chan struct{}) *collector {
	c := &collector{block: block}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.block != nil {
			<-c.block
		}
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("undecodable export: %v", err)
		}
		n := 0
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
		c.mu.Lock()
		c.batches, c.reqs = append(c.batches, n), append(c.reqs, r)
		c.mu.Unlock()
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) got() (batches []int, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.batches {
		total += n
	}
	return append([]int(nil), c.batches...), total
}

func exporter(url string, queue, batch int) *Exporter {
	o := testOptions
	o.URL, o.Timeout, o.Log = url, 5*time.Second, slog.New(slog.DiscardHandler)
	o.MaxQueue, o.MaxBatch, o.Interval = queue, batch, time.Hour
	return New(o)
}

func addSpans(e *Exporter, n int) {
	s := testSpans()[0]
	for range n {
		e.Add(s)
	}
}

// A POST carries the content type and the configured headers; a refused
// export is logged, not retried.
func TestExportPosts(t *testing.T) {
	c := newCollector(t, nil)
	o := testOptions
	o.URL, o.Headers, o.Timeout = c.URL+"/v1/traces", map[string]string{"x-api-key": "k"}, time.Second
	o.MaxQueue, o.MaxBatch, o.Interval, o.Log = 10, 10, time.Hour, slog.New(slog.DiscardHandler)
	e := New(o)
	for _, s := range testSpans() {
		e.Add(s)
	}
	if err := e.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	batches, _ := c.got()
	r := c.reqs[0]
	if len(batches) != 1 || batches[0] != 2 {
		t.Fatalf("batches %v", batches)
	}
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("x-api-key") != "k" {
		t.Fatalf("request %s %v", r.URL.Path, r.Header)
	}
	_ = e.Shutdown(context.Background())
}

// A full batch is exported at once, without waiting for the interval;
// requests never exceed MaxBatch; Shutdown exports the rest.
func TestBatchesAndShutdown(t *testing.T) {
	c := newCollector(t, nil)
	e := exporter(c.URL, 100, 10)
	addSpans(e, 25)
	deadline := time.Now().Add(10 * time.Second)
	for _, total := c.got(); total < 10 && time.Now().Before(deadline); _, total = c.got() {
		time.Sleep(time.Millisecond)
	}
	if _, total := c.got(); total < 10 {
		t.Fatalf("full batches not exported before the interval: %d spans", total)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	batches, total := c.got()
	if total != 25 {
		t.Fatalf("after shutdown %d spans exported (%v)", total, batches)
	}
	for _, n := range batches {
		if n > 10 {
			t.Fatalf("batch of %d > MaxBatch", n)
		}
	}
}

// With the collector stuck, spans beyond MaxQueue are dropped and
// counted; adding a span never blocks.
func TestFullQueueDrops(t *testing.T) {
	c := newCollector(t, make(chan struct{}))
	e := exporter(c.URL, 5, 5)
	addSpans(e, 5) // fills a batch: the loop takes it and blocks in its POST
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		n := len(e.q.ends)
		e.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	addSpans(e, 8) // 5 queue, 3 dropped
	if d := e.dropped.Load(); d != 3 {
		t.Fatalf("dropped %d, want 3", d)
	}
	close(c.block)
	if err := e.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, total := c.got(); total != 10 {
		t.Fatalf("exported %d, want 10", total)
	}
	_ = e.Shutdown(context.Background())
}

// A collector answering 503 costs one failed request per batch: the spans
// are dropped, not queued again.
func TestRefusedExportNotRetried(t *testing.T) {
	var posts atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(503)
	}))
	defer bad.Close()
	e := exporter(bad.URL, 10, 10)
	addSpans(e, 3)
	_ = e.ForceFlush(context.Background())
	_ = e.ForceFlush(context.Background())
	if n := posts.Load(); n != 1 {
		t.Fatalf("%d posts for one refused batch", n)
	}
	_ = e.Shutdown(context.Background())
}

func BenchmarkAppendRequest(b *testing.B) {
	spans := testSpans()
	e := exporter("http://127.0.0.1:9/", 10, 10)
	defer func() { _ = e.Shutdown(context.Background()) }()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendRequest(buf[:0], spans)
	}
}

// BenchmarkAdd is the request path's share of exporting: encoding one
// span into the queue.
func BenchmarkAdd(b *testing.B) {
	e := exporter("http://127.0.0.1:9/", 1<<30, 1<<30)
	defer func() { _ = e.Shutdown(context.Background()) }()
	s := testSpans()[1]
	b.ReportAllocs()
	for b.Loop() {
		e.Add(s)
		if len(e.q.ends) == 4096 {
			e.mu.Lock()
			e.q.buf, e.q.ends = e.q.buf[:0], e.q.ends[:0]
			e.mu.Unlock()
		}
	}
}

// Attributes of every kind and size, short and long enough for
// multi-byte lengths, decode to what was given.
func TestAttributesRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 200)
	in := []attribute.KeyValue{
		attribute.Bool("b", false), attribute.Int64("neg", -1<<40), attribute.Int64("big", 1<<62),
		attribute.Float64("f", -2.5), attribute.String("empty", ""), attribute.String("long", long),
		attribute.String(strings.Repeat("k", 130), "v"), attribute.StringSlice("ss", []string{long, ""}),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{1.5}),
	}
	s := &Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Name: "n", Attrs: in}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(exporter("http://127.0.0.1:9/", 1, 1).AppendRequest(nil, []*Span{s}), &req); err != nil {
		t.Fatal(err)
	}
	got := req.ResourceSpans[0].ScopeSpans[0].Spans[0].Attributes
	if len(got) != len(in) {
		t.Fatalf("%d attributes, want %d", len(got), len(in))
	}
	for i, kv := range got {
		want := in[i]
		var v any
		switch x := kv.Value.Value.(type) {
		case *commonpb.AnyValue_BoolValue:
			v = x.BoolValue
		case *commonpb.AnyValue_IntValue:
			v = x.IntValue
		case *commonpb.AnyValue_DoubleValue:
			v = x.DoubleValue
		case *commonpb.AnyValue_StringValue:
			v = x.StringValue
		case *commonpb.AnyValue_ArrayValue:
			v = len(x.ArrayValue.Values)
		}
		var w any = want.Value.AsInterface()
		switch ws := w.(type) {
		case []string:
			w = len(ws)
			if sv := kv.Value.GetArrayValue().Values[0].GetStringValue(); sv != long {
				t.Fatalf("string slice element %q", sv)
			}
		case []bool:
			w = len(ws)
		case []float64:
			w = len(ws)
		}
		if kv.Key != string(want.Key) || v != w {
			t.Fatalf("attribute %d: %s=%v, want %s=%v", i, kv.Key, v, want.Key, w)
		}
	}
}

// BenchmarkAddAttempt encodes an ordinary attempt span: eight scalar
// attributes and the finish reasons.
func BenchmarkAddAttempt(b *testing.B) {
	e := exporter("http://127.0.0.1:9/", 1<<30, 1<<30)
	defer func() { _ = e.Shutdown(context.Background()) }()
	t0 := time.Unix(1700000000, 0)
	s := &Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Parent: trace.SpanID{3}, Flags: trace.FlagsSampled,
		Name: "chat gpt-4o-mini", Kind: trace.SpanKindClient, Start: t0, End: t0.Add(time.Millisecond),
		Attrs: []attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
			attribute.String("gen_ai.request.model", "gpt-4o-mini"), attribute.String("moonborn.deployment", "openai-a"),
			attribute.Int("moonborn.attempt", 0), attribute.Int64("gen_ai.usage.input_tokens", 21),
			attribute.Int64("gen_ai.usage.output_tokens", 20),
			attribute.StringSlice("gen_ai.response.finish_reasons", []string{"stop"}),
		}}
	b.ReportAllocs()
	for b.Loop() {
		e.Add(s)
		if len(e.q.ends) == 4096 {
			e.mu.Lock()
			e.q.buf, e.q.ends = e.q.buf[:0], e.q.ends[:0]
			e.mu.Unlock()
		}
	}
}
