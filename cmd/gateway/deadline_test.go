package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestShutdownKeepsItsDeadline runs the real binary: SIGTERM with a stream
// open exits within server.shutdownTimeout + 0.5 s (the stream ends with
// the shutdown error event), and idle within 0.5 s.
func TestShutdownKeepsItsDeadline(t *testing.T) {
	const timeout = 2 * time.Second
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", shutdownTimeout: %s}
log: {level: info}
auth:
  apiKeys: [{id: key_demo, workspace: wsp_demo, sha256: %s}]
personas:
  items: [{id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: slow}]
providers: [{name: mock, type: mock, mock: {outputTokens: 1000, tokenDelay: 100ms}}]
models: [{id: slow, provider: mock}]
ledger: {driver: sqlite, path: %s, spoolPath: %s}
`, timeout, hashOf(mocktest.KeyDemo), filepath.Join(dir, "usage.db"), filepath.Join(dir, "spool.jsonl"))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	exitAfterTerm := func(p *proc) time.Duration {
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
		case <-time.After(timeout + 10*time.Second):
			t.Fatal("no exit")
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, p.logs.String())
		}
		return time.Since(start)
	}

	t.Run("idle", func(t *testing.T) {
		p := startBinary(t, "-config", cfgPath)
		g := &gw{Client: testkit.Client{T: t, Base: "http://" + p.addr}, t: t}
		testkit.DecodeErr(t, g.Chat("", "psn_demo", `{"userText":"hi"}`)) // a keep-alive connection left idle
		if d := exitAfterTerm(p); d > 500*time.Millisecond {
			t.Fatalf("idle exit took %v, want ≤ 0.5s; log:\n%s", d, p.logs.String())
		} else {
			t.Logf("idle exit after %v", d)
		}
	})
	t.Run("stream open", func(t *testing.T) {
		p := startBinary(t, "-config", cfgPath)
		g := &gw{Client: testkit.Client{T: t, Base: "http://" + p.addr}, t: t}
		_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true}`)
		if ev, err := sr.Next(); err != nil || ev.Name != "delta" {
			t.Fatalf("first event %q: %v", ev.Raw, err)
		}
		last := make(chan testkit.SSEEvent, 1)
		go func() {
			for {
				ev, err := sr.Next()
				if err != nil || ev.Name != "delta" {
					last <- ev
					return
				}
			}
		}()
		d := exitAfterTerm(p)
		if d > timeout+500*time.Millisecond {
			t.Fatalf("exit with a stream open took %v, want ≤ %v; log:\n%s", d, timeout+500*time.Millisecond, p.logs.String())
		}
		if d < timeout {
			t.Fatalf("exit after %v: the stream was not given its %v", d, timeout)
		}
		t.Logf("exit with a stream open after %v", d)
		if ev := <-last; ev.Name != "error" {
			t.Fatalf("stream ended with %q, want the shutdown error event", ev.Raw)
		}
	})
}
