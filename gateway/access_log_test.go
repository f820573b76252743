package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
)

func accessExchange() *exchange {
	return &exchange{
		requestID: "req_01JDZ8X3K4M5N6P7Q8R9S0T1U2", principal: policy.Principal{Workspace: "wsp_demo", CredentialID: "key_demo"},
		personaID: "psn_\"demo\"\n<x>", model: &Model{ID: "mock-1", ProviderName: "upstream"}, upstreamWait: 300 * time.Microsecond,
	}
}

// TestAccessLineSameBothWays: the hand-encoded line (AccessWriter) and
// the slog one carry the same fields with the same values, in the same
// order, under the same time/level/msg.
func TestAccessLineSameBothWays(t *testing.T) {
	var viaSlog, viaWriter bytes.Buffer
	u := providers.Usage{InputTokens: 21, OutputTokens: 20, CacheReadTokens: 3}
	for _, w := range []*bytes.Buffer{&viaSlog, &viaWriter} {
		s := &Server{log: slog.New(slog.NewJSONHandler(w, nil))}
		s.opts.AccessLog = true
		if w == &viaWriter {
			s.opts.AccessWriter = w
		}
		s.accessLog(accessExchange(), u, 15, 200, "", time.Millisecond)
	}
	decode := func(b []byte) ([]string, map[string]any) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		var keys []string
		dec := json.NewDecoder(bytes.NewReader(b))
		_, _ = dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var v any
			_ = dec.Decode(&v)
		}
		delete(m, "time")
		return keys, m
	}
	ks, ms := decode(viaSlog.Bytes())
	kw, mw := decode(viaWriter.Bytes())
	if len(ks) != len(kw) || len(ks) < 19 {
		t.Fatalf("keys\n slog %v\nwriter %v", ks, kw)
	}
	for i := range ks {
		if ks[i] != kw[i] {
			t.Errorf("key %d: slog %q, writer %q", i, ks[i], kw[i])
		}
	}
	for k, v := range ms {
		if mw[k] != v {
			t.Errorf("%s: slog %v, writer %v", k, v, mw[k])
		}
	}
	if mw["persona"] != "psn_\"demo\"\n<x>" || mw["msg"] != "request" || mw["level"] != "INFO" {
		t.Errorf("writer line %s", viaWriter.Bytes())
	}
	if _, err := time.Parse(time.RFC3339Nano, mustTime(t, viaWriter.Bytes())); err != nil {
		t.Errorf("time: %v", err)
	}
}

func mustTime(t *testing.T, line []byte) string {
	var m struct{ Time string }
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	return m.Time
}

// BenchmarkAccessLine: one access line through slog's JSON handler and
// hand-encoded into the AccessWriter (both into io.Discard, no redactor).
func BenchmarkAccessLine(b *testing.B) {
	u := providers.Usage{InputTokens: 21, OutputTokens: 20}
	for _, tc := range []struct {
		name string
		w    io.Writer
	}{{"slog", nil}, {"writer", io.Discard}} {
		b.Run(tc.name, func(b *testing.B) {
			s := &Server{log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
			s.opts.AccessWriter = tc.w
			x := accessExchange()
			x.personaID = "psn_demo"
			b.ReportAllocs()
			for b.Loop() {
				s.accessLog(x, u, 15, 200, "", time.Millisecond)
			}
		})
	}
}
