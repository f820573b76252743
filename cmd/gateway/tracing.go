package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/internal/leantrace"
	"github.com/moonborn/edge/internal/otlpexport"
)

// TracingConfig is the tracing: section: OpenTelemetry traces exported
// over OTLP/HTTP. Off by default; read only at start (a reload that
// changes it says a restart is required).
type TracingConfig struct {
	// Enabled turns tracing on; default false. Off, no span is made and
	// no traceparent is sent upstream.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/HTTP traces URL the spans are posted to;
	// default http://127.0.0.1:4318/v1/traces (a local collector).
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export (a vendor's API key: use
	// ${VAR}). Default none.
	Headers map[string]string `yaml:"headers"`
	// SamplingRatio is the share of new traces recorded, 0 to 1; default
	// 1. A request whose caller sent a traceparent follows the caller's
	// sampled flag instead.
	SamplingRatio *float64 `yaml:"samplingRatio"`
	// ServiceName is the service.name resource attribute; default
	// moonborn-edge.
	ServiceName string `yaml:"serviceName"`
	// RecordContent puts prompts and non-streaming replies on the spans
	// (gen_ai.input.messages, gen_ai.output.messages); default false.
	// They can hold personal data: enable it knowingly.
	RecordContent bool `yaml:"recordContent"`
	// BatchTimeout is the longest a finished span waits to be exported;
	// default 5s.
	BatchTimeout time.Duration `yaml:"batchTimeout"`
	// MaxQueueSize bounds the spans waiting for export (more are
	// dropped, never blocking a request); default 8192.
	MaxQueueSize int `yaml:"maxQueueSize"`
	// MaxExportBatchSize is the most spans per export request; default
	// 1024.
	MaxExportBatchSize int `yaml:"maxExportBatchSize"`
	// ExportTimeout bounds one export request; default 10s.
	ExportTimeout time.Duration `yaml:"exportTimeout"`
}

// SetDefaults fills zero values.
func (t *TracingConfig) SetDefaults() {
	if t.Endpoint == "" {
		t.Endpoint = "http://127.0.0.1:4318/v1/traces"
	}
	if t.SamplingRatio == nil {
		one := 1.0
		t.SamplingRatio = &one
	}
	if t.ServiceName == "" {
		t.ServiceName = "moonborn-edge"
	}
	defDur(&t.BatchTimeout, 5*time.Second)
	defDur(&t.ExportTimeout, 10*time.Second)
	defInt(&t.MaxQueueSize, 8192)
	defInt(&t.MaxExportBatchSize, 1024)
}

// Validate reports every problem of the section, enabled or not, so a
// mistake is found before tracing is switched on.
func (t *TracingConfig) Validate() error {
	var p problems
	if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		p.add("endpoint", "must be an absolute http(s) URL without credentials (e.g. http://127.0.0.1:4318/v1/traces)")
	}
	if r := t.SamplingRatio; r != nil && (*r < 0 || *r > 1) {
		p.add("samplingRatio", "must be between 0 and 1")
	}
	for k, v := range t.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			p.add("headers."+k, "is not a valid header name")
		}
		if strings.ContainsAny(v, "\r\n") {
			p.add("headers."+k, "must not contain a line break")
		}
	}
	if t.BatchTimeout < 0 {
		p.add("batchTimeout", "must not be negative")
	}
	if t.ExportTimeout < 0 {
		p.add("exportTimeout", "must not be negative")
	}
	if t.MaxQueueSize < 0 || t.MaxQueueSize > 1<<20 {
		p.add("maxQueueSize", "must be between 1 and 1048576")
	}
	if t.MaxExportBatchSize < 0 || (t.MaxQueueSize > 0 && t.MaxExportBatchSize > t.MaxQueueSize) {
		p.add("maxExportBatchSize", "must be between 1 and maxQueueSize")
	}
	return errors.Join(p...)
}

// tracing is the process's tracer provider, or nothing when tracing is
// off (every method is then a no-op).
type tracing struct {
	tp     *leantrace.Provider
	tracer trace.Tracer
}

// newTracing builds the tracer provider of cfg: sampling parent-based on
// the configured ratio (as the SDK's ParentBased(TraceIDRatioBased)), spans batched off the
// request path (a full queue drops spans rather than blocking) and
// exported over OTLP/HTTP. Nothing is dialled here: the exporter
// connects on its first export. The spans and the exporter are ours
// (internal/leantrace, internal/otlpexport), not the SDK's: with the
// SDK's, tracing cost more than its 10% budget (bench/README.md,
// "Tracing cost").
func newTracing(cfg TracingConfig, version string, log *slog.Logger) (*tracing, error) {
	if !cfg.Enabled {
		return &tracing{}, nil
	}
	if _, err := url.Parse(cfg.Endpoint); err != nil {
		return nil, fmt.Errorf("tracing.endpoint: %w", err)
	}
	exp := otlpexport.New(otlpexport.Options{
		URL: cfg.Endpoint, Headers: cfg.Headers, Timeout: cfg.ExportTimeout,
		Resource: []attribute.KeyValue{
			attribute.String("service.name", cfg.ServiceName),
			attribute.String("service.version", version),
		},
		ScopeName: "github.com/moonborn/edge", ScopeVersion: version,
		MaxQueue: cfg.MaxQueueSize, MaxBatch: cfg.MaxExportBatchSize, Interval: cfg.BatchTimeout,
		Log: log,
	})
	tp := leantrace.New(leantrace.Options{
		SamplingRatio: *cfg.SamplingRatio,
		Exporter:      exp,
	})
	return &tracing{tp: tp, tracer: tp.Tracer("github.com/moonborn/edge")}, nil
}

// Tracer is the gateway's tracer; nil when tracing is off.
func (t *tracing) Tracer() trace.Tracer { return t.tracer }

// tracingFlushTimeout bounds the export of the last spans at shutdown.
const tracingFlushTimeout = 400 * time.Millisecond

// shutdown exports the spans still queued, within timeout (a collector
// that is down must not hold the process past its shutdown deadline).
func (t *tracing) shutdown(timeout time.Duration) error {
	if t == nil || t.tp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.tp.Shutdown(ctx)
}
