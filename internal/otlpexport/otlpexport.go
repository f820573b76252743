// Package otlpexport is an OTLP/HTTP trace exporter for the
// OpenTelemetry SDK (sdktrace.SpanExporter) that writes the protobuf
// request itself, into one reused buffer, instead of building the
// generated OTLP message structs and marshalling them by reflection as
// the SDK's otlptracehttp exporter does: that costs three allocations per
// attribute and most of the exporting CPU. The wire format is the same
// (ExportTraceServiceRequest, application/x-protobuf, POST to the traces
// URL); the tests decode it with the generated OTLP types and a real
// OpenTelemetry Collector receives it.
//
// It does not retry: a failed export is reported to the caller (the span
// processor logs it) and its spans are dropped, so an unreachable
// collector costs one failed request per batch, never a growing backlog.
package otlpexport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// Exporter posts spans to an OTLP/HTTP traces endpoint. Build it with
// New; safe for concurrent use (exports are serialised).
type Exporter struct {
	url     string
	headers map[string]string
	client  *http.Client

	mu  sync.Mutex
	buf []byte
}

var _ sdktrace.SpanExporter = (*Exporter)(nil)

// New returns an exporter posting to url (the full traces URL, e.g.
// http://127.0.0.1:4318/v1/traces) with headers added to every request;
// each export is bounded by timeout and by its context.
func New(url string, headers map[string]string, timeout time.Duration) *Exporter {
	return &Exporter{url: url, headers: headers, client: &http.Client{Timeout: timeout}}
}

// ExportSpans implements sdktrace.SpanExporter: one POST for spans.
func (e *Exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = AppendRequest(e.buf[:0], spans)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(e.buf))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("otlp export: %d spans refused with HTTP %d", len(spans), resp.StatusCode)
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.client.CloseIdleConnections()
	return ctx.Err()
}

// AppendRequest appends spans as an OTLP ExportTraceServiceRequest:
// consecutive spans of one resource and scope share their ResourceSpans
// and ScopeSpans.
func AppendRequest(b []byte, spans []sdktrace.ReadOnlySpan) []byte {
	for i := 0; i < len(spans); {
		res := spans[i].Resource()
		rs := begin(&b, 1) // resource_spans
		r := begin(&b, 1)  // resource
		b = appendAttrs(b, 1, resourceAttrs(res))
		end(&b, r)
		for i < len(spans) && spans[i].Resource() == res {
			scope := spans[i].InstrumentationScope()
			ss := begin(&b, 2) // scope_spans
			b = appendScope(b, scope)
			for i < len(spans) && spans[i].Resource() == res && spans[i].InstrumentationScope() == scope {
				b = appendSpan(b, spans[i])
				i++
			}
			if scope.SchemaURL != "" {
				b = protowire.AppendTag(b, 3, protowire.BytesType)
				b = protowire.AppendString(b, scope.SchemaURL)
			}
			end(&b, ss)
		}
		if res != nil && res.SchemaURL() != "" {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendString(b, res.SchemaURL())
		}
		end(&b, rs)
	}
	return b
}

func resourceAttrs(r *resource.Resource) []attribute.KeyValue {
	if r == nil {
		return nil
	}
	return r.Attributes()
}

func appendScope(b []byte, s instrumentation.Scope) []byte {
	m := begin(&b, 1)
	b = appendString(b, 1, s.Name)
	b = appendString(b, 2, s.Version)
	b = appendAttrs(b, 3, s.Attributes.ToSlice())
	end(&b, m)
	return b
}

