package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg, err := LoadConfig("../../config.yaml")
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if cfg.Auth.APIKeys[0].SHA256 != hashOf(demoKey) || cfg.Models[0].ID != "mock-1" {
		t.Fatalf("default config changed: %+v", cfg.Auth.APIKeys)
	}
}

func TestConfigErrorsReportedTogether(t *testing.T) {
	text := `
server:
  listen: nowhere
  lisen: 1
auth:
  apiKeys:
    - {id: k, workspace: w, sha256: abc}
personas:
  items:
    - {id: bad, workspace: w, systemPrompt: x, defaultModel: m1}
providers:
  - {name: p, type: mock}
models:
  - {id: m1, provider: p}
  - {id: m2, provider: p}
  - {id: m3, provider: opnai}
  - {id: m4, provider: p, maxOutputTokens: -5, colour: blue}
ledger:
  path: ${MOONBORN_TEST_UNSET_VAR}
`
	_, err := ParseConfig([]byte(text))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"server.lisen: unknown key",
		"models[3].colour: unknown key",
		"ledger.path: environment variable MOONBORN_TEST_UNSET_VAR is not set",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	// Structural errors stop before semantic checks; fix them and the
	// semantic ones all appear at once.
	text = strings.Replace(strings.Replace(strings.Replace(text, "  lisen: 1\n", "", 1), ", colour: blue", "", 1), "${MOONBORN_TEST_UNSET_VAR}", "${MOONBORN_TEST_UNSET_VAR:-data/x.jsonl}", 1)
	_, err = ParseConfig([]byte(text))
	if err == nil {
		t.Fatal("accepted")
	}
	msg = err.Error()
	for _, want := range []string{
		"server.listen: must be host:port",
		"auth.apiKeys[0].sha256",
		`models[2].provider: unknown provider "opnai"`,
		"models[3].maxOutputTokens",
		"personas.items[0].id",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestConfigEnvExpansion(t *testing.T) {
	t.Setenv("MB_TEST_KEY", "sk-from-env")
	t.Setenv("MB_TEST_BODY", "8192")
	text := strings.Replace(testConfig(t, nil, ""), "apiKey: sk-test-upstream", `apiKey: "${MB_TEST_KEY}"`, 1)
	text = strings.Replace(text, "maxBodyBytes: 4096", "maxBodyBytes: ${MB_TEST_BODY}", 1)
	cfg, err := ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Providers[1].OpenAI.APIKey != "sk-from-env" || cfg.Server.MaxBodyBytes != 8192 {
		t.Fatalf("expansion: %q %d", cfg.Providers[1].OpenAI.APIKey, cfg.Server.MaxBodyBytes)
	}
}

func TestCheckConfigCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("models:\n  - {id: m, provider: opnai}\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-check-config", "-config", bad}, nil, &out, &errOut, nil); code == 0 {
		t.Fatal("invalid config passed -check-config")
	}
	if !strings.Contains(errOut.String(), "bogus: unknown key") {
		t.Fatalf("stderr: %s", errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"-check-config", "-config", "../../config.yaml"}, nil, &out, &errOut, nil); code != 0 {
		t.Fatalf("default config failed: %s", errOut.String())
	}
}

func TestHashKeyCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"hash-key"}, strings.NewReader("mb_test_demo\n"), &out, &errOut, nil); code != 0 {
		t.Fatal(errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != "e2e54aa7ce5ee9af78be9b1614b338e8f3fd83821043463e271b7b3e1e822663" {
		t.Fatalf("hash %q", got)
	}
}
