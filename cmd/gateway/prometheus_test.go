package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// dashboardPath is the Grafana dashboard the operators import.
const dashboardPath = "../../deploy/grafana/moonborn-gateway.json"

// dashboardVars are what Grafana would put in for the dashboard's template
// variables when everything is selected: ".*" for the multi-value "All"
// selections (their allValue), a minute for the rate window (four scrapes
// at the 15s the deployed Prometheus uses; sixty here).
var dashboardVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "5m",
	"instance":        ".*",
	"model":           ".*",
}

// TestDashboardAgainstPrometheus runs the real gateway and a real
// Prometheus scraping its admin listener every second while traffic of
// every kind the dashboard shows flows (successes, 4xx, upstream failures
// with failover, an open breaker, hedges won and lost, streams, rate and
// quota refusals, persona cache misses, origin errors and stale copies),
// then evaluates every PromQL expression of the dashboard through
// Prometheus's HTTP API: each must be valid and return at least one series.
// The /metrics scrape must also pass `promtool check metrics`.
func TestDashboardAgainstPrometheus(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	promtool := requireTool(t, "promtool")
	dash := loadDashboard(t)

	g, hedged := startObservedGateway(t)
	admin := "http://" + g.app.AdminAddr
	prom := startPrometheus(t, promBin, g.app.AdminAddr)

	// Traffic rounds run while Prometheus scrapes; every round produces
	// every kind of series, so each exists across several scrapes.
	tr := &promTraffic{g: g, hedged: hedged}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tr.round()
		}
	}()
	start := time.Now()
	for tr.rounds.Load() < 3 || time.Since(start) < 4*time.Second {
		if time.Since(start) > 60*time.Second {
			close(stop)
			wg.Wait()
			t.Fatalf("traffic too slow: %d rounds in 60s", tr.rounds.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if msg := tr.failures(); msg != "" {
		t.Fatalf("traffic did not go as planned: %s", msg)
	}
	// Two more scrapes after the last request, so the newest series have
	// the two samples rate() needs.
	scrapes := prom.scrapeCount(t)
	deadline := time.Now().Add(15 * time.Second)
	for prom.scrapeCount(t) < scrapes+2 {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus stopped scraping %s (%d scrapes)\n%s", admin, scrapes, prom.output())
		}
		time.Sleep(100 * time.Millisecond)
	}

	body := scrapeMetrics(t, admin)
	t.Run("promtool check metrics", func(t *testing.T) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		} else if len(bytes.TrimSpace(out)) > 0 {
			t.Logf("promtool check metrics (warnings only):\n%s", out)
		}
	})

	families := metricFamilies(body)
	t.Run("every metric referenced is exposed", func(t *testing.T) {
		var missing []string
		for _, name := range dash.metricNames() {
			if !families[baseFamily(name, families)] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			t.Errorf("the dashboard queries metrics /metrics does not expose: %s", strings.Join(missing, ", "))
		}
	})
	t.Run("every exposed moonborn metric is on the dashboard", func(t *testing.T) {
		used := map[string]bool{}
		for _, name := range dash.metricNames() {
			used[baseFamily(name, families)] = true
		}
		var unused []string
		for f := range families {
			if strings.HasPrefix(f, "moonborn_") && !used[f] {
				unused = append(unused, f)
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			t.Errorf("exposed but on no panel: %s", strings.Join(unused, ", "))
		}
	})
	t.Run("label values are from the documented sets", func(t *testing.T) {
		for _, bad := range checkLabelValues(body) {
			t.Error(bad)
		}
	})
	t.Run("every expression returns series", func(t *testing.T) {
		defer func() {
			if t.Failed() {
				t.Logf("moonborn samples on /metrics (buckets left out):\n%s", moonbornSamples(body))
			}
		}()
		for _, e := range dash.exprs {
			q, err := substituteVars(e.expr)
			if err != nil {
				t.Errorf("panel %q target %s: %v", e.panel, e.refID, err)
				continue
			}
			n, err := prom.query(q)
			switch {
			case err != nil:
				t.Errorf("panel %q target %s: %v\n  query: %s", e.panel, e.refID, err, q)
			case n == 0:
				t.Errorf("panel %q target %s returns no series\n  query: %s", e.panel, e.refID, q)
			}
		}
	})
}

