package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replica is one gateway process.
type replica struct {
	cmd         *exec.Cmd
	base, admin string
}

// startReplica runs the binary on cfgPath with env added, on ephemeral
// ports, as an operator would (README: a fleet).
func startReplica(t *testing.T, bin, cfgPath string, env []string) *replica {
	t.Helper()
	cmd := exec.Command(bin, "-config", cfgPath, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	r := &replica{cmd: cmd}
	logs := bufio.NewScanner(stderr)
	for r.base == "" && logs.Scan() {
		var line map[string]any
		if json.Unmarshal(logs.Bytes(), &line) == nil && line["msg"] == "gateway listening" {
			r.base = "http://" + line["addr"].(string)
			r.admin = "http://" + line["admin_addr"].(string)
		}
	}
	if r.base == "" {
		t.Fatal("replica never logged its address")
	}
	go func() {
		for logs.Scan() {
		}
	}()
	return r
}

func (r *replica) call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (r *replica) chat(t *testing.T, key string) (int, map[string]any) {
	t.Helper()
	st, b := r.call(t, "POST", r.base+"/v1/personas/psn_demo/chat", key, `{"userText":"hi"}`)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return st, m
}

// TestFleetKeysAndReload runs three processes on the repository's
// config.yaml switched to a fleet by environment variables, as the README
// shows: a key created on one replica works on all three, revoked on
// another it is refused by all three within 5 s, and a SIGHUP to each
// replica after an edit of the file changes the demo model's price.
func TestFleetKeysAndReload(t *testing.T) {
	dsn, _ := testPostgres(t)
	redisAddr := testRedisAddr(t)
	bin := gatewayBinary(t)
	dir := t.TempDir()
	orig, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	writeFile(t, cfgPath, string(orig))
	var reps []*replica
	for i := range 3 {
		reps = append(reps, startReplica(t, bin, cfgPath, []string{
			"MOONBORN_LIMITS=redis", "MOONBORN_REDIS=" + redisAddr, "MOONBORN_LEDGER_DRIVER=postgres",
			"MOONBORN_LEDGER_DSN=" + dsn, "MOONBORN_ADMIN_TOKEN=" + testAdminToken,
			"MOONBORN_SPOOL=" + filepath.Join(dir, "spool-"+string(rune('a'+i))+".jsonl"),
		}))
	}
	st, b := reps[0].call(t, "POST", reps[0].admin+"/admin/workspaces/wsp_demo/keys", testAdminToken, `{"name":"fleet"}`)
	var k createdKey
	if st != 201 || json.Unmarshal(b, &k) != nil || k.Key == "" {
		t.Fatalf("create: %d %s", st, b)
	}
	for i, r := range reps {
		within5s(t, "key on replica "+string(rune('0'+i)), func() bool { st, _ := r.chat(t, k.Key); return st == 200 })
	}
	if st, b := reps[2].call(t, "DELETE", reps[2].admin+"/admin/keys/"+k.ID, testAdminToken, ""); st != 200 {
		t.Fatalf("revoke: %d %s", st, b)
	}
	start := time.Now()
	for _, r := range reps {
		for {
			if st, _ := r.chat(t, k.Key); st == 401 {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("revoked key still accepted after 5s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Edit the price and SIGHUP every replica.
	_, before := reps[1].chat(t, "mb_test_demo")
	edited := strings.Replace(string(orig), "inputPricePerMTok: 0.15", "inputPricePerMTok: 150", 1)
	if edited == string(orig) {
		t.Fatal("config.yaml no longer has the demo price this test edits")
	}
	writeFile(t, cfgPath, edited)
	for _, r := range reps {
		_ = r.cmd.Process.Signal(syscall.SIGHUP)
	}
	for _, r := range reps {
		within5s(t, "new price after SIGHUP", func() bool {
			_, after := r.chat(t, "mb_test_demo")
			return after["costUsdMicros"].(float64) > 100*before["costUsdMicros"].(float64)
		})
		st, b := r.call(t, "GET", r.admin+"/admin/status", testAdminToken, "")
		if st != 200 || !strings.Contains(string(b), `"restartRequired":[]`) {
			t.Fatalf("status: %d %s", st, b)
		}
	}
}
