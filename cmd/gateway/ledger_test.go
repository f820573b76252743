package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// load is the outcome of hammer.
type load struct {
	mu       sync.Mutex
	statuses map[int]int
	codes    map[string]int
	costSum  int64
	okIDs    []string
}

// hammer sends n chat requests for persona from workers goroutines to base
// and tallies the replies. between, when set, runs after each request with
// its index. A worker stops at its first transport error (the gateway went
// away), counted as status 0.
func hammer(t *testing.T, base, token, persona string, n, workers int, body string, between func(i int64)) *load {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	l := &load{statuses: map[int]int{}, codes: map[string]int{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				req, _ := http.NewRequest("POST", base+"/v1/personas/"+persona+"/chat", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					l.mu.Lock()
					l.statuses[0]++
					l.mu.Unlock()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				l.mu.Lock()
				l.statuses[resp.StatusCode]++
				if resp.StatusCode == 200 {
					var ok testkit.ChatOK
					if json.Unmarshal(b, &ok) == nil {
						l.costSum += ok.CostUsdMicros
					}
					l.okIDs = append(l.okIDs, resp.Header.Get("X-Request-Id"))
				} else {
					var e testkit.APIError
					_ = json.Unmarshal(b, &e)
					l.codes[e.Error.Code]++
				}
				l.mu.Unlock()
				if between != nil {
					between(i)
				}
			}
		}()
	}
	wg.Wait()
	return l
}

// usageTotals reads GET /admin/workspaces/{id}/usage.
func usageTotals(t *testing.T, admin, token, workspace string) (requests, cost int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+admin+"/admin/workspaces/"+workspace+"/usage?from=2000-01-01", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum struct {
		Total struct{ Requests, CostUsdMicros int64 }
	}
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil || resp.StatusCode != 200 {
		t.Fatalf("usage API: %d %v", resp.StatusCode, err)
	}
	return sum.Total.Requests, sum.Total.CostUsdMicros
}

func ledgerConfig(t *testing.T, ledger string) string {
	t.Helper()
	text := testConfig(t, nil, "  adminToken: admin-secret")
	i := strings.Index(text, "ledger:\n")
	j := strings.Index(text[i:], "\n\n")
	if j < 0 {
		j = len(text) - i
	}
	return text[:i] + ledger + text[i+j:]
}

// TestLedgerSQLiteTenThousand: 10,000 requests through the gateway make
// exactly 10,000 rows in the SQLite ledger, whose totals (read back through
// the admin usage API) equal the sum of the replies' costUsdMicros.
func TestLedgerSQLiteTenThousand(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, ledgerConfig(t, fmt.Sprintf("ledger:\n  driver: sqlite\n  path: %s/usage.db\n  spoolPath: %s/spool.jsonl\n  flushInterval: 20ms\n", dir, dir)))
	l := hammer(t, g.Base, mocktest.KeyDemo, "psn_demo", 10000, 16, `{"userText":"count me"}`, nil)
	if l.statuses[200] != 10000 {
		t.Fatalf("statuses %v", l.statuses)
	}
	admin := g.app.AdminAddr
	g.stop() // flushes the ledger
	g2 := startGateway(t, ledgerConfig(t, fmt.Sprintf("ledger:\n  driver: sqlite\n  path: %s/usage.db\n  spoolPath: %s/spool.jsonl\n", dir, dir)))
	_ = admin
	n, cost := usageTotals(t, g2.app.AdminAddr, "admin-secret", "wsp_demo")
	if n != 10000 || cost != l.costSum {
		t.Fatalf("ledger has %d requests costing %d; replies: 10000 costing %d", n, cost, l.costSum)
	}
}

// TestLedgerPostgresSurvivesOutage: PostgreSQL becomes unreachable in the
// middle of 10,000 requests and comes back; afterwards it holds exactly
// 10,000 rows, none duplicated, with the replies' total cost.
func TestLedgerPostgresSurvivesOutage(t *testing.T) {
	dsn, db := testPostgres(t)
	u := strings.TrimPrefix(dsn, "postgres://")
	host := u[strings.Index(u, "@")+1 : strings.Index(u, "/")]
	proxy := testkit.StartProxy(t, host)
	proxied := strings.Replace(dsn, host, proxy.Addr(), 1)
	dir := t.TempDir()
	g := startGateway(t, ledgerConfig(t, fmt.Sprintf(
		"ledger:\n  driver: postgres\n  dsn: %q\n  spoolPath: %s/spool.jsonl\n  flushInterval: 20ms\n  writeTimeout: 1s\n  retryInterval: 100ms\n",
		proxied, dir)))
	l := hammer(t, g.Base, mocktest.KeyDemo, "psn_demo", 10000, 16, `{"userText":"count me"}`, func(i int64) {
		switch i {
		case 3000:
			proxy.Cut()
		case 6000:
			proxy.Restore()
		}
	})
	if l.statuses[200] != 10000 {
		t.Fatalf("statuses %v", l.statuses)
	}
	stats := g.app.ledger.Stats()
	g.stop()
	var rows, distinct, cost int64
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT request_id), coalesce(sum(cost_usd_micros),0) FROM usage_records`).Scan(&rows, &distinct, &cost); err != nil {
		t.Fatal(err)
	}
	if rows != 10000 || distinct != 10000 || cost != l.costSum {
		t.Fatalf("postgres: %d rows, %d distinct, cost %d (replies %d); ledger stats %+v", rows, distinct, cost, l.costSum, stats)
	}
	if stats.Spooled == 0 {
		t.Fatalf("the outage never reached the spool: %+v", stats)
	}
}
