// Package otlpexport is an OTLP/HTTP trace exporter that writes the
// protobuf request itself, into one reused buffer, instead of building
// the generated OTLP message structs and marshalling them by reflection
// as the SDK's otlptracehttp exporter does: that costs three allocations
// per attribute and most of the exporting CPU. The wire format is the
// same (ExportTraceServiceRequest, application/x-protobuf, POST to the
// traces URL); the tests decode it with the generated OTLP types and a
// real OpenTelemetry Collector receives it.
//
// It exports Span records, the finished spans of internal/leantrace: one
// resource and one instrumentation scope per Exporter, no events or
// links (a span counts those it dropped, and the counts are exported).
//
// It does not retry: a failed export is logged and its spans are
// dropped, so an unreachable collector costs one failed request per
// batch, never a growing backlog.
package otlpexport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span is one finished span as it is exported.
type Span struct {
	// TraceID, SpanID, Flags and TraceState are the span's own context.
	TraceID    trace.TraceID
	SpanID     trace.SpanID
	Flags      trace.TraceFlags
	TraceState trace.TraceState
	// Parent is the parent span's id, zero for a root span;
	// ParentRemote says it came from another process (a traceparent).
	Parent       trace.SpanID
	ParentRemote bool
	Name         string
	Kind         trace.SpanKind
	Start, End   time.Time
	Attrs        []attribute.KeyValue
	// Dropped* count what the span was given and did not keep.
	DroppedAttrs, DroppedEvents, DroppedLinks int
	Status                                    codes.Code
	StatusDesc                                string
}

// Options configure an Exporter; every size and duration must be
// positive.
type Options struct {
	// URL is the full traces URL, e.g. http://127.0.0.1:4318/v1/traces.
	URL string
	// Headers are added to every request (a vendor's API key).
	Headers map[string]string
	// Timeout bounds each export request.
	Timeout time.Duration
	// Resource describes the process (service.name, service.version).
	Resource []attribute.KeyValue
	// ScopeName and ScopeVersion name the instrumentation scope.
	ScopeName, ScopeVersion string
	// MaxQueue is the most spans waiting for export; more are dropped.
	MaxQueue int
	// MaxBatch is the most spans per export request; a full batch is
	// exported at once.
	MaxBatch int
	// Interval is the longest a span waits for export.
	Interval time.Duration
	// Log receives export failures and drops.
	Log *slog.Logger
}

// Exporter queues ended spans and posts them to an OTLP/HTTP traces
// endpoint in batches. A span is encoded when it is added, so the queue
// holds bytes, not span objects: nothing a span refers to stays alive
// after it ends, and the span's own memory can be reused at once. One
// goroutine exports every Interval, or as soon as a batch is full; a
// request only takes an uncontended lock (the SDK's BatchSpanProcessor
// sends every span over a channel, waking its goroutine per span). A full
// queue drops spans (counted, logged once per export) rather than ever
// blocking a request. Safe for concurrent use; Shutdown stops it.
type Exporter struct {
	o        Options
	client   *http.Client
	resource []byte // the envelope's fixed parts (encode.go)
	scope    []byte

	mu      sync.Mutex
	q       queue
	spare   queue // the loop's emptied queue, reused
	dropped atomic.Uint64

	post     []byte             // the loop's request body, reused
	kick     chan struct{}      // a batch is full (capacity 1)
	flushReq chan chan struct{} // ForceFlush
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// queue is encoded spans back to back; ends[i] is where span i ends.
type queue struct {
	buf  []byte
	ends []int
}

// New starts an Exporter for o. Nothing is dialled until the first
// export.
func New(o Options) *Exporter {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		o: o, client: &http.Client{Timeout: o.Timeout},
		resource: encodeResource(o.Resource), scope: encodeScope(o.ScopeName, o.ScopeVersion),
		kick:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go e.loop()
	return e
}

// Add encodes an ended span and queues it; s is not kept. A full queue
// drops it (counted).
func (e *Exporter) Add(s *Span) {
	e.mu.Lock()
	if len(e.q.ends) >= e.o.MaxQueue {
		e.mu.Unlock()
		e.dropped.Add(1)
		return
	}
	e.q.buf = appendSpan(e.q.buf, s)
	e.q.ends = append(e.q.ends, len(e.q.buf))
	full := len(e.q.ends)%e.o.MaxBatch == 0
	e.mu.Unlock()
	if full {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

func (e *Exporter) loop() {
	defer close(e.done)
	tick := time.NewTicker(e.o.Interval)
	defer tick.Stop()
	var reported uint64
	for {
		select {
		case <-e.kick:
		case <-tick.C:
		case ch := <-e.flushReq:
			e.export()
			close(ch)
			continue
		case <-e.stop:
			e.export()
			return
		}
		e.export()
		if d := e.dropped.Load(); d != reported {
			e.o.Log.Warn("tracing: span queue full, spans dropped", "dropped_total", d)
			reported = d
		}
	}
}

// export posts everything queued, in requests of at most MaxBatch
// spans. Only the loop calls it.
func (e *Exporter) export() {
	e.mu.Lock()
	q := e.q
	e.q, e.spare = e.spare, queue{}
	e.mu.Unlock()
	start := 0
	for i := 0; i < len(q.ends); i += e.o.MaxBatch {
		last := min(i+e.o.MaxBatch, len(q.ends)) - 1
		chunk := q.buf[start:q.ends[last]]
		e.post = append(e.appendEnvelope(e.post[:0], len(chunk)), chunk...)
		if err := e.send(last - i + 1); err != nil {
			e.o.Log.Warn("tracing: export failed", "spans", last-i+1, "err", err.Error())
		}
		start = q.ends[last]
	}
	if cap(q.buf) > 4<<20 {
		q = queue{} // an outsized queue is not kept
	}
	e.mu.Lock()
	e.spare = queue{buf: q.buf[:0], ends: q.ends[:0]}
	e.mu.Unlock()
}

// send posts e.post, a request of n spans, within Options.Timeout.
func (e *Exporter) send(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.o.URL, bytes.NewReader(e.post))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range e.o.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("otlp export: %d spans refused with HTTP %d", n, resp.StatusCode)
	}
	return nil
}

// ForceFlush exports what is queued, within ctx.
func (e *Exporter) ForceFlush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case e.flushReq <- ch:
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, within ctx, and stops the exporter.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.client.CloseIdleConnections()
	return nil
}
