package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactorRemovesCredentials(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1XzEifQ.c2lnbmF0dXJlLWJ5dGVz"
	cases := []struct {
		name, in string
		gone     []string // must not survive
		kept     []string // must survive
	}{
		{"authorization header quoted in a message",
			`{"msg":"bad request \"POST / HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer mb_live_abcdefgh\\r\\nX-Api-Key: topsecretvalue\\r\\n\""}`,
			[]string{"mb_live_abcdefgh", "topsecretvalue"}, []string{"Host: x", "Authorization: [REDACTED]", "X-Api-Key: [REDACTED]"}},
		{"authorization as a JSON attribute",
			`{"msg":"x","authorization":"Basic dXNlcjpwYXNz","n":1}`,
			[]string{"dXNlcjpwYXNz"}, []string{`"n":1`}},
		{"cookie headers",
			"{\"msg\":\"Cookie: session=abc123def456; other=zzz\\r\\nSet-Cookie: id=999888777\"}",
			[]string{"abc123def456", "zzz", "999888777"}, []string{"Cookie: [REDACTED]"}},
		{"bearer token anywhere",
			`{"msg":"sent bearer opaque.token~value+x/y= to upstream"}`,
			[]string{"opaque.token~value"}, []string{"to upstream"}},
		{"jwt shaped", `{"msg":"token ` + jwt + ` rejected"}`, []string{jwt, "eyJzdWIiOiJ1XzEifQ"}, []string{"rejected"}},
		{"key shaped", `{"msg":"keys sk-proj-abcdefghij and sk-ant-api03-XYZXYZXYZ and mb_test_demo"}`,
			[]string{"sk-proj-abcdefghij", "sk-ant-api03-XYZXYZXYZ", "mb_test_demo"}, []string{"keys", " and "}},
		{"credential parameters", `{"msg":"dial postgres://u@h/db?password=hunter22&sslmode=disable token=abcdef key=zzzzzz"}`,
			[]string{"hunter22", "abcdef", "zzzzzz"}, []string{"sslmode=disable"}},
		{"configured secret", `{"msg":"upstream said: invalid key Qw3rTy-upstream-Secret!"}`,
			[]string{"Qw3rTy-upstream-Secret!"}, []string{"upstream said"}},
		{"ordinary words stay", `{"msg":"tokens key_id authorizations basically sk-short","key_id":"key_demo","inputTokens":12}`,
			nil, []string{"tokens key_id authorizations basically sk-short", `"key_id":"key_demo"`, `"inputTokens":12`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			r := newRedactor(&out, []string{"Qw3rTy-upstream-Secret!", "short"})
			if _, err := r.Write([]byte(c.in + "\n")); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			for _, g := range c.gone {
				if strings.Contains(got, g) {
					t.Errorf("%q survived in %s", g, got)
				}
			}
			for _, k := range c.kept {
				if !strings.Contains(got, k) {
					t.Errorf("%q lost from %s", k, got)
				}
			}
			if json.Valid([]byte(c.in)) && !json.Valid(bytes.TrimSpace(out.Bytes())) {
				t.Errorf("redaction broke the JSON: %s", got)
			}
		})
	}
}

// TestRedactorSecretNeedingJSONEscapes: a configured secret holding a
// quote or a backslash is logged escaped by slog; the escaped form goes,
// and the line stays JSON.
func TestRedactorSecretNeedingJSONEscapes(t *testing.T) {
	for _, secret := range []string{`pa"ss\word<1>`, `"leading-quote`, `trailing-backslash\`} {
		var out bytes.Buffer
		log := slog.New(slog.NewJSONHandler(newRedactor(&out, []string{secret}), nil))
		log.Info("dial failed", "dsn", "postgres://u:"+secret+"@h/db", "note", "kept")
		got := bytes.TrimSpace(out.Bytes())
		var rec map[string]any
		if err := json.Unmarshal(got, &rec); err != nil {
			t.Fatalf("secret %q: line is not JSON: %s", secret, got)
		}
		if strings.Contains(rec["dsn"].(string), secret) || !strings.Contains(rec["dsn"].(string), redactedMark) {
			t.Errorf("secret %q: dsn logged as %q", secret, rec["dsn"])
		}
		if rec["note"] != "kept" {
			t.Errorf("secret %q: the rest of the line was lost: %s", secret, got)
		}
	}
}

func TestRedactorBoundsLinesAndKeepsJSON(t *testing.T) {
	for _, tail := range []string{"a", "é", `\"`, `\u00e9`, "\n"} {
		var out bytes.Buffer
		log := newLogger(newRedactor(&out, nil), "info")
		for n := maxLogLine - 40; n < maxLogLine+40; n++ {
			out.Reset()
			log.Info("long", "v", strings.Repeat("x", n%97)+strings.Repeat(tail, n/len(tail)), "after", 1,
				slog.Group("g", "k", strings.Repeat("y", n)))
			line := bytes.TrimSuffix(out.Bytes(), []byte("\n"))
			if bytes.Count(out.Bytes(), []byte("\n")) != 1 {
				t.Fatalf("not one line: %q", out.Bytes()[:200])
			}
			if len(line) > maxLogLine+64 {
				t.Fatalf("line of %d bytes", len(line))
			}
			if !json.Valid(line) {
				t.Fatalf("tail %q n %d: invalid JSON ending %q", tail, n, line[len(line)-80:])
			}
		}
	}
}

// FuzzRedactor: whatever a line holds, a configured secret never
// survives and a JSON line stays JSON.
func FuzzRedactor(f *testing.F) {
	f.Add(`{"msg":"Authorization: Bearer abc"}`, "s3cr3t-value")
	f.Add(`{"msg":"x","v":"eyJhbGciOi.eyJzdWIi.sig"}`, "another-secret")
	f.Add("plain text password=x", "password-value")
	f.Fuzz(func(t *testing.T, line, secret string) {
		if len(secret) < 6 || strings.ContainsAny(secret, "\n") {
			return
		}
		var out bytes.Buffer
		r := newRedactor(&out, []string{secret})
		r.maxLine = 256
		in := strings.ReplaceAll(line, "\n", " ") + secret + line
		if _, err := r.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), secret) && !strings.Contains(redactedMark, secret) {
			t.Fatalf("secret %q survived in %q", secret, out.String())
		}
		b, _ := json.Marshal(map[string]string{"msg": in})
		out.Reset()
		if _, err := r.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(bytes.TrimSpace(out.Bytes())) {
			t.Fatalf("invalid JSON from %q: %q", b, out.Bytes())
		}
	})
}

// BenchmarkRedactorAccessLine: the redactor's cost on a typical access
// line, paid once per request.
func BenchmarkRedactorAccessLine(b *testing.B) {
	line := []byte(`{"time":"2026-12-02T19:31:07.442522361Z","level":"INFO","msg":"access","request_id":"req_01JDZ8X3K4M5N6P7Q8R9S0T1U2","workspace":"wsp_demo","credential":"key_demo","persona":"psn_demo","model":"mock-1","deployment":"mock","stream":false,"status":200,"code":"","input_tokens":21,"output_tokens":20,"cost_usd_micros":15,"latency_ms":0,"overhead_us":38}` + "\n")
	r := newRedactor(io.Discard, []string{"sk-upstream-key-0123456789", "admin-token-secret"})
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_, _ = r.Write(line)
	}
}
