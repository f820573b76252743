package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

const testAdminToken = "admin-token-for-tests"

// keyFleetConfig is one replica of a fleet: managed keys and the ledger in
// PostgreSQL (dsn), limits in Redis under prefix. One model costs 1,000
// USD per million tokens, so a request costs about 40,000 µUSD.
func keyFleetConfig(t *testing.T, dsn, redisAddr, prefix string) string {
	dir := t.TempDir()
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", adminToken: %q, shutdownTimeout: 5s}
log: {level: error}
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
  keyStore: {syncInterval: 500ms}
personas:
  items:
    - {id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: m}
    - {id: psn_b, workspace: wsp_b, name: B, systemPrompt: S, defaultModel: m}
providers: [{name: mock, type: mock}]
models: [{id: m, provider: mock, inputPricePerMTok: 1000, outputPricePerMTok: 1000}]
ledger: {driver: postgres, dsn: %q, spoolPath: %s, flushInterval: 20ms}
limits:
  backend: redis
  redis: {addr: %q, keyPrefix: %q}
`, testAdminToken, hashOf(mocktest.KeyDemo), dsn, filepath.Join(dir, "spool.jsonl"), redisAddr, prefix)
}

// admin calls the admin listener with the admin token.
func (g *gw) admin(method, path, body string) testkit.Reply {
	g.t.Helper()
	req, err := http.NewRequest(method, "http://"+g.app.AdminAddr+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return g.Do(req)
}

// createdKey is the 201 body of a create or rotate.
type createdKey struct {
	ID        string          `json:"id"`
	Workspace string          `json:"workspace"`
	Name      string          `json:"name"`
	Prefix    string          `json:"prefix"`
	Key       string          `json:"key"`
	ExpiresAt *time.Time      `json:"expiresAt"`
	RevokedAt *time.Time      `json:"revokedAt"`
	RotatedTo string          `json:"rotatedTo"`
	Limits    json.RawMessage `json:"limits"`
}

func (g *gw) createKey(ws, body string) createdKey {
	g.t.Helper()
	r := g.admin("POST", "/admin/workspaces/"+ws+"/keys", body)
	if r.Status != http.StatusCreated {
		g.t.Fatalf("create key: %d %s", r.Status, r.Body)
	}
	var k createdKey
	if err := json.Unmarshal(r.Body, &k); err != nil || k.Key == "" || k.ID == "" {
		g.t.Fatalf("create key body %s: %v", r.Body, err)
	}
	return k
}

func (g *gw) status() map[string]any {
	g.t.Helper()
	r := g.admin("GET", "/admin/status", "")
	if r.Status != 200 {
		g.t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		g.t.Fatal(err)
	}
	return m
}

func (g *gw) keyRevision() float64 {
	ks, _ := g.status()["keyStore"].(map[string]any)
	rev, _ := ks["revision"].(float64)
	return rev
}

// chatStatus is a chat's status and error code.
func chatStatus(g *gw, key string) (int, string) {
	r := g.Chat(key, "psn_demo", `{"userText":"hi"}`)
	if r.Status == 200 {
		return 200, ""
	}
	var e testkit.APIError
	_ = json.Unmarshal(r.Body, &e)
	return r.Status, e.Error.Code
}

// within5s waits at most 5 seconds (the propagation bound) for cond.
func within5s(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// syncedWith waits until g has applied every key change ref has.
func syncedWith(t *testing.T, g, ref *gw) {
	t.Helper()
	want := ref.keyRevision()
	within5s(t, "replica key revision", func() bool { return g.keyRevision() >= want })
}

// TestKeyAPIAcrossReplicas drives the key API through two replicas sharing
// PostgreSQL (keys, ledger) and Redis (limits): a key created on one works
// there at once and on the other within 5 s; revocation, rotation with a
// grace period, expiry, per-key limits and a per-key monthly budget hold
// on both; config keys keep working beside managed ones.
func TestKeyAPIAcrossReplicas(t *testing.T) {
	dsn, _ := testPostgres(t)
	redisAddr := testRedisAddr(t)
	prefix := "moonborn-test:" + randomSuffix() + ":"
	var logs testkit.SyncBuffer
	a := startGatewayLogs(t, keyFleetConfig(t, dsn, redisAddr, prefix), &logs)
	b := startGatewayLogs(t, keyFleetConfig(t, dsn, redisAddr, prefix), &logs)

	// Create on A: the secret is shown once, with an id and a prefix.
	k1 := a.createKey("wsp_demo", `{"name":"ci runner"}`)
	if !strings.HasPrefix(k1.Key, "mb_live_") || !strings.HasPrefix(k1.Key, k1.Prefix) || len(k1.Prefix) >= len(k1.Key) ||
		k1.Workspace != "wsp_demo" || k1.Name != "ci runner" || !strings.HasPrefix(k1.ID, "key_") {
		t.Fatalf("created key %+v", k1)
	}
	if st, code := chatStatus(a, k1.Key); st != 200 {
		t.Fatalf("new key on the replica that made it: %d %s", st, code)
	}
	took := within5s(t, "new key on replica B", func() bool { st, _ := chatStatus(b, k1.Key); return st == 200 })
	t.Logf("created key accepted by the other replica after %v", took)
	if st, _ := chatStatus(a, mocktest.KeyDemo); st != 200 {
		t.Fatalf("config key beside managed keys: %d", st)
	}

	// Listing (on B) shows the key, never a secret.
	r := b.admin("GET", "/admin/workspaces/wsp_demo/keys", "")
	if r.Status != 200 || !bytes.Contains(r.Body, []byte(k1.ID)) || bytes.Contains(r.Body, []byte(k1.Key)) ||
		bytes.Contains(r.Body, []byte(`"key"`)) || bytes.Contains(r.Body, []byte(`"sha256"`)) {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if r := b.admin("GET", "/admin/workspaces/wsp_other/keys", ""); r.Status != 200 || bytes.Contains(r.Body, []byte(k1.ID)) {
		t.Fatalf("other workspace's list: %d %s", r.Status, r.Body)
	}

	// Per-key limit across both replicas: a burst of 4 requests, refilling
	// one a minute, is 4 in total, not 4 per replica.
	k2 := a.createKey("wsp_demo", `{"limits":{"requestsPerMinute":1,"requestBurst":4}}`)
	syncedWith(t, b, a)
	for i, g := range []*gw{a, b, a, b} {
		if st, code := chatStatus(g, k2.Key); st != 200 {
			t.Fatalf("limited key request %d: %d %s", i, st, code)
		}
	}
	for _, g := range []*gw{a, b} {
		if st, code := chatStatus(g, k2.Key); st != 429 || code != "rate_limited" {
			t.Fatalf("over the key's burst: %d %s", st, code)
		}
	}
	if st, _ := chatStatus(b, k1.Key); st != 200 {
		t.Fatalf("another key of the workspace was limited: %d", st)
	}
	// Raising the limit through B applies on A within 5 s.
	if r := b.admin("PATCH", "/admin/keys/"+k2.ID, `{"limits":{"requestsPerMinute":6000,"requestBurst":100}}`); r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	within5s(t, "raised limit on A", func() bool { st, _ := chatStatus(a, k2.Key); return st == 200 })

	// Per-key monthly budget: about one request's worth (40,000 µUSD),
	// spent through A, refused on B.
	k3 := a.createKey("wsp_demo", `{"limits":{"monthlyBudgetUsdMicros":30000}}`)
	syncedWith(t, b, a)
	if st, code := chatStatus(a, k3.Key); st != 200 {
		t.Fatalf("budgeted key: %d %s", st, code)
	}
	within5s(t, "key budget spent, seen by B", func() bool { st, code := chatStatus(b, k3.Key); return st == 429 && code == "quota_exceeded" })
	if st, _ := chatStatus(b, k1.Key); st != 200 {
		t.Fatalf("the workspace's other keys stay usable: %d", st)
	}

	// Rotation through B with a 3 s grace: the new key works at once on
	// B and within 5 s on A; the old one keeps working during the grace,
	// then is refused everywhere.
	r = b.admin("POST", "/admin/keys/"+k1.ID+"/rotate", `{"gracePeriod":"3s"}`)
	if r.Status != 201 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	var k1b createdKey
	if err := json.Unmarshal(r.Body, &k1b); err != nil || k1b.Key == "" || k1b.Key == k1.Key || k1b.ID == k1.ID {
		t.Fatalf("rotated key %s: %v", r.Body, err)
	}
	rotatedAt := time.Now()
	if st, _ := chatStatus(b, k1b.Key); st != 200 {
		t.Fatalf("rotated key on B: %d", st)
	}
	within5s(t, "rotated key on A", func() bool { st, _ := chatStatus(a, k1b.Key); return st == 200 })
	if time.Since(rotatedAt) < 2*time.Second {
		for _, g := range []*gw{a, b} {
			if st, code := chatStatus(g, k1.Key); st != 200 {
				t.Fatalf("old key within its grace period: %d %s", st, code)
			}
		}
	}
	var old createdKey
	if r := a.admin("GET", "/admin/keys/"+k1.ID, ""); r.Status != 200 || json.Unmarshal(r.Body, &old) != nil ||
		old.RotatedTo != k1b.ID || old.ExpiresAt == nil {
		t.Fatalf("old key after rotation: %d %s", r.Status, r.Body)
	}
	testkit.Eventually(t, 10*time.Second, "old key refused after its grace", func() bool {
		sa, ca := chatStatus(a, k1.Key)
		sb, _ := chatStatus(b, k1.Key)
		return sa == 401 && sb == 401 && ca == "unauthenticated"
	})

	// Revocation through A: 401 on A at once, on B within 5 s.
	if r := a.admin("DELETE", "/admin/keys/"+k1b.ID, ""); r.Status != 200 || !bytes.Contains(r.Body, []byte(`"revokedAt":"`)) {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if st, _ := chatStatus(a, k1b.Key); st != 401 {
		t.Fatalf("revoked key on A: %d", st)
	}
	took = within5s(t, "revoked key refused on B", func() bool { st, _ := chatStatus(b, k1b.Key); return st == 401 })
	t.Logf("revocation reached the other replica after %v", took)
	if r := b.Chat(k1b.Key, "psn_demo", `{"userText":"hi"}`); !bytes.Contains(r.Body, []byte("revoked")) {
		t.Fatalf("revoked key's message: %s", r.Body)
	}

	// Expiry: a key that lives 2 s.
	k4 := a.createKey("wsp_demo", `{"expiresIn":"2s"}`)
	if st, _ := chatStatus(a, k4.Key); st != 200 {
		t.Fatalf("key before its expiry: %d", st)
	}
	testkit.Eventually(t, 8*time.Second, "expired key refused on both", func() bool {
		sa, _ := chatStatus(a, k4.Key)
		sb, _ := chatStatus(b, k4.Key)
		return sa == 401 && sb == 401
	})
	if r := a.Chat(k4.Key, "psn_demo", `{"userText":"hi"}`); !bytes.Contains(r.Body, []byte("expired")) {
		t.Fatalf("expired key's message: %s", r.Body)
	}

	// A key is bound to its workspace.
	k5 := a.createKey("wsp_b", `{}`)
	if st, code := chatStatus(a, k5.Key); st != 404 || code != "persona_not_found" {
		t.Fatalf("key of wsp_b on a wsp_demo persona: %d %s", st, code)
	}

	// Bad requests get the error shape.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/admin/workspaces/wsp_demo/keys", `{"nmae":"typo"}`, 422},
		{"POST", "/admin/workspaces/wsp_demo/keys", `{"limits":{"requestBurst":5}}`, 422},
		{"POST", "/admin/workspaces/wsp_demo/keys", `{"expiresIn":"-1h"}`, 422},
		{"POST", "/admin/workspaces/wsp_demo/keys", `{"expiresAt":"2001-01-01T00:00:00Z"}`, 422},
		{"POST", "/admin/workspaces/wsp_demo/keys", `not json`, 422},
		{"GET", "/admin/keys/key_doesnotexist", ``, 404},
		{"POST", "/admin/keys/key_doesnotexist/rotate", `{}`, 404},
		{"POST", "/admin/keys/" + k1b.ID + "/rotate", `{}`, 422}, // revoked
		{"POST", "/admin/keys/" + k2.ID + "/rotate", `{"gracePeriod":"soon"}`, 422},
		{"PUT", "/admin/keys/" + k2.ID, `{}`, 405},
	} {
		r := a.admin(c.method, c.path, c.body)
		if r.Status != c.status {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.Status, r.Body, c.status)
			continue
		}
		testkit.DecodeErr(t, r)
	}
	req, _ := http.NewRequest("POST", "http://"+a.app.AdminAddr+"/admin/workspaces/wsp_demo/keys", strings.NewReader(`{}`))
	if r := a.Do(req); r.Status != 401 {
		t.Fatalf("create without the admin token: %d", r.Status)
	}

	a.stop()
	b.stop()
	for _, k := range []createdKey{k1, k1b, k2, k3, k4, k5} {
		if strings.Contains(logs.String(), k.Key) {
			t.Fatalf("a key's secret appears in the logs")
		}
	}
}

