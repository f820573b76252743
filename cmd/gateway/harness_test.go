package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

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
func testConfig(t *testing.T, up *mocktest.Upstream, server string) string {
	t.Helper()
	upAddr := "127.0.0.1:1"
	if up != nil {
		upAddr = up.Addr
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
`, server, hashOf(mocktest.KeyDemo), hashOf(mocktest.KeyOther), hashOf(mocktest.KeyRevoked), mocktest.JWTSecret, upAddr, deadAddr,
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
	return testkit.ReadJSONL(g.t, g.ledger)
}