// TestDashboardShape checks what Grafana needs to import the dashboard the
// first time: a recent schema, a datasource variable every panel and
// target uses (no __inputs to fill in), and PromQL in every target.
func TestDashboardShape(t *testing.T) {
	dash := loadDashboard(t)
	if dash.raw.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want ≥ 36", dash.raw.SchemaVersion)
	}
	if dash.raw.UID == "" || dash.raw.Title == "" {
		t.Errorf("uid %q title %q: both are needed for provisioning", dash.raw.UID, dash.raw.Title)
	}
	if len(dash.raw.Inputs) > 0 {
		t.Errorf("__inputs %v: provisioning cannot fill them; use the datasource variable", dash.raw.Inputs)
	}
	vars := map[string]string{}
	for _, v := range dash.raw.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && v.Query != "prometheus" {
			t.Errorf("datasource variable %q selects %q, want prometheus", v.Name, v.Query)
		}
	}
	if vars["datasource"] != "datasource" {
		t.Fatalf("no variable \"datasource\" of type datasource: %v", vars)
	}
	for name := range vars {
		if _, ok := dashboardVars[name]; !ok && name != "datasource" {
			t.Errorf("variable %q has no substitute in dashboardVars, so its queries are not checked", name)
		}
	}
	rows := map[string]bool{}
	for _, p := range dash.raw.Panels {
		if p.Type == "row" {
			rows[strings.ToLower(p.Title)] = true
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q datasource uid %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s: datasource %q expr %q", p.Title, tg.RefID, tg.Datasource.UID, tg.Expr)
			}
		}
	}
	for _, want := range []string{"traffic", "latency", "streaming", "upstreams", "limits", "cost", "cache", "ledger"} {
		found := false
		for r := range rows {
			if strings.Contains(r, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no row about %s among %v", want, rows)
		}
	}
	if len(dash.exprs) < 30 {
		t.Errorf("only %d expressions", len(dash.exprs))
	}
}

