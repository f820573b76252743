package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// reloadConfig is a gateway on a real mock upstream (OpenAI protocol)
// whose persona prompt and model prices are the parameters.
func reloadConfig(upAddr, dir, prompt string, price int, extra string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", adminToken: %q, shutdownTimeout: 5s}
log: {level: error}
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
personas:
  items:
    - {id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: %q, defaultModel: m}
    - {id: psn_same, workspace: wsp_demo, name: S, systemPrompt: "Unchanged.", defaultModel: m}
providers:
  - name: up
    type: openai
    openai: {baseURL: "http://%s/v1", apiKey: sk-test, timeout: 10s, firstTokenTimeout: 5s, idleTimeout: 5s}
models:
  - {id: m, provider: up, upstreamModel: gpt-test, inputPricePerMTok: %d, outputPricePerMTok: %d}
ledger: {driver: jsonl, path: %s, flushInterval: 10ms}
%s`, testAdminToken, hashOf(mocktest.KeyDemo), prompt, upAddr, price, price, filepath.Join(dir, "usage.jsonl"), extra)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lastSystemPrompt is the system message of the upstream's last request.
func lastSystemPrompt(t *testing.T, up *mocktest.Upstream) string {
	t.Helper()
	r, ok := up.Srv.LastRequest()
	if !ok {
		t.Fatal("upstream saw no request")
	}
	var body struct {
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("upstream body %s: %v", r.Body, err)
	}
	for _, m := range body.Messages {
		if m.Role == "system" {
			return m.Content
		}
	}
	return ""
}

func metricValue(t *testing.T, g *gw, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + g.app.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestReloadOnSIGHUP: a SIGHUP that changes a persona's prompt and a
// model's price is visible on the next request, while a stream opened
// before it completes on the old config (its cost at the old price); a
// broken config on reload is refused whole, every problem logged, and
// the gateway keeps serving the last good one; breaker state of an
// unchanged pool is kept.
func TestReloadOnSIGHUP(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 20, TokenDelay: 25 * time.Millisecond})
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, reloadConfig(up.Addr, dir, "Prompt one.", 1, ""))
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	a, err := newApp(cfg, newLogger(newRedactor(&logs, cfg.secrets()), "info"))
	if err != nil {
		t.Fatal(err)
	}
	g := serveApp(t, a, cfg)
	a.configFile(path, nil)
	hash1, _ := g.status()["configHash"].(string)
	if len(hash1) != 64 {
		t.Fatalf("config hash %q", hash1)
	}

	ok1 := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`))
	if p := lastSystemPrompt(t, up); p != "Prompt one." {
		t.Fatalf("prompt before reload %q", p)
	}
	if ok1.CostUsdMicros != ok1.InputTokens+ok1.OutputTokens {
		t.Fatalf("cost at 1 µUSD/token: %+v", ok1)
	}
	pool := a.currentPools()[0]
	_ = testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_same", `{"userText":"warm the cache"}`))

	// A stream opened on the old config, one delta read.
	resp, sse := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("stream status %d", resp.StatusCode)
	}
	if ev, err := sse.Next(); err != nil || ev.Name != "delta" {
		t.Fatalf("first event %v %v", ev, err)
	}

	writeFile(t, path, reloadConfig(up.Addr, dir, "Prompt two.", 1000, ""))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the reload", func() bool { return g.status()["configHash"] != hash1 })

	ok2 := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`))
	if p := lastSystemPrompt(t, up); p != "Prompt two." {
		t.Fatalf("prompt after reload %q", p)
	}
	if ok2.CostUsdMicros != 1000*(ok2.InputTokens+ok2.OutputTokens) {
		t.Fatalf("cost at the new price: %+v", ok2)
	}
	if a.currentPools()[0] != pool {
		t.Fatal("the unchanged pool (and its breakers) was rebuilt")
	}

	// The old stream ends normally, priced as it started.
	deltas := 1
	var done testkit.SSEEvent
	for {
		ev, err := sse.Next()
		if err != nil {
			t.Fatalf("stream after reload: %v (after %d deltas)", err, deltas)
		}
		if ev.Name == "delta" {
			deltas++
			continue
		}
		done = ev
		break
	}
	if done.Name != "done" || deltas != 20 {
		t.Fatalf("stream ended with %s after %d deltas", done.Raw, deltas)
	}
	in, out, cost := done.Data["inputTokens"].(float64), done.Data["outputTokens"].(float64), done.Data["costUsdMicros"].(float64)
	if cost != in+out {
		t.Fatalf("stream opened before the reload cost %v for %v+%v tokens; want the old price", cost, in, out)
	}

	// A broken config: refused whole, every problem reported, old config
	// serving on.
	broken := reloadConfig(up.Addr, dir, "Prompt three.", 5, "limits: {default: {requestBurst: 5}}\n")
	broken = strings.Replace(broken, "provider: up,", "provider: nosuch,", 1)
	writeFile(t, path, broken)
	r := g.admin("POST", "/admin/reload", "")
	if r.Status != 422 {
		t.Fatalf("broken reload: %d %s", r.Status, r.Body)
	}
	for _, want := range []string{"nosuch", "requestBurst"} {
		if !bytes.Contains(r.Body, []byte(want)) {
			t.Errorf("reload reply does not name %q: %s", want, r.Body)
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs do not name %q", want)
		}
	}
	ok3 := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`))
	if p := lastSystemPrompt(t, up); p != "Prompt two." || ok3.CostUsdMicros != 1000*(ok3.InputTokens+ok3.OutputTokens) {
		t.Fatalf("after a refused reload: prompt %q, %+v", p, ok3)
	}
	st := g.status()
	if st["lastReloadError"] == "" || st["configHash"] == hash1 {
		t.Fatalf("status after a refused reload: %v", st)
	}
	if v := metricValue(t, g, `moonborn_config_reloads_total{result="ok"}`); v != "1" {
		t.Fatalf("ok reloads %q", v)
	}
	if v := metricValue(t, g, `moonborn_config_reloads_total{result="error"}`); v != "1" {
		t.Fatalf("failed reloads %q", v)
	}

	// A good config again through the admin API; a listen address change
	// is reported as needing a restart, and a new model serves at once.
	next := reloadConfig(up.Addr, dir, "Prompt four.", 1000, "") +
		"\n" // same models plus one below
	next = strings.Replace(next, "models:\n", "models:\n  - {id: m2, provider: up, upstreamModel: gpt-2}\n", 1)
	next = strings.Replace(next, `listen: "127.0.0.1:0", adminListen`, `listen: "127.0.0.1:1", adminListen`, 1)
	writeFile(t, path, next)
	r = g.admin("POST", "/admin/reload", "")
	var res struct {
		ConfigHash      string   `json:"configHash"`
		RestartRequired []string `json:"restartRequired"`
	}
	if r.Status != 200 || json.Unmarshal(r.Body, &res) != nil || len(res.ConfigHash) != 64 ||
		len(res.RestartRequired) != 1 || res.RestartRequired[0] != "server" {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	if ok := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"m2"}`)); ok.Model != "m2" {
		t.Fatalf("new model: %+v", ok)
	}
	if p := lastSystemPrompt(t, up); p != "Prompt four." {
		t.Fatalf("prompt %q", p)
	}
	if r := g.admin("GET", "/admin/reload", ""); r.Status != 405 {
		t.Fatalf("GET /admin/reload: %d", r.Status)
	}
}

// TestReloadKeepsBreakerOfUnchangedDeployment: a reload that changes one
// deployment of a model (so the model gets a new pool) keeps the breaker
// state of the deployments it did not change: an open breaker stays open
// instead of sending traffic to a failing upstream again.
func TestReloadKeepsBreakerOfUnchangedDeployment(t *testing.T) {
	bad := mocktest.Start(t, mock.ServerConfig{FailStatus: 500})
	good := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	text := func(goodWeight int) string {
		text := routingConfig(t, bad, good)
		text = strings.Replace(text, "breaker: {consecutiveFailures: 3, openFor: 1s}", "breaker: {consecutiveFailures: 3, openFor: 60s}", 1)
		return strings.Replace(text, "- {provider: b, upstreamModel: claude-b, priority: 1}",
			fmt.Sprintf("- {provider: b, upstreamModel: claude-b, priority: 1, weight: %d}", goodWeight), 1)
	}
	writeFile(t, path, text(1))
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, newLogger(newRedactor(io.Discard, cfg.secrets()), "error"))
	if err != nil {
		t.Fatal(err)
	}
	g := serveApp(t, a, cfg)
	a.configFile(path, nil)
	breakerOf := func(name string) string {
		for _, p := range a.currentPools() {
			if p.Model() == "ha-1" {
				for _, d := range p.Snapshot(time.Now()).Deployments {
					if d.Name == name {
						return d.Breaker
					}
				}
			}
		}
		return "missing"
	}
	for range 4 {
		if r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"ha-1"}`); r.Status != 200 {
			t.Fatalf("failover to b: %d %s", r.Status, r.Body)
		}
	}
	if s := breakerOf("a"); s != "open" {
		t.Fatalf("a's breaker %s after 4 failures, want open", s)
	}
	before := a.currentPools()
	writeFile(t, path, text(5)) // b changes, a does not
	if _, err := a.reload("test"); err != nil {
		t.Fatal(err)
	}
	if a.currentPools()[0] == before[0] {
		t.Fatal("the model kept its pool: the test changes nothing")
	}
	if s := breakerOf("a"); s != "open" {
		t.Errorf("a's breaker %s after the reload, want still open", s)
	}
	failures := bad.Srv.Stats().Failures
	for range 3 {
		if r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"ha-1"}`); r.Status != 200 {
			t.Fatalf("after reload: %d %s", r.Status, r.Body)
		}
	}
	if n := bad.Srv.Stats().Failures; n != failures {
		t.Errorf("the failing upstream got %d more requests after the reload", n-failures)
	}
}
