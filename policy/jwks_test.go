package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer is a loopback identity provider whose key set the test
// rotates, and can take down.
type jwksServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	doc  []byte
	down bool
	hits atomic.Int64
}

func startJWKS(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		doc, down := s.doc, s.down
		s.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) serve(keys ...map[string]string) {
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	s.mu.Lock()
	s.doc, s.down = doc, false
	s.mu.Unlock()
}

func (s *jwksServer) setDown() { s.mu.Lock(); s.down = true; s.mu.Unlock() }

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid, alg string, k *rsa.PrivateKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
		"n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]string {
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(x), "y": b64u(y)} // no alg: ES256 from the curve
}

func edJWK(kid string, k ed25519.PrivateKey) map[string]string {
	return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": b64u(k.Public().(ed25519.PublicKey))}
}

// TestJWKSRotation: tokens signed by the set's keys are accepted, a
// rotated-in key is picked up on its first unknown kid, unknown kids
// refetch at most once per interval, an outage keeps the last good set,
// and every key is pinned to its declared algorithm.
func TestJWKSRotation(t *testing.T) {
	s := startJWKS(t)
	rk1, rk2 := mustRSA(t), mustRSA(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	s.serve(rsaJWK("r1", "RS256", rk1), ecJWK("e1", ek), map[string]string{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"})

	now := testNow
	cfg := AuthConfig{JWT: JWTConfig{Issuer: "https://auth.moonborn.test", Audience: "edge",
		JWKSURL: s.srv.URL, JWKSRefresh: time.Hour, JWKSMinInterval: 10 * time.Second}}
	a, err := NewAuthenticatorWith(cfg, AuthOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if s.hits.Load() != 1 {
		t.Fatalf("fetches at start: %d", s.hits.Load())
	}
	claims := goodClaims()
	check := func(name, tok string, at time.Time, want error) {
		t.Helper()
		p, err := a.Authenticate([]byte(tok), at)
		if !errors.Is(err, want) || (err == nil && p.CredentialID != "usr_42") {
			t.Fatalf("%s: %+v %v; want %v", name, p, err, want)
		}
	}
	check("RS256 key of the set", sign(t, jwt.SigningMethodRS256, rk1, "r1", claims), now, nil)
	check("EC key, alg from its curve", sign(t, jwt.SigningMethodES256, ek, "e1", claims), now, nil)
	check("same RSA key, other algorithm", sign(t, jwt.SigningMethodPS256, rk1, "r1", claims), now, errAlgNotAllowed)
	check("HS256 with the RSA key's bytes", sign(t, jwt.SigningMethodHS256, []byte(rsaJWK("r1", "RS256", rk1)["n"]), "r1", claims), now, errAlgNotAllowed)
	check("symmetric JWK skipped", sign(t, jwt.SigningMethodHS256, []byte("secret"), "sym", claims), now, errUnknownKid)
	hits := s.hits.Load() // the unknown kid "sym" fetched once at now

	// Unknown kids within the interval do not fetch again.
	check("forged kid", sign(t, jwt.SigningMethodRS256, rk2, "nope", claims), now.Add(time.Second), errUnknownKid)
	check("another forged kid", sign(t, jwt.SigningMethodRS256, rk2, "nope2", claims), now.Add(9*time.Second), errUnknownKid)
	if got := s.hits.Load(); got != hits {
		t.Fatalf("unknown kids within the interval fetched %d more times", got-hits)
	}

	// Rotation: r1 retired, r2 and an Ed25519 key added. The first token
	// naming r2 after the interval fetches the new set.
	s.serve(rsaJWK("r2", "RS256", rk2), edJWK("d1", edk))
	now = now.Add(11 * time.Second)
	check("rotated-in key", sign(t, jwt.SigningMethodRS256, rk2, "r2", claims), now, nil)
	check("rotated-in Ed25519 key", sign(t, jwt.SigningMethodEdDSA, edk, "d1", claims), now, nil)
	check("retired key", sign(t, jwt.SigningMethodRS256, rk1, "r1", claims), now, errUnknownKid)
	if got := s.hits.Load(); got != hits+1 {
		t.Fatalf("rotation took %d fetches, want 1", got-hits)
	}

	// Outage: fetches fail, the last good set keeps working.
	s.setDown()
	now = now.Add(time.Minute)
	check("unknown kid during the outage", sign(t, jwt.SigningMethodRS256, rk1, "r9", claims), now, errUnknownKid)
	check("known key during the outage", sign(t, jwt.SigningMethodRS256, rk2, "r2", claims), now, nil)
	if att, fail := a.jwks[0].Fetches(); fail != 1 || att != uint64(s.hits.Load()) {
		t.Fatalf("fetch counters %d/%d, server saw %d", att, fail, s.hits.Load())
	}
	// A document without a usable key is an outage too.
	s.serve(map[string]string{"kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB"})
	now = now.Add(time.Minute)
	check("after an unusable set", sign(t, jwt.SigningMethodRS256, rk2, "r2", claims), now, nil)
}

// TestJWKSUnreachableAtStart: a gateway whose issuer is down at start
// serves once the issuer is back, without a restart.
func TestJWKSUnreachableAtStart(t *testing.T) {
	s := startJWKS(t)
	s.setDown()
	rk := mustRSA(t)
	now := testNow
	a, err := NewAuthenticatorWith(AuthConfig{JWT: JWTConfig{JWKSURL: s.srv.URL, JWKSRefresh: time.Hour, JWKSMinInterval: time.Second}}, AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tok := []byte(sign(t, jwt.SigningMethodRS256, rk, "k", goodClaims()))
	if _, err := a.Authenticate(tok, now); !errors.Is(err, errUnknownKid) {
		t.Fatalf("while down: %v", err)
	}
	s.serve(rsaJWK("k", "RS256", rk))
	if _, err := a.Authenticate(tok, now.Add(2*time.Second)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestJWTIssuers: tokens go to the section of their issuer.
func TestJWTIssuers(t *testing.T) {
	s := startJWKS(t)
	rk := mustRSA(t)
	s.serve(rsaJWK("k", "RS256", rk))
	cfg := AuthConfig{JWT: JWTConfig{
		Issuer: "https://auth.moonborn.test", Keys: []JWTKeyConfig{{ID: "hs", Algorithm: "HS256", Secret: testHMACSecret}},
		Issuers: []JWTConfig{{Issuer: "https://idp.example", JWKSURL: s.srv.URL, WorkspaceClaim: "org"}},
	}}
	a, err := NewAuthenticatorWith(cfg, AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Authenticate([]byte(sign(t, jwt.SigningMethodHS256, []byte(testHMACSecret), "hs", goodClaims())), testNow); err != nil {
		t.Fatalf("first issuer: %v", err)
	}
	c := with(with(goodClaims(), "iss", "https://idp.example"), "org", "wsp_idp")
	if p, err := a.Authenticate([]byte(sign(t, jwt.SigningMethodRS256, rk, "k", c)), testNow); err != nil || p.Workspace != "wsp_idp" {
		t.Fatalf("second issuer: %+v %v", p, err)
	}
	// The second issuer's key cannot sign for the first.
	if _, err := a.Authenticate([]byte(sign(t, jwt.SigningMethodRS256, rk, "k", goodClaims())), testNow); err == nil {
		t.Fatal("a key of one issuer verified another's token")
	}
	bad := AuthConfig{JWT: JWTConfig{Issuers: []JWTConfig{{JWKSURL: "ftp://x"}, {Issuer: "a", Keys: nil}}}}
	bad.SetDefaults()
	if err := bad.Validate(); err == nil {
		t.Fatal("bad issuers accepted")
	}
}

func FuzzParseJWKS(f *testing.F) {
	rk := mustRSA(f)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{rsaJWK("r", "RS256", rk), ecJWK("e", ek)}})
	f.Add(doc)
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, _, err := ParseJWKS(b)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if k.id != kid || k.parser == nil || k.key == nil {
				t.Fatalf("key %q not pinned: %+v", kid, k)
			}
			if _, ok := hmacMinSecret(k.alg); !ok || k.alg[0] == 'H' {
				t.Fatalf("key %q has algorithm %q", kid, k.alg)
			}
		}
	})
}

// TestJWKSReusedOnReload: an Authenticator built to replace another keeps
// the JWKS sets whose settings did not change (their keys, without a
// fetch) and closes only the others.
func TestJWKSReusedOnReload(t *testing.T) {
	s1, s2 := startJWKS(t), startJWKS(t)
	rk := mustRSA(t)
	s1.serve(rsaJWK("k", "RS256", rk))
	s2.serve(rsaJWK("k2", "RS256", rk))
	cfg := AuthConfig{JWT: JWTConfig{JWKSURL: s1.srv.URL}}
	old, err := NewAuthenticatorWith(cfg, AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := NewAuthenticatorWith(cfg, AuthOptions{Previous: old})
	if err != nil {
		t.Fatal(err)
	}
	if s1.hits.Load() != 1 || next.jwks[0] != old.jwks[0] {
		t.Fatalf("unchanged set not reused: %d fetches", s1.hits.Load())
	}
	old.CloseUnshared(next)
	if _, err := next.Authenticate([]byte(sign(t, jwt.SigningMethodRS256, rk, "k", goodClaims())), testNow); err != nil {
		t.Fatalf("reused set: %v", err)
	}
	moved := AuthConfig{JWT: JWTConfig{JWKSURL: s2.srv.URL}}
	third, err := NewAuthenticatorWith(moved, AuthOptions{Previous: next})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if third.jwks[0] == next.jwks[0] || s2.hits.Load() != 1 {
		t.Fatal("a changed URL reused the old set")
	}
	next.CloseUnshared(third)
	select {
	case <-next.jwks[0].done:
	default:
		t.Fatal("the replaced set's refresh still runs")
	}
}