// Span flags (field 16): the trace flags, and whether the parent is
// remote (HAS_IS_REMOTE, IS_REMOTE), as the SDK's own exporter sets them.
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	m := begin(&b, 2) // spans
	sc, parent := s.SpanContext(), s.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, 1, tid[:])
	b = appendBytes(b, 2, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, 3, ts.String())
	}
	if parent.SpanID().IsValid() {
		psid := parent.SpanID()
		b = appendBytes(b, 4, psid[:])
	}
	b = appendString(b, 5, s.Name())
	if k := s.SpanKind(); k != trace.SpanKindUnspecified {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k))
	}
	b = appendFixed64(b, 7, unixNano(s.StartTime()))
	b = appendFixed64(b, 8, unixNano(s.EndTime()))
	b = appendAttrs(b, 9, s.Attributes())
	b = appendUint(b, 10, s.DroppedAttributes())
	for _, ev := range s.Events() {
		em := begin(&b, 11)
		b = appendFixed64(b, 1, unixNano(ev.Time))
		b = appendString(b, 2, ev.Name)
		b = appendAttrs(b, 3, ev.Attributes)
		b = appendUint(b, 4, ev.DroppedAttributeCount)
		end(&b, em)
	}
	b = appendUint(b, 12, s.DroppedEvents())
	for _, l := range s.Links() {
		lm := begin(&b, 13)
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		b = appendBytes(b, 1, ltid[:])
		b = appendBytes(b, 2, lsid[:])
		if ts := l.SpanContext.TraceState(); ts.Len() > 0 {
			b = appendString(b, 3, ts.String())
		}
		b = appendAttrs(b, 4, l.Attributes)
		b = appendUint(b, 5, l.DroppedAttributeCount)
		b = protowire.AppendTag(b, 6, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, spanFlags(l.SpanContext))
		end(&b, lm)
	}
	b = appendUint(b, 14, s.DroppedLinks())
	if st := s.Status(); st.Code != codes.Unset {
		sm := begin(&b, 15)
		b = appendString(b, 2, st.Description)
		code := uint64(1) // STATUS_CODE_OK
		if st.Code == codes.Error {
			code = 2
		}
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, code)
		end(&b, sm)
	}
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, uint32(sc.TraceFlags())|spanFlags(parent))
	end(&b, m)
	return b
}

func spanFlags(parent trace.SpanContext) uint32 {
	if parent.IsRemote() {
		return flagHasIsRemote | flagIsRemote
	}
	return flagHasIsRemote
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// appendAttrs appends each attribute as a KeyValue in field.
func appendAttrs(b []byte, field protowire.Number, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		m := begin(&b, field)
		b = appendString(b, 1, string(kv.Key))
		v := begin(&b, 2)
		b = appendValue(b, kv.Value)
		end(&b, v)
		end(&b, m)
	}
	return b
}

// appendValue appends the fields of an AnyValue holding v.
func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, v.AsString())
	case attribute.BOOLSLICE:
		a := begin(&b, 5)
		for _, x := range v.AsBoolSlice() {
			b = appendElem(b, attribute.BoolValue(x))
		}
		end(&b, a)
	case attribute.INT64SLICE:
		a := begin(&b, 5)
		for _, x := range v.AsInt64Slice() {
			b = appendElem(b, attribute.Int64Value(x))
		}
		end(&b, a)
	case attribute.FLOAT64SLICE:
		a := begin(&b, 5)
		for _, x := range v.AsFloat64Slice() {
			b = appendElem(b, attribute.Float64Value(x))
		}
		end(&b, a)
	case attribute.STRINGSLICE:
		a := begin(&b, 5)
		for _, x := range v.AsStringSlice() {
			b = appendElem(b, attribute.StringValue(x))
		}
		end(&b, a)
	case attribute.BYTESLICE:
		b = appendBytes(b, 7, v.AsByteSlice())
	case attribute.SLICE:
		a := begin(&b, 5)
		for _, x := range v.AsSlice() {
			b = appendElem(b, x)
		}
		end(&b, a)
	case attribute.MAP:
		kl := begin(&b, 6)
		b = appendAttrs(b, 1, v.AsMap())
		end(&b, kl)
	case attribute.EMPTY:
	default:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, v.Emit())
	}
	return b
}

// appendElem appends one ArrayValue element (an AnyValue, field 1).
func appendElem(b []byte, v attribute.Value) []byte {
	m := begin(&b, 1)
	b = appendValue(b, v)
	end(&b, m)
	return b
}

// begin opens a length-delimited field: its tag and room for the
// longest length varint; end writes the length and closes the gap.
// Messages nest by begin/end pairs, innermost first.
func begin(b *[]byte, field protowire.Number) int {
	*b = protowire.AppendTag(*b, field, protowire.BytesType)
	mark := len(*b)
	*b = append(*b, 0, 0, 0, 0, 0)
	return mark
}

func end(b *[]byte, mark int) {
	buf := *b
	n := len(buf) - mark - 5
	if n > math.MaxUint32>>4 { // 5 varint bytes hold 35 bits
		panic(errors.New("otlpexport: message too large"))
	}
	k := protowire.SizeVarint(uint64(n))
	copy(buf[mark+k:], buf[mark+5:])
	protowire.AppendVarint(buf[mark:mark], uint64(n))
	*b = buf[:mark+k+n]
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, field protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendFixed64(b []byte, field protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, field, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendUint(b []byte, field protowire.Number, v int) []byte {
	if v <= 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}
