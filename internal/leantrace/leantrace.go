// Package leantrace is the gateway's OpenTelemetry tracer: an
// implementation of the trace API (go.opentelemetry.io/otel/trace) whose
// spans are recorded into a reused record each and handed, as they end,
// to internal/otlpexport, which encodes them at once.
//
// Why not the SDK's spans: at sampling 1.0 the gateway makes two spans
// per request, and the SDK's span lifecycle (a span with lazily grown
// attribute and event queues, an attribute dedupe map at End, a read-only
// snapshot per span, a processor chain, the instrumentation hooks) cost
// ~4.4 µs each here, putting tracing over its 10% budget (bench/README.md,
// "Tracing cost"). This tracer keeps what the gateway's spans need —
// parent-based ratio sampling decided exactly as the SDK's
// ParentBased(TraceIDRatioBased(r)) decides (a test holds the two to the
// same answers), W3C span contexts, attributes with the
// API's last-write-wins semantics and a count limit, status, kind,
// timestamps — in one small allocation per span (its context and a
// pointer to a pooled record), with no dedupe map and no snapshot: the
// exporter encodes the record when the span ends and the record goes
// back to the pool, so an ended span holds only its immutable context.
// Events and links are not recorded; a span counts those it was given and
// the counts are exported (dropped_events_count, dropped_links_count), so
// a collector sees that something was left out.
package leantrace

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/moonborn/edge/internal/otlpexport"
)

// MaxAttributes is the most attributes a span keeps (the SDK's default
// limit); more are counted as dropped.
const MaxAttributes = 128

// Options configure a Provider.
type Options struct {
	// SamplingRatio is the share of new traces recorded, 0 to 1 (values
	// outside are clamped). A span with a parent follows the parent's
	// sampled flag, remote or local.
	SamplingRatio float64
	// Exporter receives every ended, sampled span.
	Exporter Exporter
}

// Exporter takes ended spans: Add must not keep s (the record is reused
// as soon as it returns); *otlpexport.Exporter is one.
type Exporter interface {
	Add(s *otlpexport.Span)
	ForceFlush(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Provider is a trace.TracerProvider; all its tracers share one sampler
// and one export queue. Shutdown exports what is left.
type Provider struct {
	embedded.TracerProvider
	tracer tracer
	exp    Exporter
	// A new trace is sampled when the top 63 bits of the low half of its
	// id are below bound (the SDK's TraceIDRatioBased); all: always.
	bound uint64
	all   bool
}

var _ trace.TracerProvider = (*Provider)(nil)

// New starts a Provider exporting to o.Exporter.
func New(o Options) *Provider {
	p := &Provider{exp: o.Exporter}
	switch r := o.SamplingRatio; {
	case r >= 1:
		p.all = true
	case r > 0:
		p.bound = uint64(r * (1 << 63))
	}
	p.tracer.p = p
	return p
}

// Tracer implements trace.TracerProvider. The instrumentation scope on
// the wire is the Exporter's (one per process), so name and options are
// not kept.
func (p *Provider) Tracer(string, ...trace.TracerOption) trace.Tracer { return &p.tracer }

// ForceFlush exports the spans queued so far, within ctx.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.exp.ForceFlush(ctx) }

// Shutdown exports the spans still queued and shuts the exporter down,
// within ctx.
func (p *Provider) Shutdown(ctx context.Context) error { return p.exp.Shutdown(ctx) }

// tracer is the Provider's one trace.Tracer.
type tracer struct {
	embedded.Tracer
	p *Provider
}

// Start implements trace.Tracer, deciding as the SDK does: a child keeps
// its parent's trace id and tracestate, every span gets a fresh span id,
// and the sampling decision sets the sampled flag.
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	var psc trace.SpanContext
	if !cfg.NewRoot() {
		psc = trace.SpanContextFromContext(ctx)
	}
	tid := psc.TraceID()
	if !tid.IsValid() {
		tid = newTraceID()
	}
	flags := psc.TraceFlags() &^ trace.FlagsSampled
	if t.p.sampled(psc, tid) {
		flags |= trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: newSpanID(), TraceFlags: flags, TraceState: psc.TraceState(),
	})
	if !sc.IsSampled() {
		u := &unrecorded{sc: sc, p: t.p}
		return trace.ContextWithSpan(ctx, u), u
	}
	s := newSpan(t.p, sc, psc, name, &cfg)
	s.rec.setAttributes(cfg.Attributes())
	return trace.ContextWithSpan(ctx, s), s
}

// sampled is ParentBased(TraceIDRatioBased(ratio)): a parent's flag
// decides; a new trace is kept by its id against the ratio.
func (p *Provider) sampled(parent trace.SpanContext, tid trace.TraceID) bool {
	if parent.IsValid() {
		return parent.IsSampled()
	}
	return p.all || binary.BigEndian.Uint64(tid[8:16])>>1 < p.bound
}

// newTraceID and newSpanID draw non-zero ids from the runtime's
// per-thread generator: no lock, unlike the SDK's default (a mutex around
// one math/rand source). Ids need to be unique, not secret.
func newTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
