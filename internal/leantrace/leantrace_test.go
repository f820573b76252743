package leantrace

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/moonborn/edge/internal/otlpexport"
	"github.com/moonborn/edge/internal/spanattr"
)

// recExporter keeps a copy of every span exported (the record itself is
// reused once Add returns).
type recExporter struct {
	mu    sync.Mutex
	spans []*otlpexport.Span
}

func (e *recExporter) Add(s *otlpexport.Span) {
	c := *s
	c.Attrs = append([]attribute.KeyValue(nil), s.Attrs...)
	e.mu.Lock()
	e.spans = append(e.spans, &c)
	e.mu.Unlock()
}

func (e *recExporter) ForceFlush(context.Context) error { return nil }
func (e *recExporter) Shutdown(context.Context) error   { return nil }

// flushed flushes p and returns what was exported, by name.
func (e *recExporter) flushed(t *testing.T, p *Provider) map[string]*otlpexport.Span {
	t.Helper()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[string]*otlpexport.Span{}
	for _, s := range e.spans {
		m[s.Name] = s
	}
	return m
}

func newProvider(t *testing.T, ratio float64, exp Exporter) *Provider {
	p := New(Options{SamplingRatio: ratio, Exporter: exp})
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func remoteParent(t testing.TB, sampled bool) context.Context {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	flags := trace.TraceFlags(0)
	if sampled {
		flags = trace.FlagsSampled
	}
	ts, err := trace.ParseTraceState("vendor=v1")
	if err != nil {
		t.Fatal(err)
	}
	return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}, TraceFlags: flags, TraceState: ts, Remote: true,
	}))
}

// A child continues its parent's trace (id, tracestate), names its
// parent, and knows whether the parent was remote; a root starts a trace
// of its own.
func TestParentAndChild(t *testing.T) {
	exp := &recExporter{}
	tr := newProvider(t, 1, exp).Tracer("t")
	t0 := time.Unix(1700000000, 0)
	ctx, server := tr.Start(remoteParent(t, true), "server", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0))
	_, client := tr.Start(ctx, "client", trace.WithSpanKind(trace.SpanKindClient))
	_, root := tr.Start(ctx, "root", trace.WithNewRoot())
	client.End()
	server.End(trace.WithTimestamp(t0.Add(time.Second)))
	root.End()
	got := exp.flushed(t, server.TracerProvider().(*Provider))
	s, c, r := got["server"], got["client"], got["root"]
	if s == nil || c == nil || r == nil {
		t.Fatalf("exported %v", got)
	}
	if hex.EncodeToString(s.TraceID[:]) != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent != (trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}) ||
		!s.ParentRemote || s.TraceState.String() != "vendor=v1" || s.Kind != trace.SpanKindServer {
		t.Fatalf("server span %+v", s)
	}
	if !s.Start.Equal(t0) || !s.End.Equal(t0.Add(time.Second)) {
		t.Fatalf("server times %v %v", s.Start, s.End)
	}
	if c.TraceID != s.TraceID || c.Parent != s.SpanID || c.ParentRemote || c.SpanID == s.SpanID || c.Kind != trace.SpanKindClient {
		t.Fatalf("client span %+v", c)
	}
	if c.Start.Before(s.Start) || c.End.Before(c.Start) || c.Flags != trace.FlagsSampled {
		t.Fatalf("client times/flags %+v", c)
	}
	if r.TraceID == s.TraceID || r.Parent.IsValid() || r.Kind != trace.SpanKindInternal {
		t.Fatalf("new root %+v", r)
	}
	if sc := client.SpanContext(); sc.TraceID() != c.TraceID || sc.SpanID() != c.SpanID || !sc.IsSampled() {
		t.Fatalf("span context %v", sc)
	}
}