// TestKeyStoreSQLitePersists: on one node with SQLite, a created key
// survives a restart and revocation does too.
func TestKeyStoreSQLitePersists(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", adminToken: %q}
log: {level: error}
auth:
  apiKeys: [{id: key_demo, workspace: wsp_demo, sha256: %s}]
personas:
  items: [{id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: m}]
providers: [{name: mock, type: mock}]
models: [{id: m, provider: mock}]
ledger: {driver: sqlite, path: %s, spoolPath: %s}
`, testAdminToken, hashOf(mocktest.KeyDemo), filepath.Join(dir, "usage.db"), filepath.Join(dir, "spool.jsonl"))
	g := startGateway(t, cfg)
	k := g.createKey("wsp_demo", `{"name":"one"}`)
	gone := g.createKey("wsp_demo", `{"name":"two"}`)
	if r := g.admin("POST", "/admin/keys/"+gone.ID+"/revoke", ""); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	g.stop()

	g2 := startGateway(t, cfg)
	if st, code := chatStatus(g2, k.Key); st != 200 {
		t.Fatalf("key after restart: %d %s", st, code)
	}
	if st, _ := chatStatus(g2, gone.Key); st != 401 {
		t.Fatalf("revoked key after restart: %d", st)
	}
	var list struct {
		Keys []createdKey `json:"keys"`
	}
	r := g2.admin("GET", "/admin/workspaces/wsp_demo/keys", "")
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Keys) != 2 {
		t.Fatalf("list after restart: %s", r.Body)
	}

	// The one-URL form: POST /admin/keys with the workspace in the body.
	r = g2.admin("POST", "/admin/keys", `{"workspace":"wsp_demo","name":"three"}`)
	var k3 createdKey
	if r.Status != 201 || json.Unmarshal(r.Body, &k3) != nil || k3.Workspace != "wsp_demo" {
		t.Fatalf("POST /admin/keys: %d %s", r.Status, r.Body)
	}
	if st, _ := chatStatus(g2, k3.Key); st != 200 {
		t.Fatalf("key made through /admin/keys: %d", st)
	}
	r = g2.admin("GET", "/admin/keys?workspace=wsp_demo", "")
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Keys) != 3 {
		t.Fatalf("GET /admin/keys?workspace=: %s", r.Body)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/admin/keys", `{"name":"no workspace"}`},
		{"GET", "/admin/keys", ``},
		{"POST", "/admin/workspaces/wsp_demo/keys", `{"workspace":"wsp_other"}`},
	} {
		if r := g2.admin(c.method, c.path, c.body); r.Status != 422 {
			t.Fatalf("%s %s %s: %d %s", c.method, c.path, c.body, r.Status, r.Body)
		}
	}
}

// startGatewayLogs is startGateway with the logs (debug level) in w.
func startGatewayLogs(t *testing.T, cfgText string, w io.Writer) *gw {
	t.Helper()
	cfg, err := ParseConfig([]byte(cfgText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := newApp(cfg, newLogger(newRedactor(w, cfg.secrets()), "debug"))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	return serveApp(t, a, cfg)
}

// serveApp serves a built app until the test ends.
func serveApp(t *testing.T, a *app, cfg *Config) *gw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, func(*app) { close(readyc) }) }()
	select {
	case <-readyc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	g := &gw{Client: testkit.Client{T: t, Base: "http://" + a.PublicAddr}, t: t, app: a, ledger: cfg.Ledger.Path}
	g.stop = func() {
		g.once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve returned %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// TestKeyStoreOutageAndConcurrentWrites: keys created concurrently on two
// replicas all reach both, with one shared revision; while a replica's
// database connection is cut it keeps authenticating the keys it has (no
// per-request database call), its key API answers 503, and once the
// database is back it catches up with the keys made elsewhere.
func TestKeyStoreOutageAndConcurrentWrites(t *testing.T) {
	dsn, _ := testPostgres(t)
	redisAddr := testRedisAddr(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testkit.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	prefix := "moonborn-test:" + randomSuffix() + ":"
	a := startGateway(t, strings.Replace(keyFleetConfig(t, u.String(), redisAddr, prefix), "flushInterval: 20ms", "flushInterval: 20ms, writeTimeout: 1s", 1))
	b := startGateway(t, keyFleetConfig(t, dsn, redisAddr, prefix))

	const each = 15
	keys := make(chan createdKey, 2*each)
	var wg sync.WaitGroup
	for _, g := range []*gw{a, b} {
		for range each {
			wg.Add(1)
			go func() { defer wg.Done(); keys <- g.createKey("wsp_demo", `{}`) }()
		}
	}
	wg.Wait()
	close(keys)
	var all []createdKey
	for k := range keys {
		all = append(all, k)
	}
	syncedWith(t, a, b)
	syncedWith(t, b, a)
	if ra, rb := a.keyRevision(), b.keyRevision(); ra != rb || ra < 2*each {
		t.Fatalf("revisions %v and %v after %d creates", ra, rb, 2*each)
	}
	for _, k := range all {
		for _, g := range []*gw{a, b} {
			if st, code := chatStatus(g, k.Key); st != 200 {
				t.Fatalf("key %s: %d %s", k.ID, st, code)
			}
		}
	}

	proxy.Cut()
	if st, code := chatStatus(a, all[0].Key); st != 200 {
		t.Fatalf("known key while the database is cut: %d %s", st, code)
	}
	if r := a.admin("POST", "/admin/workspaces/wsp_demo/keys", `{}`); r.Status != 503 {
		t.Fatalf("create while the database is cut: %d %s", r.Status, r.Body)
	} else if e := testkit.DecodeErr(t, r); e.Error.Code != "upstream_unavailable" {
		t.Fatalf("code %s", e.Error.Code)
	}
	made := b.createKey("wsp_demo", `{}`)
	if r := b.admin("DELETE", "/admin/keys/"+all[0].ID, ""); r.Status != 200 {
		t.Fatalf("revoke on b: %d", r.Status)
	}
	proxy.Restore()
	within5s(t, "replica a catches up after the outage", func() bool {
		s1, _ := chatStatus(a, made.Key)
		s2, _ := chatStatus(a, all[0].Key)
		return s1 == 200 && s2 == 401
	})
}