func TestSubstituteVars(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            bool
	}{
		{"rate interval", `rate(x[$__rate_interval])`, `rate(x[1m])`, false},
		{"braced", `x{model=~"${model}"}`, `x{model=~".*"}`, false},
		{"plain and prefix", `x{instance=~"$instance"}[$__range]`, `x{instance=~".*"}[5m]`, false},
		{"unknown", `x{a="$nope"}`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := substituteVars(tc.in)
			if (err != nil) != tc.err || got != tc.want && !tc.err {
				t.Fatalf("substituteVars(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

// requireTool finds an installed binary or fails: the observability tests
// are part of done, so a missing tool is a broken environment.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	return testkit.Tool(t, name, "Debian package prometheus: apt-get install -y prometheus; .ci/run installs it")
}

// dashboard is the part of the Grafana JSON the tests read.
type dashboard struct {
	raw struct {
		UID           string            `json:"uid"`
		Title         string            `json:"title"`
		SchemaVersion int               `json:"schemaVersion"`
		Inputs        []json.RawMessage `json:"__inputs"`
		Templating    struct {
			List []struct {
				Name string `json:"name"`
				Type string `json:"type"`
				// Query is a string for datasource variables, an object
				// for query variables.
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashPanel `json:"panels"`
	}
	exprs []dashExpr
}

type dashPanel struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource dsRef       `json:"datasource"`
	Targets    []dashTgt   `json:"targets"`
	Panels     []dashPanel `json:"panels"` // collapsed rows hold theirs
}

type dsRef struct {
	UID string `json:"uid"`
}

type dashTgt struct {
	RefID      string `json:"refId"`
	Expr       string `json:"expr"`
	Datasource dsRef  `json:"datasource"`
}

type dashExpr struct{ panel, refID, expr string }

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &dashboard{}
	if err := json.Unmarshal(b, &d.raw); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				d.exprs = append(d.exprs, dashExpr{p.Title, tg.RefID, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.raw.Panels)
	return d
}

var metricRef = regexp.MustCompile(`\bmoonborn_[a-z0-9_]+`)

// metricNames are the moonborn_ names the expressions use, sorted.
func (d *dashboard) metricNames() []string {
	seen := map[string]bool{}
	for _, e := range d.exprs {
		for _, m := range metricRef.FindAllString(e.expr, -1) {
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)`)

// substituteVars puts dashboardVars in for Grafana's variables and fails on
// any variable it does not know.
func substituteVars(expr string) (string, error) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if v, ok := dashboardVars[name]; ok {
			return v
		}
		unknown = append(unknown, ref)
		return ref
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

// metricFamilies are the family names declared by # TYPE lines.
func metricFamilies(body []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out
}

// documentedLabels are the values the dashboard's legends and the README
// promise, by metric family and label ("*": every family).
var documentedLabels = map[string]map[string][]string{
	"*": {
		"status_class": {"1xx", "2xx", "3xx", "4xx", "5xx"},
		"stream":       {"true", "false"},
		"direction":    {"input", "output"},
	},
	"moonborn_upstream_attempts_total":      {"outcome": {"success", "failure", "excluded"}},
	"moonborn_upstream_hedges_total":        {"result": {"started", "won", "lost"}},
	"moonborn_persona_cache_requests_total": {"result": {"hit", "miss", "negative_hit"}},
	"moonborn_limit_rejections_total":       {"reason": {"requests", "tokens", "quota_cost", "quota_tokens", "limiter_unavailable"}},
	"moonborn_unreadable_requests_total":    {"reason": {"headers_too_large", "body_too_large", "timeout", "malformed_headers", "malformed_body", "malformed"}},
	"moonborn_config_reloads_total":         {"result": {"ok", "error"}},
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// checkLabelValues reports samples whose labels leave the documented sets,
// and breaker states other than 0, 1, 2.
func checkLabelValues(body []byte) []string {
	var bad []string
	families := metricFamilies(body)
	for _, line := range strings.Split(string(body), "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[1], "moonborn_") {
			continue
		}
		fam := baseFamily(m[1], families)
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			name, value := lp[1], lp[2]
			allowed, ok := documentedLabels[fam][name]
			if !ok {
				allowed, ok = documentedLabels["*"][name]
			}
			if ok && !slices.Contains(allowed, value) {
				bad = append(bad, fmt.Sprintf("%s: label %s=%q, want one of %v", fam, name, value, allowed))
			}
		}
		if fam == "moonborn_upstream_breaker_state" && m[3] != "0" && m[3] != "1" && m[3] != "2" {
			bad = append(bad, fmt.Sprintf("%s = %s, want 0 (closed), 1 (half-open) or 2 (open)", line, m[3]))
		}
	}
	sort.Strings(bad)
	return slices.Compact(bad)
}

// moonbornSamples are the scrape's moonborn_ sample lines, histogram
// buckets left out, for failure messages.
func moonbornSamples(body []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "moonborn_") && !strings.Contains(line, "_bucket{") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// baseFamily maps a sample name (x_bucket, x_sum, x_count) to its family.
func baseFamily(name string, families map[string]bool) string {
	if families[name] {
		return name
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok && families[b] {
			return b
		}
	}
	return name
}

func scrapeMetrics(t *testing.T, admin string) []byte {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v\n%.500s", resp.StatusCode, err, b)
	}
	return b
}

// startObservedGateway runs a gateway whose config exercises every metric:
// an HTTP persona origin (misses, origin errors, stale copies), a model
// failing over from a broken primary, a model whose only upstream is dead
// (failures, an open breaker), a hedged model, Redis-backed limits with a
// request limit and a spend quota, and a SQLite ledger.
func startObservedGateway(t *testing.T) (*gw, *hedgePair) {
	t.Helper()
	redisAddr := testRedisAddr(t)
	origin := startPersonaOrigin(t)
	bad := mocktest.Start(t, mock.ServerConfig{FailStatus: 500})
	good := mocktest.Start(t, mock.ServerConfig{OutputTokens: 7})
	slow := mocktest.Start(t, mock.ServerConfig{TimeToFirstToken: 400 * time.Millisecond, OutputTokens: 5})
	fast := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	deadAddr := testkit.DeadAddr(t) // nothing listens there: connection refused
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  adminListen: 127.0.0.1:0
  maxBodyBytes: 4096
  shutdownTimeout: 5s
log: {level: error}
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %[1]s}
    - {id: key_other, workspace: wsp_other, sha256: %[2]s}
    - {id: key_quota, workspace: wsp_quota, sha256: %[3]s}
personas:
  source: http
  cacheTTL: 150ms
  negativeTTL: 1s
  staleTTL: 10m
  http: {baseURL: %[4]q, timeout: 1s}
providers:
  - {name: mock, type: mock, mock: {outputTokens: 20}}
  - {name: bad, type: openai, openai: {baseURL: "http://%[5]s/v1", apiKey: k, timeout: 2s, firstTokenTimeout: 1s}}
  - {name: good, type: anthropic, anthropic: {baseURL: "http://%[6]s", apiKey: k, timeout: 2s}}
  - {name: slow, type: openai, openai: {baseURL: "http://%[7]s/v1", apiKey: k, timeout: 5s, firstTokenTimeout: 3s}}
  - {name: fast, type: openai, openai: {baseURL: "http://%[8]s/v1", apiKey: k, timeout: 5s, firstTokenTimeout: 3s}}
  - {name: dead, type: openai, openai: {baseURL: "http://%[9]s/v1", apiKey: k, connectTimeout: 1s}}
models:
  - {id: mock-1, provider: mock, inputPricePerMTok: 0.15, outputPricePerMTok: 0.60}
  - id: ha-1
    inputPricePerMTok: 1
    outputPricePerMTok: 2
    deployments:
      - {provider: bad, upstreamModel: gpt-bad, priority: 0}
      - {provider: good, upstreamModel: claude-good, priority: 1}
    pool: {strategy: priority, maxAttempts: 2, breaker: {consecutiveFailures: 3, openFor: 500ms}}
  - id: hedge-1
    deployments:
      - {provider: slow, upstreamModel: gpt-slow, priority: 0}
      - {provider: fast, upstreamModel: gpt-fast, priority: 1}
    pool: {strategy: priority, maxAttempts: 2, hedge: {enabled: true, delay: 50ms}}
  - id: down-1
    provider: dead
    pool: {maxAttempts: 1, breaker: {consecutiveFailures: 2, openFor: 300ms}}
ledger:
  driver: sqlite
  path: %[10]s
  spoolPath: %[11]s
  flushInterval: 20ms
limits:
  backend: redis
  redis: {addr: %[12]q, keyPrefix: "moonborn-test:%[13]s:"}
  workspaces:
    - {id: wsp_demo, requestsPerMinute: 100000}
    - {id: wsp_other, requestsPerMinute: 1, requestBurst: 1}
    - {id: wsp_quota, monthlyBudgetUsdMicros: 1}
retryBudget: {ratio: 10, minPerSecond: 1000}
`, hashOf(mocktest.KeyDemo), hashOf(mocktest.KeyOther), hashOf(keyQuota), origin.URL, bad.Addr, good.Addr, slow.Addr, fast.Addr, deadAddr,
		filepath.Join(dir, "usage.db"), filepath.Join(dir, "spool.jsonl"), redisAddr, randomSuffix())
	return startGateway(t, cfg), &hedgePair{slow: slow, fast: fast}
}

// keyQuota belongs to wsp_quota, whose monthly budget is one micro-USD.
const keyQuota = "mb_test_quota"

// hedgePair are the hedged model's upstreams, retuned between rounds so
// hedges are both won and lost.
type hedgePair struct{ slow, fast *mocktest.Upstream }

// startPersonaOrigin serves personas by id: psn_demo, psn_other and
// psn_quota always; psn_stale once, then 500 (so its cached copy is
// served stale); psn_broken always 500; anything else 404.
func startPersonaOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	var staleServed atomic.Bool
	personas := map[string]string{"psn_demo": "wsp_demo", "psn_other": "wsp_other", "psn_quota": "wsp_quota", "psn_stale": "wsp_demo"}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/personas/")
		if id == "psn_broken" || id == "psn_stale" && staleServed.Swap(true) {
			http.Error(w, "origin down", http.StatusInternalServerError)
			return
		}
		ws, ok := personas[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "workspace": ws, "name": id,
			"systemPrompt": "You are terse.", "defaultModel": "mock-1", "maxOutputTokens": 32})
	}))
	t.Cleanup(origin.Close)
	return origin
}

