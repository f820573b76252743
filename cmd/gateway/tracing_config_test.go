package main

import (
	"slices"
	"strings"
	"testing"
)

func TestTracingConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(testConfig(t, nil, "")))
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.Tracing
	if tc.Enabled || tc.RecordContent || tc.Endpoint != "http://127.0.0.1:4318/v1/traces" ||
		*tc.SamplingRatio != 1 || tc.ServiceName != "moonborn-edge" {
		t.Fatalf("defaults %+v", tc)
	}
	tr, err := newTracing(tc, "test", nil)
	if err != nil || tr.Tracer() != nil {
		t.Fatalf("tracing off built a tracer (%v)", err)
	}
}

// Every tracing mistake is reported in one pass with its path and line.
func TestTracingConfigErrors(t *testing.T) {
	text := testConfig(t, nil, "") + `tracing:
  enabled: yes please
  endpoint: "ftp://collector:4318"
  samplingRatio: 1.5
  headers: {"bad name": x, ok: "a
    b"}
  batchTimeout: 5
  maxQueueSize: 10
  maxExportBatchSize: 20
  recordContnt: true
`
	_, err := ParseConfig([]byte(text))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`tracing.enabled: "yes please" is not true or false (line`,
		`tracing.endpoint: must be an absolute http(s) URL`,
		`tracing.samplingRatio: must be between 0 and 1 (line`,
		`tracing.headers.bad name: is not a valid header name`,
		`tracing.batchTimeout: "5" is not a duration (e.g. 30s) (line`,
		`tracing.maxExportBatchSize: must be between 1 and maxQueueSize (line`,
		`tracing.recordContnt: unknown key (line`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

// tracing is read at start only: a reload that changes it says so.
func TestTracingIsRestartOnly(t *testing.T) {
	a, err := ParseConfig([]byte(testConfig(t, nil, "")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseConfig([]byte(testConfig(t, nil, "") + "tracing: {enabled: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b.Ledger = a.Ledger // testConfig makes a new ledger path each time
	if got := restartRequired(a, b); !slices.Equal(got, []string{"tracing"}) {
		t.Fatalf("restartRequired %v, want [tracing]", got)
	}
}
