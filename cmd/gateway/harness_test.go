package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
)

// The keys the test config accepts; only their hashes are in the config.
const (
	keyDemo    = "mb_test_demo"
	keyOther   = "mb_test_other"
	keyRevoked = "mb_test_revoked"
	jwtSecret  = "test-secret-of-at-least-thirty-two-bytes!"
)

// upstream is a real mockllm server on loopback.
type upstream struct {
	srv  *mock.Server
	addr string
}

func startUpstream(t *testing.T, cfg mock.ServerConfig) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mock.NewServer(cfg)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return &upstream{srv: s, addr: ln.Addr().String()}
}

// gw is a running gateway built from a config text, as main builds it.
type gw struct {
	t      *testing.T
	app    *app
	base   string
	ledger string
	stop   func()
	once   sync.Once
}

// testConfig returns the config used by most tests: the mock provider,
// OpenAI- and Anthropic-protocol providers on up, a dead provider, three
// personas in two workspaces, API keys and an HS256 JWT key. extra is
// appended verbatim under server: (indented by the caller).
func testConfig(t *testing.T, up *upstream, server string) string {
	t.Helper()
	upAddr := "127.0.0.1:1"
	if up != nil {
		upAddr = up.addr
	}
	deadAddr := testkit.DeadAddr(t) // nothing listens there: connection refused
	dir := t.TempDir()
	return fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  adminListen: 127.0.0.1:0
  maxBodyBytes: 4096
  shutdownTimeout: 5s
%s
log:
  level: error
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
    - {id: key_other, workspace: wsp_other, sha256: %s}
    - {id: key_revoked, workspace: wsp_demo, sha256: %s, disabled: true}
  jwt:
    audience: moonborn-test
    issuer: https://auth.test
    keys:
      - {id: hs, algorithm: HS256, secret: %q}
personas:
  items:
    - {id: psn_demo, workspace: wsp_demo, name: Demo, systemPrompt: "You are terse.", defaultModel: mock-1, temperature: 0.5, maxOutputTokens: 64}
    - {id: psn_other, workspace: wsp_other, name: Other, systemPrompt: "Other.", defaultModel: mock-1}
    - {id: psn_locked, workspace: wsp_demo, name: Locked, systemPrompt: "Locked.", defaultModel: mock-1, allowedModels: [mock-1]}
providers:
  - {name: mock, type: mock, mock: {outputTokens: 20}}
  - name: oa
    type: openai
    openai: {baseURL: "http://%[6]s/v1", apiKey: sk-test-upstream, timeout: 2s, firstTokenTimeout: 1s, idleTimeout: 1s}
  - name: an
    type: anthropic
    anthropic: {baseURL: "http://%[6]s", apiKey: sk-ant-test-upstream, timeout: 2s, firstTokenTimeout: 1s, idleTimeout: 1s}
  - name: dead
    type: openai
    openai: {baseURL: "http://%[7]s/v1", apiKey: x, connectTimeout: 1s}
models:
  - {id: mock-1, provider: mock, inputPricePerMTok: 0.15, outputPricePerMTok: 0.60, maxOutputTokens: 1000}
  - {id: oa-1, provider: oa, upstreamModel: gpt-test, inputPricePerMTok: 2.5, outputPricePerMTok: 10, maxOutputTokens: 1000}
  - {id: an-1, provider: an, upstreamModel: claude-test, inputPricePerMTok: 3, outputPricePerMTok: 15, maxOutputTokens: 1000}
  - {id: dead-1, provider: dead, maxOutputTokens: 1000}
ledger:
  driver: jsonl
  path: %[8]s
  flushInterval: 10ms
`, server, hashOf(keyDemo), hashOf(keyOther), hashOf(keyRevoked), jwtSecret, upAddr, deadAddr,
		filepath.Join(dir, "usage.jsonl"))
}

// startGateway parses cfgText and serves it on loopback until the test ends.
func startGateway(t *testing.T, cfgText string) *gw {
	t.Helper()
	cfg, err := ParseConfig([]byte(cfgText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := newApp(cfg, newLogger(newRedactor(io.Discard, cfg.secrets()), "error"))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	return serveApp(t, a, cfg)
}

// reply is a finished HTTP exchange.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (g *gw) post(path, token string, body string, hdr ...string) reply {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.base+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return g.do(req)
}

func (g *gw) do(req *http.Request) reply {
	g.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("read body: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (g *gw) chat(token, persona, body string) reply {
	g.t.Helper()
	return g.post("/v1/personas/"+persona+"/chat", token, body)
}

// chatOK is the 200 body of API.md.
type chatOK struct {
	Content       string `json:"content"`
	InputTokens   int64  `json:"inputTokens"`
	OutputTokens  int64  `json:"outputTokens"`
	CostUsdMicros int64  `json:"costUsdMicros"`
	Model         string `json:"model"`
	LatencyMs     int64  `json:"latencyMs"`
}

// decodeStrict decodes a JSON body and fails unless every field of v is
// present and no other field is.
func decodeOK(t *testing.T, r reply) chatOK {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	for _, f := range []string{"content", "inputTokens", "outputTokens", "costUsdMicros", "model", "latencyMs"} {
		if _, ok := raw[f]; !ok {
			t.Fatalf("field %s missing in %s", f, r.body)
		}
	}
	if len(raw) != 6 {
		t.Fatalf("unexpected fields in %s", r.body)
	}
	var ok chatOK
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ok); err != nil { // integers must decode as int64
		t.Fatalf("body %s: %v", r.body, err)
	}
	return ok
}

// apiErr is the error body of API.md.
type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeErr(t *testing.T, r reply) apiErr {
	t.Helper()
	var e apiErr
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d: body %q is not the error shape (%v)", r.status, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q", ct)
	}
	return e
}

// sseEvent is one event as a client reads it.
type sseEvent struct {
	name string
	data map[string]any
	raw  string
}

// sseReader reads API.md events (and ping comments) off a stream.
type sseReader struct {
	br    *bufio.Reader
	pings int
}

func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var lines []string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(lines) == 0 {
				continue
			}
			break
		}
		if line == ": ping" {
			r.pings++
			continue
		}
		lines = append(lines, line)
	}
	ev.raw = strings.Join(lines, "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
		return ev, fmt.Errorf("malformed event %q", ev.raw)
	}
	ev.name = strings.TrimPrefix(lines[0], "event: ")
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &ev.data); err != nil {
		return ev, fmt.Errorf("event data %q: %v", lines[1], err)
	}
	if ev.data["type"] != ev.name {
		return ev, fmt.Errorf("event %q has type %v", ev.name, ev.data["type"])
	}
	return ev, nil
}

// untilDone reads events up to the done event, failing the test on a
// read error, and returns the done event and how many came before it.
func (r *sseReader) untilDone(t *testing.T) (sseEvent, int) {
	t.Helper()
	for n := 0; ; n++ {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.name == "done" {
			return ev, n
		}
	}
}

// openStream posts a streaming chat and returns the response and a reader.
func (g *gw) openStream(token, persona, body string) (*http.Response, *sseReader) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.base+"/v1/personas/"+persona+"/chat", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { resp.Body.Close() })
	return resp, &sseReader{br: bufio.NewReader(resp.Body)}
}

// readLedger stops the gateway (flushing the ledger) and returns its records.
func (g *gw) readLedger() []map[string]any {
	g.t.Helper()
	g.stop()
	f, err := os.Open(g.ledger)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			g.t.Fatalf("ledger line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
