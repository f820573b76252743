package leantrace

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/moonborn/edge/internal/otlpexport"
)

// inlineAttrs is how many attributes a record holds before its slice
// grows: the gateway's spans carry eight to ten, more only with a
// prompt-cache hit or an error.
const inlineAttrs = 12

// record is a span's pooled record and the backing of its attributes.
type record struct {
	otlpexport.Span
	attrs [inlineAttrs]attribute.KeyValue
}

var records = sync.Pool{New: func() any { return new(record) }}

// span is a recording span. rec is nil once it has ended: End hands the
// record to the exporter (which encodes it before returning) and puts it
// back in the pool, so a span kept after its end holds nothing but its
// context, and every setter checks rec under mu.
type span struct {
	embedded.Span
	p  *Provider
	sc trace.SpanContext

	mu  sync.Mutex
	rec *record
}

var _ trace.Span = (*span)(nil)

func newSpan(p *Provider, sc, parent trace.SpanContext, name string, cfg *trace.SpanConfig) *span {
	start := cfg.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	r := records.Get().(*record)
	r.Span = otlpexport.Span{
		TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: sc.TraceFlags(), TraceState: sc.TraceState(),
		Name: name, Kind: trace.ValidateSpanKind(cfg.SpanKind()), Start: start,
		DroppedLinks: len(cfg.Links()), Attrs: r.attrs[:0],
	}
	if parent.IsValid() {
		r.Parent, r.ParentRemote = parent.SpanID(), parent.IsRemote()
	}
	return &span{p: p, sc: sc, rec: r}
}

// End implements trace.Span: the first call ends the span, at the
// options' timestamp or now, and exports it when sampled.
func (s *span) End(opts ...trace.SpanEndOption) {
	at := time.Time{}
	if len(opts) > 0 {
		cfg := trace.NewSpanEndConfig(opts...)
		at = cfg.Timestamp()
	}
	if at.IsZero() {
		at = time.Now()
	}
	s.mu.Lock()
	r := s.rec
	s.rec = nil
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.End = at
	if s.sc.IsSampled() {
		s.p.exp.Add(&r.Span)
	}
	release(r)
}

// release returns r to the pool, keeping no strings alive (a grown
// attribute slice is let go with r.Span).
func release(r *record) {
	r.Span = otlpexport.Span{}
	clear(r.attrs[:])
	records.Put(r)
}

// SetAttributes implements trace.Span: a key already set takes the new
// value (the API's last-write-wins), an invalid one (empty key) is
// ignored, and past MaxAttributes new keys are counted as dropped.
func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	if s.rec != nil {
		s.rec.setAttributes(kv)
	}
	s.mu.Unlock()
}

// setAttributes is SetAttributes with the span's mu held (or before the
// span is shared).
func (r *record) setAttributes(kv []attribute.KeyValue) {
next:
	for _, a := range kv {
		if !a.Valid() {
			continue
		}
		for i := range r.Attrs {
			if r.Attrs[i].Key == a.Key {
				r.Attrs[i] = a
				continue next
			}
		}
		if len(r.Attrs) >= MaxAttributes {
			r.DroppedAttrs++
			continue
		}
		r.Attrs = append(r.Attrs, a)
	}
}

// SetStatus implements trace.Span as the SDK does: Ok is final, Error
// overrides Unset, and only an Error keeps its description.
func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil || s.rec.Status > code {
		return
	}
	s.rec.Status, s.rec.StatusDesc = code, ""
	if code == codes.Error {
		s.rec.StatusDesc = description
	}
}

// SetName implements trace.Span.
func (s *span) SetName(name string) {
	s.mu.Lock()
	if s.rec != nil {
		s.rec.Name = name
	}
	s.mu.Unlock()
}

// AddEvent implements trace.Span: events are not recorded, only counted.
func (s *span) AddEvent(string, ...trace.EventOption) { s.drop(false) }

// RecordError implements trace.Span: its exception event is counted as
// dropped, like any event (the status is the caller's to set).
func (s *span) RecordError(err error, _ ...trace.EventOption) {
	if err != nil {
		s.drop(false)
	}
}

// AddLink implements trace.Span: links are not recorded, only counted.
func (s *span) AddLink(trace.Link) { s.drop(true) }

func (s *span) drop(link bool) {
	s.mu.Lock()
	switch {
	case s.rec == nil:
	case link:
		s.rec.DroppedLinks++
	default:
		s.rec.DroppedEvents++
	}
	s.mu.Unlock()
}

// IsRecording implements trace.Span: true until End.
func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec != nil
}

// SpanContext implements trace.Span.
func (s *span) SpanContext() trace.SpanContext { return s.sc }

// TracerProvider implements trace.Span.
func (s *span) TracerProvider() trace.TracerProvider { return s.p }

// unrecorded is a span the sampler dropped: it carries its context (so
// children and upstreams continue the trace, unsampled) and records
// nothing.
type unrecorded struct {
	embedded.Span
	sc trace.SpanContext
	p  *Provider
}

func (u *unrecorded) End(...trace.SpanEndOption)            {}
func (u *unrecorded) AddEvent(string, ...trace.EventOption) {}
func (u *unrecorded) AddLink(trace.Link)                    {}
func (u *unrecorded) IsRecording() bool                     { return false }
func (u *unrecorded) RecordError(error, ...trace.EventOption) {
}
func (u *unrecorded) SpanContext() trace.SpanContext       { return u.sc }
func (u *unrecorded) SetStatus(codes.Code, string)         {}
func (u *unrecorded) SetName(string)                       {}
func (u *unrecorded) SetAttributes(...attribute.KeyValue)  {}
func (u *unrecorded) TracerProvider() trace.TracerProvider { return u.p }
