package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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
	testkit.Client
	t      *testing.T
	app    *app
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
