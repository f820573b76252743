// Package spanattr holds reusable buffers for a span's attributes, for
// code that ends spans through the OpenTelemetry trace API on a hot path.
package spanattr

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
)

// Buf is a reusable buffer for a span's attributes, built up and then
// set in one SetAttributes call. It exists because the variadic slice of
// a call through the trace.Span interface escapes: a buffer on the stack
// would become a heap allocation (~700 bytes) per span. Tracers copy the
// attributes they are given (the SDK's and internal/leantrace's both do), so
// the buffer can be released as soon as SetAttributes returns. Works
// with any tracer.
type Buf struct {
	KV []attribute.KeyValue
}

var attrsPool = sync.Pool{New: func() any { return &Buf{KV: make([]attribute.KeyValue, 0, 16)} }}

// Get returns an empty buffer from the pool.
func Get() *Buf { return attrsPool.Get().(*Buf) }

// Release empties a (so it keeps no strings alive) and returns it to the
// pool; a must not be used afterwards.
func (a *Buf) Release() {
	if cap(a.KV) > 64 { // an outsized buffer is not kept
		return
	}
	clear(a.KV)
	a.KV = a.KV[:0]
	attrsPool.Put(a)
}
