package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

var (
	cmdBuildOnce sync.Once
	cmdBuildDir  string
	cmdBuildErr  error
)

// commandBinaries builds mockllm and bench once per run.
func commandBinaries(t *testing.T) (mockllm, bench string) {
	t.Helper()
	cmdBuildOnce.Do(func() {
		cmdBuildDir, cmdBuildErr = os.MkdirTemp("", "moonborn-cmds-")
		for _, c := range []string{"mockllm", "bench"} {
			if cmdBuildErr != nil {
				return
			}
			if out, err := exec.Command("go", "build", "-o", filepath.Join(cmdBuildDir, c), "../"+c).CombinedOutput(); err != nil {
				cmdBuildErr = fmt.Errorf("%s: %v\n%s", c, err, out)
			}
		}
	})
	if cmdBuildErr != nil {
		t.Fatal(cmdBuildErr)
	}
	return filepath.Join(cmdBuildDir, "mockllm"), filepath.Join(cmdBuildDir, "bench")
}

// TestEveryCommandHasHelpAndVersion: -help exits 0 with the usage, and
// -version prints the build, for gateway, mockllm and bench.
func TestEveryCommandHasHelpAndVersion(t *testing.T) {
	mockllm, bench := commandBinaries(t)
	for _, c := range []struct{ name, bin, usage string }{
		{"gateway", gatewayBinary(t), "-print-default-config"},
		{"mockllm", mockllm, "-token-delay"},
		{"bench", bench, "-compare"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, flag := range []string{"-help", "-h"} {
				out, err := exec.Command(c.bin, flag).CombinedOutput()
				if err != nil {
					t.Fatalf("%s %s: %v\n%s", c.name, flag, err, out)
				}
				if !strings.Contains(string(out), c.usage) || strings.Contains(string(out), "ERROR") {
					t.Fatalf("%s %s printed %q", c.name, flag, out)
				}
			}
			out, err := exec.Command(c.bin, "-version").Output()
			if err != nil {
				t.Fatalf("-version: %v", err)
			}
			re := regexp.MustCompile(`^moonborn ` + c.name + ` \S+ \(revision [0-9a-f]{40}|unknown[^)]*\) ` + regexp.QuoteMeta(runtime.Version()) + "\n$")
			if !re.Match(out) {
				t.Fatalf("-version printed %q", out)
			}
			if code := exitCode(exec.Command(c.bin, "-no-such-flag").Run()); code != 2 {
				t.Fatalf("an unknown flag exits %d, want 2", code)
			}
		})
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestBuildInfoMetric(t *testing.T) {
	g := startGateway(t, testConfig(t, nil, ""))
	body := scrapeMetrics(t, "http://"+g.app.AdminAddr)
	re := regexp.MustCompile(`(?m)^moonborn_build_info\{.*goversion="` + regexp.QuoteMeta(runtime.Version()) + `".*version="[^"]+".*\} 1$`)
	if !re.Match(body) {
		t.Fatalf("no moonborn_build_info:\n%s", grepLines(body, "build_info"))
	}
}

// TestEmbeddedDefaultConfig: the binary carries config.yaml; run with no
// -config from a directory without one, it serves the demo, and
// -print-default-config writes exactly that file.
func TestEmbeddedDefaultConfig(t *testing.T) {
	want, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(defaultConfig, want) {
		t.Fatal("cmd/gateway/default-config.yaml differs from config.yaml: cp config.yaml cmd/gateway/default-config.yaml")
	}
	out, err := exec.Command(gatewayBinary(t), "-print-default-config").Output()
	if err != nil || !bytes.Equal(out, want) {
		t.Fatalf("-print-default-config: %v; %d bytes, want %d", err, len(out), len(want))
	}
	dir := t.TempDir()
	cmd := exec.Command(gatewayBinary(t), "-check-config")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "built-in default") {
		t.Fatalf("-check-config on the default: %v %s", err, out)
	}
	p := startBinaryIn(t, dir, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0")
	g := &gw{Client: testkit.Client{T: t, Base: "http://" + p.addr}, t: t}
	if ok := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi"}`)); ok.Model != "mock-1" {
		t.Fatalf("reply %+v", ok)
	}
	stopProcess(t, p)
	if _, err := os.Stat(filepath.Join(dir, "data", "usage.db")); err != nil {
		t.Fatalf("the default ledger is not data/usage.db under the working directory: %v", err)
	}
}

// TestCheckConfigReportsTenMistakesAtOnce: one file, ten different kinds
// of mistake; -check-config names all ten, each with its path and line.
func TestCheckConfigReportsTenMistakesAtOnce(t *testing.T) {
	text := `server:
  listen: 127.0.0.1:0
  readTimeout: 120
  maxBodyBytes: lots
  lisen: 127.0.0.1:1
log:
  level: loud
  access: maybe
auth:
  apiKeys:
    - {id: k, workspace: w, sha256: e2e54aa7ce5ee9af78be9b1614b338e8f3fd83821043463e271b7b3e1e822663}
personas:
  items:
    - {id: psn_a, workspace: w, name: A, systemPrompt: S, defaultModel: nope-1}
providers:
  - name: p
    type: openai
    openai:
      baseURL: http://127.0.0.1:1/v1
      apiKey: ${MOONBORN_TEST_SURELY_UNSET}
models:
  - {id: m1, provider: p, maxOutputTokens: 0, temperature: 7}
  - {id: m2, provider: opnai, colour: blue}
`
	wants := []string{
		`server.readTimeout: "120" is not a duration (e.g. 30s) (line 3)`,
		`server.maxBodyBytes: "lots" is not a whole number (line 4)`,
		`server.lisen: unknown key (line 5)`,
		`log.level: must be one of debug, info, warn, error (line 7)`,
		`log.access: "maybe" is not true or false (line 8)`,
		`personas[psn_a].defaultModel: unknown model "nope-1" (line 14)`,
		`providers[0].openai.apiKey: environment variable MOONBORN_TEST_SURELY_UNSET is not set (line 20)`,
		`models[0].temperature: must be between 0 and 2 (line 22)`,
		`models[1].provider: unknown provider "opnai" (line 23)`,
		`models[1].colour: unknown key (line 23)`,
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-check-config", "-config", path}, nil, &out, &errOut, nil); code != 1 {
		t.Fatalf("exit %d", code)
	}
	got := errOut.String()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q", w)
		}
	}
	if strings.Contains(got, "unmarshal") || strings.Contains(got, "!!") {
		t.Errorf("Go's words leaked into the report")
	}
	if t.Failed() {
		t.Logf("report:\n%s", got)
	}
}

