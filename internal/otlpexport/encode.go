package otlpexport

import (
	"errors"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf encoding of ExportTraceServiceRequest, written by hand.
// A request is one ResourceSpans holding one ScopeSpans whose spans are
// encoded one by one as they end (appendSpan), so a batch is the
// envelope (appendEnvelope) followed by the spans' bytes as they are.

// AppendRequest appends spans as the OTLP ExportTraceServiceRequest the
// exporter would post for them.
func (e *Exporter) AppendRequest(b []byte, spans []*Span) []byte {
	var enc []byte
	for _, s := range spans {
		enc = appendSpan(enc, s)
	}
	b = e.appendEnvelope(b, len(enc))
	return append(b, enc...)
}

// appendEnvelope appends the start of a request whose spans take n
// bytes: the ResourceSpans tag and length, the resource, the ScopeSpans
// tag and length, the scope. The spans follow.
func (e *Exporter) appendEnvelope(b []byte, n int) []byte {
	ss := len(e.scope) + n
	rs := len(e.resource) + 1 + protowire.SizeVarint(uint64(ss)) + ss
	b = protowire.AppendTag(b, 1, protowire.BytesType) // resource_spans
	b = protowire.AppendVarint(b, uint64(rs))
	b = append(b, e.resource...)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // scope_spans
	b = protowire.AppendVarint(b, uint64(ss))
	return append(b, e.scope...)
}

// encodeResource and encodeScope are the envelope's fixed parts, made
// once: the resource (field 1 of ResourceSpans) and the scope (field 1
// of ScopeSpans).
func encodeResource(attrs []attribute.KeyValue) []byte {
	var b []byte
	r := begin(&b, 1)
	b = appendAttrs(b, 1, attrs)
	end(&b, r)
	return b
}

func encodeScope(name, version string) []byte {
	var b []byte
	sc := begin(&b, 1)
	b = appendString(b, 1, name)
	b = appendString(b, 2, version)
	end(&b, sc)
	return b
}

// Span flags (field 16): the trace flags, and whether the parent is
// remote (HAS_IS_REMOTE, IS_REMOTE), as the SDK's own exporter sets them.
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

func appendSpan(b []byte, s *Span) []byte {
	m := begin(&b, 2) // spans
	b = appendBytes(b, 1, s.TraceID[:])
	b = appendBytes(b, 2, s.SpanID[:])
	if s.TraceState.Len() > 0 {
		b = appendString(b, 3, s.TraceState.String())
	}
	if s.Parent.IsValid() {
		b = appendBytes(b, 4, s.Parent[:])
	}
	b = appendString(b, 5, s.Name)
	if s.Kind != trace.SpanKindUnspecified {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.Kind))
	}
	b = appendFixed64(b, 7, unixNano(s.Start))
	b = appendFixed64(b, 8, unixNano(s.End))
	b = appendAttrs(b, 9, s.Attrs)
	b = appendUint(b, 10, s.DroppedAttrs)
	b = appendUint(b, 12, s.DroppedEvents)
	b = appendUint(b, 14, s.DroppedLinks)
	if s.Status != codes.Unset {
		sm := begin(&b, 15)
		b = appendString(b, 2, s.StatusDesc)
		code := uint64(1) // STATUS_CODE_OK
		if s.Status == codes.Error {
			code = 2
		}
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, code)
		end(&b, sm)
	}
	flags := uint32(s.Flags) | flagHasIsRemote
	if s.ParentRemote {
		flags |= flagIsRemote
	}
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, flags)
	end(&b, m)
	return b
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// appendAttrs appends each attribute as a KeyValue in field.
// A scalar's length is known before it is written, so its KeyValue is
// written front to back (appendScalar); other values are written with
// begin/end, which moves the message once its length is known.
func appendAttrs(b []byte, field protowire.Number, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		var ok bool
		if b, ok = appendScalar(b, field, kv); ok {
			continue
		}
		m := begin(&b, field)
		b = appendString(b, 1, string(kv.Key))
		v := begin(&b, 2)
		b = appendValue(b, kv.Value)
		end(&b, v)
		end(&b, m)
	}
	return b
}

// appendScalar appends kv as a KeyValue in field when its value is a
// string, integer, bool or float, encoded as appendValue would; false
// (nothing appended) for any other kind.
func appendScalar(b []byte, field protowire.Number, kv attribute.KeyValue) ([]byte, bool) {
	v := kv.Value
	var vs int // the AnyValue's size
	var str string
	var num uint64
	switch v.Type() {
	case attribute.STRING:
		str = v.AsString()
		vs = 1 + protowire.SizeBytes(len(str))
	case attribute.INT64:
		num = uint64(v.AsInt64())
		vs = 1 + protowire.SizeVarint(num)
	case attribute.BOOL:
		num = protowire.EncodeBool(v.AsBool())
		vs = 2
	case attribute.FLOAT64:
		num = math.Float64bits(v.AsFloat64())
		vs = 9
	default:
		return b, false
	}
	n := 1 + protowire.SizeVarint(uint64(vs)) + vs // value: tag, length, AnyValue
	if kv.Key != "" {
		n += 1 + protowire.SizeBytes(len(kv.Key))
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendString(b, 1, string(kv.Key))
	b = append(b, 2<<3|byte(protowire.BytesType)) // KeyValue.value
	b = protowire.AppendVarint(b, uint64(vs))
	switch v.Type() { // AnyValue's field for the kind, as in appendValue
	case attribute.STRING:
		b = append(b, 1<<3|byte(protowire.BytesType))
		b = protowire.AppendString(b, str)
	case attribute.INT64:
		b = append(b, 3<<3|byte(protowire.VarintType))
		b = protowire.AppendVarint(b, num)
	case attribute.BOOL:
		b = append(b, 2<<3|byte(protowire.VarintType), byte(num))
	case attribute.FLOAT64:
		b = append(b, 4<<3|byte(protowire.Fixed64Type))
		b = protowire.AppendFixed64(b, num)
	}
	return b, true
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