// With a ratio of 0 a new trace is not recorded, yet its context travels
// (children and upstreams see the same trace, unsampled); a sampled
// remote parent is followed.
func TestSampling(t *testing.T) {
	exp := &recExporter{}
	p := newProvider(t, 0, exp)
	tr := p.Tracer("t")
	ctx, dropped := tr.Start(context.Background(), "dropped")
	_, child := tr.Start(ctx, "child")
	if dropped.IsRecording() || child.IsRecording() || dropped.SpanContext().IsSampled() {
		t.Fatal("a ratio of 0 recorded")
	}
	if !dropped.SpanContext().IsValid() || child.SpanContext().TraceID() != dropped.SpanContext().TraceID() {
		t.Fatalf("unsampled context lost: %v / %v", dropped.SpanContext(), child.SpanContext())
	}
	_, followed := tr.Start(remoteParent(t, true), "followed")
	_, refused := tr.Start(remoteParent(t, false), "refused")
	for _, s := range []trace.Span{dropped, child, followed, refused} {
		s.SetAttributes(attribute.String("k", "v"))
		s.End()
	}
	got := exp.flushed(t, p)
	if len(got) != 1 || got["followed"] == nil {
		t.Fatalf("exported %v, want only the span of the sampled parent", got)
	}
}

// Sampling decides exactly as the SDK's ParentBased(TraceIDRatioBased(r))
// for every ratio, parent kind and trace id tried.
func TestSamplingMatchesSDK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range []float64{0, 1e-9, 0.01, 0.1, 0.25, 0.5, 0.999, 1} {
		p := New(Options{SamplingRatio: r, Exporter: discard{}})
		sdk := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r))
		kept := 0
		for i := range 4000 {
			var tid trace.TraceID
			binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
			binary.BigEndian.PutUint64(tid[8:], rng.Uint64())
			ctx, parent := context.Background(), trace.SpanContext{}
			if i%4 > 0 { // a parent: remote or local, sampled or not
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1},
					TraceFlags: trace.TraceFlags(i / 4 % 2), Remote: i%4 == 1})
				ctx = trace.ContextWithSpanContext(ctx, parent)
			}
			want := sdk.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid}).Decision == sdktrace.RecordAndSample
			if got := p.sampled(parent, tid); got != want {
				t.Fatalf("ratio %g, trace %s, parent %v: sampled %v, the SDK says %v", r, tid, parent, got, want)
			}
			if want && !parent.IsValid() {
				kept++
			}
		}
		if r == 0.5 && (kept < 400 || kept > 600) { // 1,000 roots
			t.Fatalf("ratio 0.5 kept %d of 1000 new traces", kept)
		}
	}
}

// Attributes: last write wins, empty keys are ignored, start options
// count, past MaxAttributes new keys are dropped and counted; events and
// links are counted as dropped; nothing changes after End, which queues
// the span once.
func TestSpanRecord(t *testing.T) {
	exp := &recExporter{}
	p := newProvider(t, 1, exp)
	_, s := p.Tracer("t").Start(context.Background(), "s",
		trace.WithAttributes(attribute.Int("a", 1)), trace.WithLinks(trace.Link{}))
	s.SetAttributes(attribute.Int("a", 2), attribute.String("", "x"), attribute.Bool("b", true))
	for i := range MaxAttributes + 1 { // with a and b: three too many
		s.SetAttributes(attribute.Int("n"+strconv.Itoa(i), i))
	}
	s.AddEvent("e")
	s.RecordError(io.EOF)
	s.RecordError(nil)
	s.AddLink(trace.Link{})
	s.SetStatus(codes.Error, "boom")
	s.SetStatus(codes.Unset, "")
	s.SetName("renamed")
	s.End()
	s.SetAttributes(attribute.Int("late", 1))
	s.SetStatus(codes.Ok, "")
	s.SetName("later")
	s.End()
	if s.IsRecording() {
		t.Fatal("recording after End")
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exp.spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(exp.spans))
	}
	r := exp.spans[0]
	if r.Name != "renamed" || len(r.Attrs) != MaxAttributes || r.DroppedAttrs != 3 {
		t.Fatalf("name %q, %d attributes, %d dropped", r.Name, len(r.Attrs), r.DroppedAttrs)
	}
	if r.Attrs[0] != attribute.Int("a", 2) || r.Attrs[1] != attribute.Bool("b", true) {
		t.Fatalf("attributes %v", r.Attrs[:2])
	}
	if r.DroppedEvents != 2 || r.DroppedLinks != 2 || r.Status != codes.Error || r.StatusDesc != "boom" {
		t.Fatalf("events %d links %d status %v %q", r.DroppedEvents, r.DroppedLinks, r.Status, r.StatusDesc)
	}
	_, ok := p.Tracer("t").Start(context.Background(), "ok")
	ok.SetStatus(codes.Ok, "ignored")
	ok.SetStatus(codes.Error, "too late")
	ok.End()
	if got := exp.flushed(t, p)["ok"]; got.Status != codes.Ok || got.StatusDesc != "" {
		t.Fatalf("ok status %v %q: Ok is final", got.Status, got.StatusDesc)
	}
}

