package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// A key of no recognisable shape: only its place in a request (after
// Authorization, X-Api-Key, Cookie) can tell the redactor it is one.
const (
	keyPlain       = "plainkey0123456789"
	upstreamSecret = "Upstream-Key-Q9w8e7r6t5"
	adminSecret    = "admin-token-Z1x2c3v4b5"
)

// proc is a running gateway binary.
type proc struct {
	cmd         *exec.Cmd
	addr, admin string
	logs        *testkit.SyncBuffer // every byte of its stderr
	exited      chan struct{}
}

// startLoggedProcess runs the gateway binary on cfgPath and keeps every
// byte of its stderr.
func startLoggedProcess(t *testing.T, cfgPath string) (cmd *proc, addr, admin string, logs *testkit.SyncBuffer) {
	t.Helper()
	p := startBinary(t, "-config", cfgPath)
	return p, p.addr, p.admin, p.logs
}

// startBinary runs the gateway binary with args and returns once it
// logged its addresses.
func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinaryIn(t, "", args...)
}

// startBinaryIn is startBinary in the working directory dir.
func startBinaryIn(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	logs := &testkit.SyncBuffer{}
	found := make(chan [2]string, 1)
	go func() {
		br := bufio.NewReader(pr)
		sent := false
		for {
			line, err := br.ReadBytes('\n')
			_, _ = logs.Write(line)
			var m map[string]any
			if !sent && json.Unmarshal(line, &m) == nil && m["msg"] == "gateway listening" {
				a, _ := m["addr"].(string)
				ad, _ := m["admin_addr"].(string)
				found <- [2]string{a, ad}
				sent = true
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()
	select {
	case a := <-found:
		return &proc{cmd: cmd, addr: a[0], admin: a[1], logs: logs, exited: exited}
	case <-exited:
		t.Fatalf("gateway exited; stderr:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway never logged its address; stderr:\n%s", logs.String())
	}
	return nil
}

// stopProcess sends SIGTERM and waits for the exit.
func stopProcess(t *testing.T, p *proc) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
}

func securityConfig(t *testing.T, dir, upAddr, server string) string {
	t.Helper()
	return fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  adminListen: 127.0.0.1:0
  adminToken: %s
  shutdownTimeout: 2s
%s
log: {level: debug, access: true}
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
    - {id: key_plain, workspace: wsp_demo, sha256: %s}
personas:
  items:
    - {id: psn_demo, workspace: wsp_demo, name: Demo, systemPrompt: S, defaultModel: mock-1}
providers:
  - {name: mock, type: mock}
  - name: oa
    type: openai
    openai: {baseURL: "http://%s/v1", apiKey: %s, timeout: 2s}
models:
  - {id: mock-1, provider: mock}
  - {id: oa-1, provider: oa, upstreamModel: gpt-test}
ledger: {driver: sqlite, path: %s, spoolPath: %s}
`, adminSecret, server, hashOf(mocktest.KeyDemo), hashOf(keyPlain), upAddr, upstreamSecret,
		filepath.Join(dir, "usage.db"), filepath.Join(dir, "spool.jsonl"))
}

// rawExchange writes req on a fresh connection and returns the status
// line's code and the whole reply (the server closes after an error).
func rawExchange(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read reply to %q: %v", req[:min(len(req), 60)], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMalformedRequestsNeverLogCredentials sends every request shape
// fasthttp cannot parse, each carrying known credentials, to the real
// binary logging at debug level, and looks for the credentials in every
// byte of its stderr and of the files it wrote.
func TestMalformedRequestsNeverLogCredentials(t *testing.T) {
	dir := t.TempDir()
	up := mocktest.Start(t, mock.ServerConfig{})
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(securityConfig(t, dir, up.Addr, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr, admin, logs := startLoggedProcess(t, cfgPath)

	creds := "Authorization: Bearer " + keyPlain + "\r\nX-Api-Key: " + keyPlain +
		"\r\nCookie: session=" + keyPlain + "\r\nProxy-Authorization: Basic " + keyPlain + "\r\n"
	credsDemo := "Authorization: Bearer " + mocktest.KeyDemo + "\r\n"
	const body = `{"userText":"hi"}`
	head := "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: gw\r\n"
	shapes := []struct{ name, req string }{
		{"NUL in a header", head + creds + "X-Bad: a\x00b\r\nContent-Length: 17\r\n\r\n" + body},
		{"CR in a header", head + creds + "X-Bad: a\rb\r\nContent-Length: 17\r\n\r\n" + body},
		{"VT in a header", head + creds + "X-Bad: a\vb\r\nContent-Length: 17\r\n\r\n" + body},
		{"bad Content-Length", head + creds + "Content-Length: 17abc\r\n\r\n" + body},
		{"duplicate Content-Length", head + creds + "Content-Length: 17\r\nContent-Length: 18\r\n\r\n" + body},
		{"Transfer-Encoding gzip, chunked", head + creds + "Transfer-Encoding: gzip, chunked\r\n\r\n11\r\n" + body + "\r\n0\r\n\r\n"},
		{"Content-Length and Transfer-Encoding", head + creds + "Content-Length: 17\r\nTransfer-Encoding: chunked\r\n\r\n" + body},
		{"bad chunk size", head + creds + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + "\r\n0\r\n\r\n"},
		{"header without colon", head + creds + "NoColonHere\r\nContent-Length: 17\r\n\r\n" + body},
		{"garbage request line", "GARBAGE " + keyPlain + "\r\n" + creds + "\r\n"},
		{"headers too large", head + creds + "X-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n"},
		{"demo key, bad Content-Length", head + credsDemo + "Content-Length: 17abc\r\n\r\n" + body},
		{"body too large", head + creds + "Content-Length: 2000000\r\n\r\n" + strings.Repeat("x", 1000)},
	}
	for _, s := range shapes {
		status, reply := rawExchange(t, addr, s.req)
		if status < 400 || status > 499 {
			t.Errorf("%s: status %d, want 4xx", s.name, status)
		}
		var e testkit.APIError
		if json.Unmarshal([]byte(reply), &e) != nil || e.Error.Code == "" {
			t.Errorf("%s: reply %q is not the error shape", s.name, reply)
		}
		if strings.Contains(reply, keyPlain) {
			t.Errorf("%s: the reply echoes the key: %q", s.name, reply)
		}
	}
	// Authenticated requests too: the access log, an upstream call
	// carrying the upstream key, the admin API with its token.
	g := &gw{Client: testkit.Client{T: t, Base: "http://" + addr}, t: t}
	testkit.DecodeOK(t, g.Chat(keyPlain, "psn_demo", body))
	testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"oa-1"}`))
	req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/admin/upstreams", nil)
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	if r := g.Do(req); r.Status != 200 {
		t.Fatalf("admin: %d %s", r.Status, r.Body)
	}
	metrics := scrapeMetrics(t, "http://"+admin)
	if !regexp.MustCompile(`moonborn_unreadable_requests_total\{reason="malformed_headers"\} [1-9]`).Match(metrics) ||
		!regexp.MustCompile(`moonborn_unreadable_requests_total\{reason="body_too_large"\} 1\b`).Match(metrics) {
		t.Errorf("unreadable requests not counted:\n%s", grepLines(metrics, "moonborn_unreadable"))
	}
	stopProcess(t, cmd)

	out := logs.String()
	if !strings.Contains(out, `"msg":"unreadable request"`) || !strings.Contains(out, `"msg":"access"`) && !strings.Contains(out, `"request_id"`) {
		t.Fatalf("the log lacks the lines this test looks through:\n%s", out)
	}
	files := map[string][]byte{"stderr": []byte(out)}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != cfgPath {
			b, _ := os.ReadFile(p)
			files[p] = b
		}
		return nil
	})
	for name, b := range files {
		for _, secret := range []string{keyPlain, mocktest.KeyDemo, upstreamSecret, adminSecret} {
			if bytes.Contains(b, []byte(secret)) {
				i := bytes.Index(b, []byte(secret))
				t.Errorf("%s holds %q: …%s…", name, secret, b[max(0, i-120):min(len(b), i+60)])
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestUnreadableFloodIsRateLimited: an anonymous flood of unparsable
// requests is answered and counted whole, but logged at a bounded rate.
func TestUnreadableFloodIsRateLimited(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(securityConfig(t, dir, "127.0.0.1:1", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr, admin, logs := startLoggedProcess(t, cfgPath)
	const n = 300
	start := time.Now()
	for range n {
		if status, _ := rawExchange(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"); status != 422 {
			t.Fatalf("status %d", status)
		}
	}
	elapsed := time.Since(start)
	metrics := scrapeMetrics(t, "http://"+admin)
	stopProcess(t, cmd)
	if !strings.Contains(string(metrics), `moonborn_unreadable_requests_total{reason="malformed_headers"} 300`) {
		t.Errorf("not all counted:\n%s", grepLines(metrics, "moonborn_unreadable"))
	}
	lines := strings.Count(logs.String(), `"msg":"unreadable request"`)
	if limit := 10 + int(elapsed/time.Second) + 2; lines > limit {
		t.Fatalf("%d lines logged for %d requests in %v; want at most %d", lines, n, elapsed, limit)
	}
	if lines == 0 {
		t.Fatal("nothing logged")
	}
	t.Logf("%d requests in %v: %d log lines", n, elapsed, lines)
}

// TestOnlyTheRedactorWrites guards the single redaction point: outside
// newLogger nothing in the gateway's packages builds a log handler or
// writes to the process's stdout or stderr (the logger types do the
// rest: newLogger takes only a *redactor).
func TestOnlyTheRedactorWrites(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	checked := 0
	for _, d := range strings.Fields(string(out)) {
		if !strings.HasPrefix(d, root) || strings.Contains(d, string(filepath.Separator)+"bench") {
			continue // third-party modules: covered by routing their loggers (redis, fasthttp, std log)
		}
		files, _ := filepath.Glob(filepath.Join(d, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			checked++
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, _ := sel.X.(*ast.Ident)
				if pkg == nil {
					return true
				}
				name := pkg.Name + "." + sel.Sel.Name
				pos := fset.Position(sel.Pos())
				rel, _ := filepath.Rel(root, pos.Filename)
				switch name {
				case "slog.NewJSONHandler", "slog.NewTextHandler":
					if rel != filepath.Join("cmd", "gateway", "logging.go") {
						t.Errorf("%s:%d: %s outside newLogger", rel, pos.Line, name)
					}
				case "os.Stderr", "os.Stdout", "fmt.Print", "fmt.Printf", "fmt.Println",
					"log.Print", "log.Printf", "log.Println", "log.Fatal", "log.Fatalf", "slog.Default",
					"slog.Info", "slog.Warn", "slog.Error", "slog.Debug", "slog.SetDefault":
					if rel != filepath.Join("cmd", "gateway", "main.go") || !strings.HasPrefix(name, "os.") {
						t.Errorf("%s:%d: %s bypasses the redactor", rel, pos.Line, name)
					}
				}
				return true
			})
		}
	}
	if checked < 20 {
		t.Fatalf("only %d files checked", checked)
	}
}

// zeros is an endless reader of a JSON-ish filler byte.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// writeAllThenRead is Python's http.client: it writes the whole request,
// body included, before it reads a byte of the reply.
func writeAllThenRead(addr string, size int64, chunked bool, buf []byte) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	hdr := "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + mocktest.KeyDemo + "\r\nContent-Type: application/json\r\n"
	if chunked {
		hdr += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		hdr += "Content-Length: " + strconv.FormatInt(size, 10) + "\r\n\r\n"
	}
	bw := bufio.NewWriterSize(c, 64<<10)
	if _, err := bw.WriteString(hdr); err != nil {
		return 0, err
	}
	for sent := int64(0); sent < size; {
		n := min(int64(len(buf)), size-sent)
		if chunked {
			fmt.Fprintf(bw, "%x\r\n", n)
		}
		if _, err := bw.Write(buf[:n]); err != nil {
			return 0, fmt.Errorf("writing the body at %d: %w", sent, err)
		}
		if chunked {
			bw.WriteString("\r\n")
		}
		sent += n
	}
	if chunked {
		bw.WriteString("0\r\n\r\n")
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("writing the body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("reading the reply: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 413 && (!strings.Contains(string(body), `"payload_too_large"`) || !resp.Close) {
		return 0, fmt.Errorf("413 without the error shape or Connection: close: %q", body)
	}
	return resp.StatusCode, nil
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in %s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestOversizedBodyGets413 runs the real binary at the default body limit
// (1 MiB) and has Go's net/http client, a write-everything-then-read
// client (Python's http.client) and curl each send 2.5 MiB and 64 MiB
// bodies 50 times in a row: every one reads the 413, and the gateway's
// RSS stays flat.
func TestOversizedBodyGets413(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(securityConfig(t, dir, "127.0.0.1:1", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr, _, _ := startLoggedProcess(t, cfgPath)
	url := "http://" + addr + "/v1/personas/psn_demo/chat"
	buf := make([]byte, 256<<10)
	_, _ = zeros{}.Read(buf)
	const limit = 1 << 20
	sizes := []int64{limit * 5 / 2, 64 * limit}
	curl := testkit.Tool(t, "curl", "apt-get install curl")
	files := map[int64]string{}
	for _, size := range sizes {
		f := filepath.Join(dir, fmt.Sprintf("body-%d", size))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, size); err != nil { // sparse: no disk used
			t.Fatal(err)
		}
		files[size] = f
	}
	clients := []struct {
		name string
		do   func(size int64) (int, error)
	}{
		{"net/http", func(size int64) (int, error) {
			req, _ := http.NewRequest(http.MethodPost, url, io.LimitReader(zeros{}, size))
			req.ContentLength = size
			req.Header.Set("Authorization", "Bearer "+mocktest.KeyDemo)
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
			resp, err := c.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			_, err = io.ReadAll(resp.Body)
			return resp.StatusCode, err
		}},
		{"write-all-then-read", func(size int64) (int, error) { return writeAllThenRead(addr, size, false, buf) }},
		{"write-all-then-read chunked", func(size int64) (int, error) { return writeAllThenRead(addr, size, true, buf) }},
		{"curl", func(size int64) (int, error) {
			out, err := exec.Command(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
				"-T", files[size], "-H", "Authorization: Bearer "+mocktest.KeyDemo, "-H", "Content-Type: application/json", url).CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("%v: %s", err, out)
			}
			return strconv.Atoi(strings.TrimSpace(string(out)))
		}},
	}
	// Warm up, then measure.
	for _, c := range clients {
		for _, size := range sizes {
			if _, err := c.do(size); err != nil {
				t.Fatalf("%s warm-up: %v", c.name, err)
			}
		}
	}
	before := rssKiB(t, cmd.cmd.Process.Pid)
	peak := before
	for _, c := range clients {
		for _, size := range sizes {
			fails := 0
			for i := 0; i < 50; i++ {
				status, err := c.do(size)
				if err != nil || status != http.StatusRequestEntityTooLarge {
					fails++
					t.Errorf("%s, %d bytes, try %d: status %d, %v", c.name, size, i, status, err)
				}
				if fails > 3 {
					t.FailNow()
				}
			}
			peak = max(peak, rssKiB(t, cmd.cmd.Process.Pid))
		}
	}
	after := rssKiB(t, cmd.cmd.Process.Pid)
	t.Logf("gateway RSS: %d KiB after warm-up, %d KiB peak, %d KiB after %d oversized requests", before, peak, after, 50*len(sizes)*len(clients))
	if peak > before+16<<10 {
		t.Errorf("RSS grew from %d KiB to %d KiB", before, peak)
	}
	// Bodies from 1× to 64× the limit, written whole before reading.
	for _, mult := range []float64{1.01, 2, 4, 8, 16, 32, 64} {
		size := int64(mult * limit)
		if status, err := writeAllThenRead(addr, size, false, buf); err != nil || status != 413 {
			t.Errorf("%.0f× the limit: status %d, %v", mult, status, err)
		}
	}
	stopProcess(t, cmd)
}

// TestAdminPathsMatchRawPath: admin routes see the path as sent; encoded
// separators and dot segments are refused, not normalised into another
// workspace's path.
func TestAdminPathsMatchRawPath(t *testing.T) {
	g := startGateway(t, testConfig(t, nil, "  adminToken: "+adminSecret))
	admin := g.app.AdminAddr
	get := func(path string) (int, string) {
		return rawExchange(t, admin, "GET "+path+" HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "+adminSecret+"\r\nConnection: close\r\n\r\n")
	}
	cases := []struct {
		path string
		want int
	}{
		{"/admin/workspaces/wsp_demo/usage", 200},
		{"/admin/workspaces/wsp%5Fdemo/usage", 200}, // an encoded ordinary character is fine
		{"/admin/workspaces/wsp_other%2f..%2fwsp_demo/usage", 400},
		{"/admin/workspaces/wsp_other%2F..%2Fwsp_demo/usage", 400},
		{"/admin/workspaces/wsp_other/../wsp_demo/usage", 400},
		{"/admin/workspaces/wsp_other/%2e%2e/wsp_demo/usage", 400},
		{"/admin/workspaces/wsp_demo%5cusage", 400},
		{"/admin//workspaces/wsp_demo/usage", 404},
		{"/admin/workspaces/wsp_demo/usage/", 404},
		{"/admin/./upstreams", 400},
		{"/admin/upstreams", 200},
		{"http://a/admin/workspaces/x%2f..%2fwsp_demo/usage", 400},
	}
	for _, c := range cases {
		status, body := get(c.path)
		if status != c.want {
			t.Errorf("%s: status %d (%s), want %d", c.path, status, body, c.want)
		}
	}
}

// TestReadTimeoutIs408: a request not received within server.readTimeout
// gets 408 in the error shape, not 422.
func TestReadTimeoutIs408(t *testing.T) {
	g := startGateway(t, testConfig(t, nil, "  readTimeout: 300ms"))
	addr := strings.TrimPrefix(g.Base, "http://")
	for _, partial := range []string{
		"POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: x\r\n",                            // headers unfinished
		"POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{", // body unfinished
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, partial)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", partial, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%q: %d %s, want 408 in the error shape", partial, resp.StatusCode, body)
		}
	}
}
