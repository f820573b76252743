package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moonborn/edge/internal/testkit"
)

// TestJWKSThroughConfig: auth.jwt.jwksURL and an issuers[] entry from
// config.yaml verify session tokens at the chat route, and a reload that
// adds an issuer accepts its tokens at once.
func TestJWKSThroughConfig(t *testing.T) {
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := rsa.GenerateKey(rand.Reader, 2048)
	var doc atomic.Value
	jwk := func(kid string, k *rsa.PrivateKey) map[string]string {
		return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
	}
	set := func(keys ...map[string]string) { b, _ := json.Marshal(map[string]any{"keys": keys}); doc.Store(b) }
	set(jwk("a1", k1))
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc.Load().([]byte))
	}))
	defer idp.Close()

	dir := t.TempDir()
	cfgText := func(extra string) string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", adminToken: %q}
log: {level: error}
auth:
  jwt:
    issuer: https://auth.one
    audience: edge
    jwksURL: %s/one
    jwksMinInterval: 1s
%s
personas:
  items: [{id: psn_demo, workspace: wsp_demo, name: D, systemPrompt: S, defaultModel: m}]
providers: [{name: mock, type: mock}]
models: [{id: m, provider: mock}]
ledger: {driver: jsonl, path: %s}
`, testAdminToken, idp.URL, extra, filepath.Join(dir, "usage.jsonl"))
	}
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, cfgText(""))
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, newLogger(newRedactor(os.Stderr, cfg.secrets()), "error"))
	if err != nil {
		t.Fatal(err)
	}
	g := serveApp(t, a, cfg)
	a.configFile(path, nil)

	token := func(iss, kid string, k *rsa.PrivateKey) string {
		return testkit.SignJWT(t, jwt.MapClaims{"sub": "u1", "wsp": "wsp_demo", "iss": iss, "aud": "edge",
			"exp": time.Now().Add(time.Hour).Unix()}, jwt.SigningMethodRS256, k, kid)
	}
	if st, code := chatStatus(g, token("https://auth.one", "a1", k1)); st != 200 {
		t.Fatalf("JWKS token: %d %s", st, code)
	}
	if st, _ := chatStatus(g, token("https://auth.two", "b1", k2)); st != 401 {
		t.Fatalf("unknown issuer: %d", st)
	}
	// The issuer rotates: a1 retired, a2 in.
	set(jwk("a2", k2))
	time.Sleep(1100 * time.Millisecond) // the unknown-kid fetch interval
	if st, code := chatStatus(g, token("https://auth.one", "a2", k2)); st != 200 {
		t.Fatalf("rotated key: %d %s", st, code)
	}
	if st, _ := chatStatus(g, token("https://auth.one", "a1", k1)); st != 401 {
		t.Fatalf("retired key: %d", st)
	}

	// Reload adds a second issuer with its own JWKS (the same server).
	writeFile(t, path, cfgText(fmt.Sprintf("    issuers:\n      - {issuer: https://auth.two, audience: edge, jwksURL: %s/two}", idp.URL)))
	if r := g.admin("POST", "/admin/reload", ""); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	if st, code := chatStatus(g, token("https://auth.two", "a2", k2)); st != 200 {
		t.Fatalf("second issuer after reload: %d %s", st, code)
	}
	if st, code := chatStatus(g, token("https://auth.one", "a2", k2)); st != 200 {
		t.Fatalf("first issuer after reload: %d %s", st, code)
	}
}
