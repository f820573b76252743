package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestGracefulShutdown runs the real binary: SIGTERM during a stream lets
// the stream finish with its done event, refuses new connections, flushes
// the ledger and exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	bin := gatewayBinary(t)
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", shutdownTimeout: 10s}
log: {level: info}
auth:
  apiKeys: [{id: key_demo, workspace: wsp_demo, sha256: %s}]
personas:
  items: [{id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: slow}]
providers: [{name: mock, type: mock, mock: {outputTokens: 10, tokenDelay: 100ms}}]
models: [{id: slow, provider: mock, inputPricePerMTok: 1, outputPricePerMTok: 2}]
ledger: {driver: jsonl, path: %s}
`, hashOf(mocktest.KeyDemo), filepath.Join(dir, "usage.jsonl"))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr, _ := startProcess(t, bin, cfgPath)
	g := &gw{Client: testkit.Client{T: t, Base: "http://" + addr}, t: t}
	_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true}`)
	if ev, err := sr.Next(); err != nil || ev.Name != "delta" {
		t.Fatalf("first event %q: %v", ev.Raw, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	var last testkit.SSEEvent
	for {
		ev, err := sr.Next()
		if err != nil {
			t.Fatalf("stream cut by shutdown: %v", err)
		}
		if ev.Name != "delta" {
			last = ev
			break
		}
	}
	if last.Name != "done" {
		t.Fatalf("stream ended with %q", last.Raw)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	select {
	case err := <-waitc:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	data, err := os.ReadFile(filepath.Join(dir, "usage.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 1 || !strings.Contains(string(data), `"status":200`) {
		t.Fatalf("ledger after shutdown: %q", data)
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// gatewayBinary builds cmd/gateway once per test run.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "moonborn-gw-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "gateway"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return filepath.Join(buildDir, "gateway")
}

// startProcess runs the gateway binary on cfgPath (log level info, ports
// 0) and returns once it logged its addresses. The process is killed when
// the test ends if it is still running.
func startProcess(t *testing.T, bin, cfgPath string) (cmd *exec.Cmd, addr, admin string) {
	t.Helper()
	cmd = exec.Command(bin, "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	logs := bufio.NewScanner(stderr)
	for addr == "" && logs.Scan() {
		var line map[string]any
		if json.Unmarshal(logs.Bytes(), &line) == nil && line["msg"] == "gateway listening" {
			addr, _ = line["addr"].(string)
			admin, _ = line["admin_addr"].(string)
		}
	}
	if addr == "" {
		t.Fatal("gateway never logged its address")
	}
	go func() {
		for logs.Scan() { // keep draining so the child never blocks on stderr
		}
	}()
	return cmd, addr, admin
}