// Spans are safe for concurrent use (run with -race).
func TestConcurrentUse(t *testing.T) {
	exp := &recExporter{}
	p := newProvider(t, 1, exp)
	_, s := p.Tracer("t").Start(context.Background(), "s")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				s.SetAttributes(attribute.Int("k"+strconv.Itoa(i), j))
				_ = s.IsRecording()
				_ = s.SpanContext()
			}
			s.End()
		})
	}
	wg.Wait()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exp.spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(exp.spans))
	}
}

// End to end: spans made here and exported by otlpexport decode, with
// the generated OTLP types, to what was recorded.
func TestExportsOTLP(t *testing.T) {
	bodies := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
	}))
	defer srv.Close()
	exp := otlpexport.New(otlpexport.Options{URL: srv.URL, Timeout: time.Second,
		Resource: []attribute.KeyValue{attribute.String("service.name", "edge")}, ScopeName: "edge", ScopeVersion: "v9",
		MaxQueue: 100, MaxBatch: 100, Interval: time.Hour})
	p := newProvider(t, 1, exp)
	ctx, s := p.Tracer("t").Start(remoteParent(t, true), "server", trace.WithSpanKind(trace.SpanKindServer))
	_, c := p.Tracer("t").Start(ctx, "client", trace.WithSpanKind(trace.SpanKindClient))
	c.SetAttributes(attribute.String("gen_ai.provider.name", "openai"), attribute.Int("moonborn.attempt", 1))
	c.End()
	s.SetStatus(codes.Error, "upstream_error")
	s.End()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(<-bodies, &req); err != nil {
		t.Fatal(err)
	}
	ss := req.ResourceSpans[0].ScopeSpans[0]
	if ss.Scope.Name != "edge" || ss.Scope.Version != "v9" || len(ss.Spans) != 2 {
		t.Fatalf("scope %v with %d spans", ss.Scope, len(ss.Spans))
	}
	cl, sv := ss.Spans[0], ss.Spans[1]
	if string(cl.ParentSpanId) != string(sv.SpanId) || string(cl.TraceId) != string(sv.TraceId) ||
		cl.Kind != tracepb.Span_SPAN_KIND_CLIENT || len(cl.Attributes) != 2 || cl.Attributes[1].Value.GetIntValue() != 1 {
		t.Fatalf("client %v", cl)
	}
	if sv.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || sv.TraceState != "vendor=v1" || sv.Flags != 0x301 {
		t.Fatalf("server %v", sv)
	}
}

func BenchmarkSpan(b *testing.B) {
	p := New(Options{Exporter: discard{}})
	defer func() { _ = p.Shutdown(context.Background()) }()
	tr := p.Tracer("b")
	kind := trace.WithSpanKind(trace.SpanKindClient)
	ctx := remoteParent(b, true)
	b.ReportAllocs()
	for b.Loop() {
		_, s := tr.Start(ctx, "chat m", kind)
		a := spanattr.Get()
		a.KV = append(a.KV, attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
			attribute.String("gen_ai.request.model", "m"), attribute.Int64("gen_ai.usage.input_tokens", 10),
			attribute.Int64("gen_ai.usage.output_tokens", 20))
		s.SetAttributes(a.KV...)
		a.Release()
		s.End()
	}
}

type discard struct{}

func (discard) Add(*otlpexport.Span)             {}
func (discard) ForceFlush(context.Context) error { return nil }
func (discard) Shutdown(context.Context) error   { return nil }
