// Package spanbatch is the gateway's OpenTelemetry span processor: it
// batches ended spans for an exporter at a fraction of the request-path
// cost of the SDK's BatchSpanProcessor.
package spanbatch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Batcher is a span processor (sdktrace.SpanProcessor): ended spans are
// appended to a buffer under a mutex, and one goroutine hands them to the
// exporter in batches — every interval, or as soon as a batch is full.
// It does what the SDK's BatchSpanProcessor does, minus its cost on the
// request path: that one sends every span over a channel, waking its
// goroutine per span (two wake-ups and context switches per request on
// this gateway); here a request only takes an uncontended lock, and the
// goroutine wakes once per batch. A full buffer drops spans (counted,
// logged once per export) rather than ever blocking a request. Safe for
// concurrent use.
type Batcher struct {
	exp      sdktrace.SpanExporter
	log      *slog.Logger
	maxQueue int
	maxBatch int
	interval time.Duration
	timeout  time.Duration // one export's deadline

	mu      sync.Mutex
	buf     []sdktrace.ReadOnlySpan
	spare   []sdktrace.ReadOnlySpan // the loop's emptied buffer, reused
	dropped atomic.Uint64

	kick     chan struct{}      // a batch is full (capacity 1)
	flushReq chan chan struct{} // ForceFlush
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

var _ sdktrace.SpanProcessor = (*Batcher)(nil)

// Options size a Batcher; every field must be positive.
type Options struct {
	// MaxQueue is the most spans waiting for export; more are dropped.
	MaxQueue int
	// MaxBatch is the most spans per ExportSpans call; a full batch is
	// exported at once.
	MaxBatch int
	// Interval is the longest a span waits for export.
	Interval time.Duration
	// Timeout bounds one ExportSpans call.
	Timeout time.Duration
}

// New starts a Batcher exporting to exp; log receives export failures
// and drops. Shutdown stops it.
func New(exp sdktrace.SpanExporter, log *slog.Logger, o Options) *Batcher {
	b := &Batcher{
		exp: exp, log: log,
		maxQueue: o.MaxQueue, maxBatch: o.MaxBatch,
		interval: o.Interval, timeout: o.Timeout,
		buf:      make([]sdktrace.ReadOnlySpan, 0, o.MaxBatch),
		spare:    make([]sdktrace.ReadOnlySpan, 0, o.MaxBatch),
		kick:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go b.loop()
	return b
}

// OnStart implements sdktrace.SpanProcessor: nothing to do.
func (b *Batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: queue a sampled span.
func (b *Batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if len(b.buf) >= b.maxQueue {
		b.mu.Unlock()
		b.dropped.Add(1)
		return
	}
	b.buf = append(b.buf, s)
	full := len(b.buf)%b.maxBatch == 0
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *Batcher) loop() {
	defer close(b.done)
	tick := time.NewTicker(b.interval)
	defer tick.Stop()
	var reported uint64
	for {
		select {
		case <-b.kick:
		case <-tick.C:
		case ch := <-b.flushReq:
			b.export()
			close(ch)
			continue
		case <-b.stop:
			b.export()
			return
		}
		b.export()
		if d := b.dropped.Load(); d != reported {
			b.log.Warn("tracing: span queue full, spans dropped", "dropped_total", d)
			reported = d
		}
	}
}

// export sends everything queued, in batches of at most maxBatch. Only
// the loop calls it.
func (b *Batcher) export() {
	b.mu.Lock()
	batch := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	for rest := batch; len(rest) > 0; {
		n := min(len(rest), b.maxBatch)
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if err := b.exp.ExportSpans(ctx, rest[:n]); err != nil {
			b.log.Warn("tracing: export failed", "spans", n, "err", err.Error())
		}
		cancel()
		rest = rest[n:]
	}
	clear(batch) // let the spans go
	b.mu.Lock()
	if b.spare == nil && cap(batch) <= 4*b.maxBatch {
		b.spare = batch[:0]
	} else if b.spare == nil {
		b.spare = make([]sdktrace.ReadOnlySpan, 0, b.maxBatch)
	}
	b.mu.Unlock()
}

// ForceFlush implements sdktrace.SpanProcessor: export what is queued.
func (b *Batcher) ForceFlush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case b.flushReq <- ch:
	case <-b.done:
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

// Shutdown implements sdktrace.SpanProcessor: export what is queued and
// shut the exporter down, within ctx.
func (b *Batcher) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stop) })
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.exp.Shutdown(ctx)
}