// promTraffic produces every kind of request the dashboard shows.
type promTraffic struct {
	g      *gw
	hedged *hedgePair
	rounds atomic.Int64
	mu     sync.Mutex
	seen   map[string]int // "status code" → count
}

func (tr *promTraffic) note(status int, body []byte) {
	var e testkit.APIError
	_ = json.Unmarshal(body, &e)
	tr.mu.Lock()
	if tr.seen == nil {
		tr.seen = map[string]int{}
	}
	tr.seen[strconv.Itoa(status)+" "+e.Error.Code]++
	tr.mu.Unlock()
}

// send posts one chat (reading a stream to its end) and notes the result.
func (tr *promTraffic) send(token, persona, body string) {
	req, _ := http.NewRequest(http.MethodPost, tr.g.Base+"/v1/personas/"+persona+"/chat", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.note(0, nil)
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.note(resp.StatusCode, b)
}

func (tr *promTraffic) round() {
	hp := tr.hedged
	chat := func(model string, stream bool) string {
		return fmt.Sprintf(`{"userText":"hello","modelId":%q,"stream":%t}`, model, stream)
	}
	for i := 0; i < 3; i++ {
		tr.send(mocktest.KeyDemo, "psn_demo", chat("mock-1", false))
		tr.send(mocktest.KeyDemo, "psn_demo", chat("mock-1", true))
	}
	// Failover from the broken primary; its breaker opens and half-opens.
	tr.send(mocktest.KeyDemo, "psn_demo", chat("ha-1", false))
	tr.send(mocktest.KeyDemo, "psn_demo", chat("ha-1", true))
	// A dead upstream: 502, then 503 from the open breaker.
	tr.send(mocktest.KeyDemo, "psn_demo", chat("down-1", false))
	// Hedges: won while the primary is slow to its first token...
	hp.slow.Srv.SetConfig(mock.ServerConfig{TimeToFirstToken: 400 * time.Millisecond, OutputTokens: 5})
	hp.fast.Srv.SetConfig(mock.ServerConfig{OutputTokens: 5})
	tr.send(mocktest.KeyDemo, "psn_demo", chat("hedge-1", true))
	// ...and lost when the hedge is slower still.
	hp.slow.Srv.SetConfig(mock.ServerConfig{TimeToFirstToken: 150 * time.Millisecond, OutputTokens: 5})
	hp.fast.Srv.SetConfig(mock.ServerConfig{TimeToFirstToken: 1500 * time.Millisecond, OutputTokens: 5})
	tr.send(mocktest.KeyDemo, "psn_demo", chat("hedge-1", true))
	// Refusals: bad key, unknown persona, invalid body, unknown route.
	tr.send("mb_wrong_key", "psn_demo", chat("mock-1", false))
	tr.send(mocktest.KeyDemo, "psn_nobody", chat("mock-1", false))
	tr.send(mocktest.KeyDemo, "psn_demo", `{"userText":""}`)
	if resp, err := http.Get(tr.g.Base + "/v2/nothing/here"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.note(resp.StatusCode, b)
	}
	// A request the server cannot parse: answered 422, counted as unreadable.
	if c, err := net.Dial("tcp", strings.TrimPrefix(tr.g.Base, "http://")); err == nil {
		_, _ = io.WriteString(c, "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.note(resp.StatusCode, b)
		}
		c.Close()
	}
	// Rate limit (one request a minute) and spend quota (one micro-USD).
	tr.send(mocktest.KeyOther, "psn_other", chat("mock-1", false))
	tr.send(mocktest.KeyOther, "psn_other", chat("mock-1", false))
	tr.send(keyQuota, "psn_quota", chat("mock-1", false))
	tr.send(keyQuota, "psn_quota", chat("mock-1", false))
	// Persona origin: a copy served stale once fresh has passed, and an
	// origin failing with no copy at all.
	tr.send(mocktest.KeyDemo, "psn_stale", chat("mock-1", false))
	tr.send(mocktest.KeyDemo, "psn_broken", chat("mock-1", false))
	time.Sleep(200 * time.Millisecond) // past cacheTTL: the next round refetches
	tr.rounds.Add(1)
}

// failures says which planned outcomes never happened, or "".
func (tr *promTraffic) failures() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var missing []string
	for _, want := range []string{"200 ", "401 unauthenticated", "404 persona_not_found", "429 rate_limited", "429 quota_exceeded"} {
		if tr.seen[want] == 0 {
			missing = append(missing, want)
		}
	}
	fivexx := 0
	for k, n := range tr.seen {
		if strings.HasPrefix(k, "5") {
			fivexx += n
		}
	}
	if fivexx == 0 {
		missing = append(missing, "5xx")
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("never saw %v; saw %v", missing, tr.seen)
}

// promServer is a Prometheus process scraping the gateway.
type promServer struct {
	base string
	proc *testkit.Process
}

func (p *promServer) output() string { return p.proc.Out.Tail(4000) }

// startPrometheus runs bin with a temporary config and TSDB, scraping
// target's /metrics every second, and waits until it is ready.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: moonborn
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testkit.FreeAddr(t)
	p := &promServer{base: "http://" + addr}
	p.proc = testkit.StartProcess(t, "prometheus", 10*time.Second, exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.proc.Exited() {
			t.Fatalf("prometheus exited at start:\n%s", p.output())
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", p.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promResult is the /api/v1/query answer.
type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

// query evaluates expr now and returns the number of series (or, for a
// scalar, 1).
func (p *promServer) query(expr string) (int, error) {
	resp, err := http.PostForm(p.base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r promResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("HTTP %d: undecodable answer: %v", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	if r.Data.ResultType == "scalar" {
		return 1, nil
	}
	return len(r.Data.Result), nil
}

// scrapeCount is how many scrapes of the gateway Prometheus has stored in
// the last minute.
func (p *promServer) scrapeCount(t *testing.T) int {
	t.Helper()
	resp, err := http.PostForm(p.base+"/api/v1/query", url.Values{"query": {`count_over_time(up{job="moonborn"}[1m])`}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Data.Result) == 0 {
		return 0
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	n, _ := strconv.Atoi(s)
	return n
}

func TestCheckLabelValues(t *testing.T) {
	head := "# TYPE moonborn_limit_rejections_total counter\n# TYPE moonborn_upstream_breaker_state gauge\n# TYPE moonborn_request_duration_seconds histogram\n"
	for _, tc := range []struct {
		name, body string
		bad        int
	}{
		{"documented", `moonborn_limit_rejections_total{reason="quota_cost"} 3
moonborn_upstream_breaker_state{model="m",deployment="d"} 2
moonborn_request_duration_seconds_bucket{route="other",stream="true",le="0.1"} 1
`, 0},
		{"free-text reason", `moonborn_limit_rejections_total{reason="monthly budget"} 3` + "\n", 1},
		{"histogram label", `moonborn_request_duration_seconds_count{route="other",stream="yes"} 1` + "\n", 1},
		{"breaker value", `moonborn_upstream_breaker_state{model="m",deployment="d"} 3` + "\n", 1},
		{"escaped quote", `moonborn_limit_rejections_total{reason="a\"b"} 1` + "\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkLabelValues([]byte(head + tc.body)); len(got) != tc.bad {
				t.Fatalf("checkLabelValues = %q, want %d problems", got, tc.bad)
			}
		})
	}
}
