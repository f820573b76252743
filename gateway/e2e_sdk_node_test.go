package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestNodeSDKs runs sdktest/sdk.mjs: the official Node SDKs (npm openai
// and @anthropic-ai/sdk, pinned by sdktest/package-lock.json) against the
// gateway and mockllm upstreams of both protocols. .ci/run installs the
// packages first; when they are missing this test installs them itself
// (npm ci), and fails if it cannot.
func TestNodeSDKs(t *testing.T) {
	testkit.Tool(t, "node", "Debian packages nodejs and npm")
	testkit.Tool(t, "npm", "Debian packages nodejs and npm")
	dir, err := filepath.Abs("../sdktest")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--prefer-offline")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 7})
	g := newWorld(t, up).start()
	cmd := exec.CommandContext(ctx, "node", "sdk.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE="+g.Base, "KEY="+mocktest.KeyDemo)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node sdk.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
