package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// fleetConfig is a gateway sharing limits through Redis under prefix.
func fleetConfig(t *testing.T, redisAddr, prefix string, dir string) string {
	t.Helper()
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0"}
log: {level: info}
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
    - {id: key_other, workspace: wsp_other, sha256: %s}
personas:
  items:
    - {id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: m}
    - {id: psn_demo2, workspace: wsp_other, name: D, systemPrompt: S, defaultModel: m}
providers: [{name: mock, type: mock}]
models: [{id: m, provider: mock, inputPricePerMTok: 1000, outputPricePerMTok: 1000}]
ledger: {driver: sqlite, path: %s/usage.db, spoolPath: %s/spool.jsonl}
limits:
  backend: redis
  redis: {addr: %q, keyPrefix: %q}
  workspaces:
    - {id: wsp_demo, requestsPerMinute: 60, requestBurst: 600}
    - {id: wsp_other, monthlyBudgetUsdMicros: 200000}
`, hashOf(mocktest.KeyDemo), hashOf(mocktest.KeyOther), dir, dir, redisAddr, prefix)
}

// TestFleetSharesOneLimit: three gateway processes sharing one Redis,
// hammered together against a limit of 600 requests (burst, refilling at
// one a second), admit 600 ± 1% in total, not 3 × 600; and a monthly
// quota spent through one replica is refused by the others.
func TestFleetSharesOneLimit(t *testing.T) {
	redisAddr := testRedisAddr(t)
	prefix := "moonborn-test:" + randomSuffix() + ":"
	bin := gatewayBinary(t)
	var bases []string
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(cfgPath, []byte(fleetConfig(t, redisAddr, prefix, dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, addr, _ := startProcess(t, bin, cfgPath)
		bases = append(bases, "http://"+addr)
	}
	start := time.Now()
	results := make(chan *load, 3)
	for _, base := range bases {
		go func(base string) {
			results <- hammer(t, base, mocktest.KeyDemo, "psn_demo", 600, 8, `{"userText":"hi"}`, nil)
		}(base)
	}
	admitted, refused := 0, 0
	for range bases {
		l := <-results
		admitted += l.statuses[200]
		refused += l.statuses[429]
		if l.codes["rate_limited"] != l.statuses[429] {
			t.Fatalf("refusals %v", l.codes)
		}
	}
	elapsed := time.Since(start)
	refill := int(elapsed.Seconds()) + 1 // the bucket refills one request a second
	if admitted < 594 || admitted > 606+refill || admitted+refused != 1800 {
		t.Fatalf("admitted %d, refused %d in %v; want 600 ± 1%% (+%d refill)", admitted, refused, elapsed, refill)
	}

	// The quota: 200,000 µUSD at 1,000 USD per million tokens is about
	// 200 tokens, a handful of requests. Spend it through replica 0.
	var spent bool
	for i := 0; i < 100 && !spent; i++ {
		l := hammer(t, bases[0], mocktest.KeyOther, "psn_demo2", 1, 1, `{"userText":"spend"}`, nil)
		spent = l.codes["quota_exceeded"] == 1
	}
	if !spent {
		t.Fatal("quota never ran out on replica 0")
	}
	for _, base := range bases[1:] {
		l := hammer(t, base, mocktest.KeyOther, "psn_demo2", 1, 1, `{"userText":"spend"}`, nil)
		if l.codes["quota_exceeded"] != 1 {
			t.Fatalf("replica %s admitted a workspace whose quota is spent: %v %v", base, l.statuses, l.codes)
		}
	}
}

// TestSigtermDuringLoadKeepsEveryRow: SIGTERM while requests flow; every
// request that got a 200 has its row in the SQLite ledger afterwards.
func TestSigtermDuringLoadKeepsEveryRow(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(fleetConfig(t, "127.0.0.1:1", "x", dir), "limits:\n  backend: redis", "limits:\n  backend: local", 1)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr, _ := startProcess(t, gatewayBinary(t), cfgPath)
	var signalled bool
	l := hammer(t, "http://"+addr, mocktest.KeyDemo, "psn_demo", 1_000_000, 8, `{"userText":"hi"}`, func(i int64) {
		if i == 400 && !signalled {
			signalled = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	})
	_ = l
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if len(l.okIDs) < 400 {
		t.Fatalf("only %d successes", len(l.okIDs))
	}
	for _, id := range l.okIDs {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM usage_records WHERE request_id = ?`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("request %s: %d rows (%v) of %d successes", id, n, err, len(l.okIDs))
		}
	}
}

// TestRedisOutageModes: with Redis cut away mid-run, fail-closed answers
// 503 and fail-open keeps serving on local buckets; both recover without a
// restart when Redis is back, and the ledger still has every admitted
// request.
func TestRedisOutageModes(t *testing.T) {
	redisAddr := testRedisAddr(t)
	for _, mode := range []string{"fail-closed", "fail-open"} {
		t.Run(mode, func(t *testing.T) {
			proxy := testkit.StartProxy(t, redisAddr)
			text := testConfig(t, nil, "")
			text = strings.Replace(text, "ledger:\n", fmt.Sprintf(`limits:
  backend: redis
  onRedisDown: %s
  redis: {addr: %q, keyPrefix: "moonborn-test:%s:", timeout: 200ms, downBackoff: 100ms}
  default: {requestsPerMinute: 100000}
ledger:
`, mode, proxy.Addr(), randomSuffix()), 1)
			g := startGateway(t, text)
			before := hammer(t, g.Base, mocktest.KeyDemo, "psn_demo", 50, 4, `{"userText":"hi"}`, nil)
			proxy.Cut()
			during := hammer(t, g.Base, mocktest.KeyDemo, "psn_demo", 50, 4, `{"userText":"hi"}`, nil)
			proxy.Restore()
			var after *load
			testkit.Eventually(t, 5*time.Second, "recovery", func() bool {
				after = hammer(t, g.Base, mocktest.KeyDemo, "psn_demo", 5, 1, `{"userText":"hi"}`, nil)
				return after.statuses[200] == 5
			})
			if before.statuses[200] != 50 {
				t.Fatalf("before the outage: %v", before.statuses)
			}
			switch mode {
			case "fail-closed":
				if during.statuses[503] != 50 || during.codes["upstream_unavailable"] != 50 {
					t.Fatalf("fail-closed during the outage: %v %v", during.statuses, during.codes)
				}
			case "fail-open":
				if during.statuses[200] != 50 {
					t.Fatalf("fail-open during the outage: %v %v", during.statuses, during.codes)
				}
			}
			recs := g.readLedger()
			ok := 0
			for _, r := range recs {
				if r["status"].(float64) == 200 {
					ok++
				}
			}
			if want := 50 + during.statuses[200] + after.statuses[200]; ok < want {
				t.Fatalf("ledger has %d successful records, want at least %d", ok, want)
			}
		})
	}
}
