package spanbatch

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// recExporter records the batches it was given; block, when set, holds
// every export until it is closed.
type recExporter struct {
	mu      sync.Mutex
	batches []int
	block   chan struct{}
	shut    bool
}

func (e *recExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if e.block != nil {
		<-e.block
	}
	e.mu.Lock()
	e.batches = append(e.batches, len(spans))
	e.mu.Unlock()
	return nil
}

func (e *recExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shut = true
	e.mu.Unlock()
	return nil
}

func (e *recExporter) got() (batches []int, total int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.batches {
		total += n
	}
	return append([]int(nil), e.batches...), total
}

func provider(exp sdktrace.SpanExporter, o Options) (*sdktrace.TracerProvider, *Batcher) {
	b := New(exp, slog.New(slog.DiscardHandler), o)
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b)), b
}

func endSpans(tr trace.Tracer, n int) {
	for range n {
		_, sp := tr.Start(context.Background(), "s")
		sp.End()
	}
}

// A full batch is exported at once, without waiting for the interval;
// batches never exceed MaxBatch; Shutdown exports the rest.
func TestBatchesAndShutdown(t *testing.T) {
	exp := &recExporter{}
	tp, _ := provider(exp, Options{MaxQueue: 100, MaxBatch: 10, Interval: time.Hour, Timeout: time.Second})
	endSpans(tp.Tracer("t"), 25)
	deadline := time.Now().Add(10 * time.Second)
	for _, total := exp.got(); total < 10 && time.Now().Before(deadline); _, total = exp.got() {
		time.Sleep(time.Millisecond)
	}
	if _, total := exp.got(); total < 10 {
		t.Fatalf("full batches not exported before the interval: %d spans", total)
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	batches, total := exp.got()
	if total != 25 || !exp.shut {
		t.Fatalf("after shutdown %d spans exported (%v), exporter shut %v", total, batches, exp.shut)
	}
	for _, n := range batches {
		if n > 10 {
			t.Fatalf("batch of %d > MaxBatch", n)
		}
	}
}

// With the exporter stuck, spans beyond MaxQueue are dropped and
// counted; ending a span never blocks.
func TestFullQueueDrops(t *testing.T) {
	exp := &recExporter{block: make(chan struct{})}
	tp, b := provider(exp, Options{MaxQueue: 5, MaxBatch: 5, Interval: time.Hour, Timeout: time.Second})
	tr := tp.Tracer("t")
	endSpans(tr, 5) // fills a batch: the loop takes it and blocks in export
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.buf)
		b.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	endSpans(tr, 8) // 5 queue, 3 dropped
	if d := b.dropped.Load(); d != 3 {
		t.Fatalf("dropped %d, want 3", d)
	}
	close(exp.block)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, total := exp.got(); total != 10 {
		t.Fatalf("exported %d, want 10", total)
	}
	_ = tp.Shutdown(context.Background())
}

// Unsampled spans are not queued.
func TestUnsampledNotExported(t *testing.T) {
	exp := &recExporter{}
	b := New(exp, slog.New(slog.DiscardHandler), Options{MaxQueue: 10, MaxBatch: 10, Interval: time.Hour, Timeout: time.Second})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b), sdktrace.WithSampler(sdktrace.NeverSample()))
	endSpans(tp.Tracer("t"), 3)
	_ = tp.Shutdown(context.Background())
	if _, total := exp.got(); total != 0 {
		t.Fatalf("exported %d unsampled spans", total)
	}
}
