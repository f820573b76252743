package providers

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// An attempt span's attributes by outcome: usage (prompt-cache tokens
// only when there are some) and finish reason on success, the error's
// kind and status on failure, the outcome of a cut or lost attempt.
func TestAttemptSpanAttributes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	parent, root := tr.Start(context.Background(), "server")
	defer root.End()
	p := &Pool{Tracer: tr}
	d := &Deployment{name: "dep", model: "up-1", system: "anthropic", chatName: "chat up-1"}
	cases := []struct {
		name   string
		u      Usage
		finish string
		err    error
		want   map[string]string
		absent []string
	}{
		{"success", Usage{InputTokens: 10, OutputTokens: 3}, FinishStop, nil,
			map[string]string{"gen_ai.usage.input_tokens": "10", "gen_ai.response.finish_reasons": `["stop"]`,
				"gen_ai.provider.name": "anthropic", "moonborn.deployment": "dep", "gen_ai.request.model": "up-1"},
			[]string{"gen_ai.usage.cache_read.input_tokens", "error.type"}},
		{"cache hit", Usage{InputTokens: 10, CacheReadTokens: 8, CacheWrite5mTokens: 2}, "", nil,
			map[string]string{"gen_ai.usage.cache_read.input_tokens": "8", "gen_ai.usage.cache_creation.input_tokens": "2"}, nil},
		{"upstream 429", Usage{}, "", &UpstreamError{Kind: KindStatus, Status: 429},
			map[string]string{"error.type": "status", "http.response.status_code": "429"}, []string{"gen_ai.usage.input_tokens"}},
		{"lost race", Usage{}, "", errLostRace, map[string]string{"moonborn.outcome": "lost"}, []string{"error.type"}},
		{"aborted", Usage{}, "", ErrAborted, map[string]string{"moonborn.outcome": "aborted"}, []string{"error.type"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, a := p.startAttempt(parent, d, &Request{Model: "up-1"}, i, false)
			a.end(c.u, c.finish, c.err)
			spans := rec.Ended()
			sp := spans[len(spans)-1]
			got := map[string]string{}
			for _, kv := range sp.Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all %v)", k, got[k], v, got)
				}
			}
			for _, k := range c.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s set: %v", k, got)
				}
			}
			if len(sp.Attributes()) > 8 && c.name == "success" {
				t.Errorf("%d attributes on an ordinary success, want ≤ 8", len(sp.Attributes()))
			}
			if sp.Parent().SpanID() != root.SpanContext().SpanID() || sp.Name() != "chat up-1" {
				t.Errorf("parent %v name %q", sp.Parent().SpanID(), sp.Name())
			}
		})
	}
	// No span in the context: no attempt span.
	if _, a := p.startAttempt(context.Background(), d, &Request{}, 0, false); a.sp != nil {
		t.Fatal("an attempt span without a server span")
	}
}