// TestChartConfigChecks: the Helm chart's default config passes the
// gateway's own check, alone and with the fleet's variables set as the
// chart sets them.
func TestChartConfigChecks(t *testing.T) {
	path := "../../deploy/helm/moonborn-edge/files/config.yaml"
	for _, env := range [][]string{nil, {
		"MOONBORN_LIMITS=redis", "MOONBORN_REDIS=redis:6379", "MOONBORN_LEDGER_DRIVER=postgres",
		"MOONBORN_LEDGER_DSN=postgres://gateway:pw@db:5432/moonborn", "MOONBORN_SPOOL=/var/lib/moonborn/data/spool-x.jsonl",
	}} {
		cmd := exec.Command(gatewayBinary(t), "-check-config", "-config", path)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("env %v: %v\n%s", env, err, out)
		}
	}
}

// readmeExample is a curl command of the README and the output block that
// follows it.
type readmeExample struct {
	cmd, output, outputLang string
}

// readmeCurls returns the README's curl commands against the single
// node's default addresses, each with the output shown after it.
func readmeCurls(t *testing.T) []readmeExample {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```([a-z]*)\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	var out []readmeExample
	for i, blk := range blocks {
		if blk[1] != "sh" {
			continue
		}
		for _, line := range strings.Split(strings.ReplaceAll(blk[2], "\\\n", " "), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "curl ") || !strings.Contains(line, "127.0.0.1:8080") && !strings.Contains(line, "127.0.0.1:9090") {
				continue
			}
			ex := readmeExample{cmd: line}
			if i+1 < len(blocks) && blocks[i+1][1] != "sh" {
				ex.output, ex.outputLang = blocks[i+1][2], blocks[i+1][1]
			}
			out = append(out, ex)
		}
	}
	return out
}

func keysOf(m map[string]any) string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return strings.Join(k, ",")
}

// TestReadmeCurlExamples runs every README curl command aimed at the
// single node, with real curl, against the binary on its built-in
// default config, and compares what comes back with the output the README
// shows (fields, event names; not the mock's random words).
func TestReadmeCurlExamples(t *testing.T) {
	curl := testkit.Tool(t, "curl", "apt-get install curl")
	examples := readmeCurls(t)
	if len(examples) < 2 {
		t.Fatalf("found %d curl examples in the README", len(examples))
	}
	dir := t.TempDir()
	p := startBinaryIn(t, dir, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0")
	for _, ex := range examples {
		line := strings.ReplaceAll(strings.ReplaceAll(ex.cmd, "127.0.0.1:8080", p.addr), "127.0.0.1:9090", p.admin)
		line = strings.Replace(line, "curl ", curl+" --fail-with-body --max-time 10 ", 1)
		out, err := exec.Command("sh", "-c", line).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", ex.cmd, err, out)
			continue
		}
		switch {
		case ex.outputLang == "json":
			var want, got map[string]any
			if err := json.Unmarshal([]byte(ex.output), &want); err != nil {
				t.Fatalf("README output of %s: %v", ex.cmd, err)
			}
			if err := json.Unmarshal(out, &got); err != nil || keysOf(got) != keysOf(want) || got["model"] != want["model"] {
				t.Errorf("%s answered %s; the README shows %s", ex.cmd, out, ex.output)
			}
		case strings.Contains(ex.output, "event: "):
			names := regexp.MustCompile(`(?m)^event: (\w+)$`)
			wantNames := map[string]bool{}
			for _, m := range names.FindAllStringSubmatch(ex.output, -1) {
				wantNames[m[1]] = true
			}
			gotNames := map[string]bool{}
			for _, m := range names.FindAllStringSubmatch(string(out), -1) {
				gotNames[m[1]] = true
			}
			if fmt.Sprint(gotNames) != fmt.Sprint(wantNames) || !strings.HasSuffix(strings.TrimSpace(string(out)), "}") {
				t.Errorf("%s streamed %s; the README shows %s", ex.cmd, out, ex.output)
			}
			doneRe := regexp.MustCompile(`(?m)^data: (\{"type":"done".*\})$`)
			w, g := doneRe.FindStringSubmatch(ex.output), doneRe.FindStringSubmatch(string(out))
			if w == nil || g == nil {
				t.Errorf("no done event in the README or the reply:\n%s", out)
				continue
			}
			var wm, gm map[string]any
			_ = json.Unmarshal([]byte(w[1]), &wm)
			_ = json.Unmarshal([]byte(g[1]), &gm)
			if keysOf(wm) != keysOf(gm) {
				t.Errorf("done event %s; the README shows %s", g[1], w[1])
			}
		}
	}
	stopProcess(t, p)
}
