package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"
)

// testNow is the fixed instant every authentication test runs at.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testAPIKey      = "sk-live-0123456789abcdefghijklmnopqrstuv"
	testRevokedKey  = "sk-live-revoked-000000000000000000000000"
	testHMACSecret  = "an-hmac-secret-that-is-at-least-32-bytes-long"
	testOtherSecret = "another-hmac-secret-that-is-32-bytes-or-more!"
)

// testKeys are the asymmetric key pairs of one test run.
type testKeys struct {
	rsa     *rsa.PrivateKey
	rsaPEM  string
	ec      *ecdsa.PrivateKey
	ecPEM   string
	ed      ed25519.PrivateKey
	edPEM   string
	authCfg AuthConfig
}

func pemPublic(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKeys{rsa: rk, ec: ek, ed: edPriv}
	k.rsaPEM = pemPublic(t, &rk.PublicKey)
	k.ecPEM = pemPublic(t, &ek.PublicKey)
	k.edPEM = pemPublic(t, edPub)
	k.authCfg = AuthConfig{
		APIKeys: []APIKeyConfig{
			{ID: "key_demo", Workspace: "wsp_demo", SHA256: HashKey(testAPIKey)},
			{ID: "key_old", Workspace: "wsp_demo", SHA256: HashKey(testRevokedKey), Disabled: true},
		},
		JWT: JWTConfig{
			Issuer:   "https://auth.moonborn.test",
			Audience: "edge",
			Keys: []JWTKeyConfig{
				{ID: "hs", Algorithm: "HS256", Secret: testHMACSecret},
				{ID: "rs", Algorithm: "RS256", PublicKey: k.rsaPEM},
				{ID: "es", Algorithm: "ES256", PublicKey: k.ecPEM},
				{ID: "ed", Algorithm: "EdDSA", PublicKey: k.edPEM},
			},
		},
	}
	return k
}

func newTestAuthenticator(t testing.TB, cfg AuthConfig) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	return a
}

// goodClaims are claims valid at testNow for the test configuration.
func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "usr_42",
		"wsp": "wsp_jwt",
		"iss": "https://auth.moonborn.test",
		"aud": "edge",
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, key string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, val := range c {
		out[k] = val
	}
	if v == nil {
		delete(out, key)
	} else {
		out[key] = v
	}
	return out
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// replacePart swaps one dot-separated segment of a token.
func replacePart(tok string, i int, seg string) string {
	parts := strings.Split(tok, ".")
	parts[i] = seg
	return strings.Join(parts, ".")
}

func TestAuthenticate(t *testing.T) {
	k := newTestKeys(t)
	a := newTestAuthenticator(t, k.authCfg)
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testHMACSecret), "hs", c) }
	good := goodClaims()
	hsGood := hs(good)
	leeway := DefaultJWTLeeway

	tampered := []byte(hsGood)
	sigStart := strings.LastIndexByte(hsGood, '.') + 1
	if tampered[sigStart] == 'A' {
		tampered[sigStart] = 'B'
	} else {
		tampered[sigStart] = 'A'
	}
	forgedPayload := replacePart(hsGood, 1,
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"usr_42","wsp":"wsp_victim","iss":"https://auth.moonborn.test","aud":"edge","exp":1999999999}`)))

	tests := []struct {
		name   string
		token  string
		want   Principal
		reason string // expected AuthError reason; empty means success
	}{
		{"api key valid", testAPIKey, Principal{Workspace: "wsp_demo", CredentialID: "key_demo", Kind: KindAPIKey}, ""},
		{"api key unknown", "sk-live-nope", Principal{}, "unknown API key"},
		{"api key revoked", testRevokedKey, Principal{}, "API key revoked"},
		{"api key one byte off", testAPIKey[:len(testAPIKey)-1] + "w", Principal{}, "unknown API key"},
		{"empty", "", Principal{}, "missing credentials"},
		{"too long", strings.Repeat("k", MaxTokenLen+1), Principal{}, "token too long"},

		{"jwt HS256", hsGood, Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"jwt RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "rs", good), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"jwt ES256", sign(t, jwt.SigningMethodES256, k.ec, "es", good), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"jwt EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", good), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"jwt aud list containing ours", hs(with(good, "aud", []string{"other", "edge"})), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},

		{"expired", hs(with(good, "exp", testNow.Add(-time.Hour).Unix())), Principal{}, "token expired"},
		{"exp within leeway", hs(with(good, "exp", testNow.Add(-leeway+time.Second).Unix())), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"exp at leeway edge", hs(with(good, "exp", testNow.Add(-leeway).Unix())), Principal{}, "token expired"},
		{"not yet valid", hs(with(good, "nbf", testNow.Add(time.Hour).Unix())), Principal{}, "token not valid yet"},
		{"nbf at leeway edge", hs(with(good, "nbf", testNow.Add(leeway).Unix())), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"nbf beyond leeway", hs(with(good, "nbf", testNow.Add(leeway+time.Second).Unix())), Principal{}, "token not valid yet"},
		{"iat at leeway edge", hs(with(good, "iat", testNow.Add(leeway).Unix())), Principal{Workspace: "wsp_jwt", CredentialID: "usr_42", Kind: KindJWT}, ""},
		{"iat in the future", hs(with(good, "iat", testNow.Add(leeway+time.Second).Unix())), Principal{}, "token issued in the future"},
		{"wrong audience", hs(with(good, "aud", "someone-else")), Principal{}, "wrong token audience"},
		{"wrong issuer", hs(with(good, "iss", "https://evil.test")), Principal{}, "wrong token issuer"},
		{"missing exp", hs(with(good, "exp", nil)), Principal{}, "token is missing a required claim (exp, iss or aud)"},
		{"missing audience", hs(with(good, "aud", nil)), Principal{}, "token is missing a required claim (exp, iss or aud)"},
		{"missing workspace", hs(with(good, "wsp", nil)), Principal{}, "token has no workspace claim"},
		{"workspace not a string", hs(with(good, "wsp", 42)), Principal{}, "token has no workspace claim"},
		{"empty workspace", hs(with(good, "wsp", "")), Principal{}, "token has no workspace claim"},
		{"missing sub", hs(with(good, "sub", nil)), Principal{}, "token has no subject (sub)"},
		{"empty sub", hs(with(good, "sub", "")), Principal{}, "token has no subject (sub)"},
		{"exp not a number", hs(with(good, "exp", "tomorrow")), Principal{}, "invalid token claims"},

		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "hs", good), Principal{}, "token algorithm not allowed"},
		{"alg none without kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good), Principal{}, "token has no key id (kid)"},
		{"alg switch HS256 with RSA public key as secret", sign(t, jwt.SigningMethodHS256, []byte(k.rsaPEM), "rs", good), Principal{}, "token algorithm not allowed"},
		{"alg switch RS256 token on HS key", sign(t, jwt.SigningMethodRS256, k.rsa, "hs", good), Principal{}, "token algorithm not allowed"},
		{"wrong HMAC secret", sign(t, jwt.SigningMethodHS256, []byte(testOtherSecret), "hs", good), Principal{}, "invalid token signature"},
		{"RS256 signed by another key", sign(t, jwt.SigningMethodRS256, mustRSA(t), "rs", good), Principal{}, "invalid token signature"},
		{"tampered signature", string(tampered), Principal{}, "invalid token signature"},
		{"tampered payload", forgedPayload, Principal{}, "invalid token signature"},
		{"unknown kid", sign(t, jwt.SigningMethodHS256, []byte(testHMACSecret), "nope", good), Principal{}, "unknown key id (kid)"},
		{"no kid with several keys", sign(t, jwt.SigningMethodHS256, []byte(testHMACSecret), "", good), Principal{}, "token has no key id (kid)"},
		{"two dots garbage", "a.b.c", Principal{}, "malformed token"},
		{"bad payload base64", replacePart(hsGood, 1, "!!!"), Principal{}, "malformed token"},
		{"kid not a string", "eyJhbGciOiJIUzI1NiIsImtpZCI6NDJ9.e30.c2ln", Principal{}, "malformed token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Authenticate([]byte(tc.token), testNow)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if got != tc.want {
					t.Fatalf("principal = %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %+v, want rejection %q", got, tc.reason)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
			}
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Fatalf("error = %v, want reason %q", err, tc.reason)
			}
			if got != (Principal{}) {
				t.Fatalf("principal %+v returned with an error", got)
			}
			if len(tc.token) > 8 && strings.Contains(err.Error(), tc.token[:8]) {
				t.Fatalf("error %q leaks the token", err)
			}
		})
	}
}

func TestAuthenticateKidCaseConfusion(t *testing.T) {
	// A header with "KID":"hs" and no "kid" must be refused even though a
	// case-insensitive decode would pick key hs.
	k := newTestKeys(t)
	a := newTestAuthenticator(t, k.authCfg)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims())
	tok.Header["KID"] = "hs"
	s, err := tok.SignedString([]byte(testHMACSecret))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authenticate([]byte(s), testNow); err == nil {
		t.Fatalf("accepted %+v", p)
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAuthenticateSingleKeyAndOptions(t *testing.T) {
	no := false
	single := AuthConfig{JWT: JWTConfig{
		WorkspaceClaim: "org",
		RequireExp:     &no,
		Keys:           []JWTKeyConfig{{ID: "only", Algorithm: "HS384", Secret: strings.Repeat("s", 48)}},
	}}
	a := newTestAuthenticator(t, single)
	secret := []byte(strings.Repeat("s", 48))
	claims := jwt.MapClaims{"sub": "svc", "org": "wsp_org"}
	tests := []struct {
		name   string
		token  string
		wantOK bool
	}{
		{"no kid uses the only key", sign(t, jwt.SigningMethodHS384, secret, "", claims), true},
		{"matching kid", sign(t, jwt.SigningMethodHS384, secret, "only", claims), true},
		{"other kid", sign(t, jwt.SigningMethodHS384, secret, "k2", claims), false},
		{"no exp allowed when requireExp false", sign(t, jwt.SigningMethodHS384, secret, "", claims), true},
		{"HS256 on an HS384 key", sign(t, jwt.SigningMethodHS256, secret, "", claims), false},
		{"default claim name ignored", sign(t, jwt.SigningMethodHS384, secret, "", jwt.MapClaims{"sub": "svc", "wsp": "x"}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate([]byte(tc.token), testNow)
			if (err == nil) != tc.wantOK {
				t.Fatalf("err = %v, wantOK %v", err, tc.wantOK)
			}
			if tc.wantOK && (p.Workspace != "wsp_org" || p.CredentialID != "svc" || p.Kind != KindJWT) {
				t.Fatalf("principal = %+v", p)
			}
		})
	}

	apiOnly := newTestAuthenticator(t, AuthConfig{APIKeys: []APIKeyConfig{{ID: "k", Workspace: "w", SHA256: HashKey(testAPIKey)}}})
	_, err := apiOnly.Authenticate([]byte(sign(t, jwt.SigningMethodHS256, []byte(testHMACSecret), "", claims)), testNow)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != "session tokens are not accepted" {
		t.Fatalf("JWT on an API-key-only authenticator: %v", err)
	}
}

func TestAuthConfigValidate(t *testing.T) {
	k := newTestKeys(t)
	pemFile := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(pemFile, []byte(k.ecPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	shortSecret := "short-secret-value"
	hash := HashKey(testAPIKey)
	tests := []struct {
		name string
		cfg  AuthConfig
		want []string // substrings that must all appear; none means valid
	}{
		{"valid", k.authCfg, nil},
		{"valid publicKeyFile", AuthConfig{JWT: JWTConfig{Keys: []JWTKeyConfig{{Algorithm: "ES256", PublicKeyFile: pemFile}}}}, nil},
		{"nothing configured", AuthConfig{}, []string{"apiKeys: at least one API key, jwt.keys or jwt.jwksURL entry, or keyStore.enabled: true is required"}},
		{"bad hash and duplicates", AuthConfig{APIKeys: []APIKeyConfig{
			{ID: "a", Workspace: "w", SHA256: hash},
			{ID: "a", Workspace: "", SHA256: "5f1b"},
			{ID: "", Workspace: "w", SHA256: hash},
			{ID: "c", Workspace: "w", SHA256: strings.Repeat("z", 64)},
		}}, []string{
			"apiKeys[1].id: duplicate of apiKeys[0].id",
			"apiKeys[1].workspace: required",
			"apiKeys[1].sha256: must be 64 hex characters",
			"apiKeys[2].id: required",
			"apiKeys[2].sha256: same key as apiKeys[0]",
			"apiKeys[3].sha256: must be 64 hex characters",
		}},
		{"jwt problems", AuthConfig{JWT: JWTConfig{Leeway: 6 * time.Minute, Keys: []JWTKeyConfig{
			{ID: "a", Algorithm: "none"},
			{ID: "a", Algorithm: "HS256", Secret: shortSecret},
			{ID: "", Algorithm: "RS256"},
			{ID: "d", Algorithm: "ES256", PublicKey: "not pem"},
			{ID: "e", Algorithm: "ES256", PublicKey: pemPublic(t, &p384.PublicKey)},
			{ID: "f", Algorithm: "RS256", PublicKey: pemPublic(t, &smallRSA.PublicKey)},
			{ID: "g", Algorithm: "EdDSA", PublicKey: k.edPEM, Secret: shortSecret},
			{ID: "h", Algorithm: "HS512", Secret: testHMACSecret},
			{ID: "i", Algorithm: "RS256", PublicKey: k.rsaPEM, PublicKeyFile: pemFile},
			{ID: "j", Algorithm: "EdDSA", PublicKeyFile: filepath.Join(t.TempDir(), "missing.pem")},
			{ID: "k", Algorithm: "HS256", Secret: testHMACSecret, PublicKey: k.rsaPEM},
		}}}, []string{
			"jwt.leeway: must be between 0 and 5m0s",
			"jwt.keys[0].algorithm: must be one of HS256,",
			"jwt.keys[1].id: duplicate of jwt.keys[0].id",
			"jwt.keys[1].secret: must be at least 32 bytes for HS256",
			"jwt.keys[2].id: required when more than one key is configured",
			"jwt.keys[2].publicKey: required for RS256",
			"jwt.keys[3].publicKey: not a PEM ECDSA public key",
			"jwt.keys[4].publicKey: ES256 needs curve P-256, key is P-384",
			"jwt.keys[5].publicKey: RSA key has 1024 bits, need at least 2048",
			"jwt.keys[6].secret: not used with EdDSA",
			"jwt.keys[7].secret: must be at least 64 bytes for HS512",
			"jwt.keys[8].publicKey: set publicKey or publicKeyFile, not both",
			"jwt.keys[9].publicKeyFile: open",
			"jwt.keys[10].publicKey: not used with HS256",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SetDefaults()
			msg := checkValidateErrors(t, cfg.Validate(), tc.want)
			if len(tc.want) == 0 {
				return
			}
			for _, secret := range []string{shortSecret, testHMACSecret} {
				if strings.Contains(msg, secret) {
					t.Errorf("error leaks a secret:\n%s", msg)
				}
			}
			if _, err := NewAuthenticator(tc.cfg); err == nil {
				t.Error("NewAuthenticator accepted what Validate rejects")
			}
		})
	}
}

func TestAuthConfigYAML(t *testing.T) {
	src := `
apiKeys:
  - id: key_demo
    workspace: wsp_demo
    sha256: ` + HashKey(testAPIKey) + `
jwt:
  leeway: 45s
  requireExp: false
  keys:
    - id: k1
      algorithm: HS256
      secret: ` + testHMACSecret + `
`
	var cfg AuthConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.JWT.Leeway != 45*time.Second || cfg.JWT.RequireExp == nil || *cfg.JWT.RequireExp || cfg.JWT.WorkspaceClaim != "wsp" {
		t.Fatalf("decoded %+v", cfg.JWT)
	}
	var def JWTConfig
	def.SetDefaults()
	if def.Leeway != 30*time.Second || def.RequireExp == nil || !*def.RequireExp {
		t.Fatalf("defaults %+v", def)
	}
}

func TestHashKey(t *testing.T) {
	// sha256("abc") from FIPS 180-2.
	if got := HashKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashKey = %s", got)
	}
}

func TestAuthenticateAPIKeyAllocs(t *testing.T) {
	k := newTestKeys(t)
	a := newTestAuthenticator(t, k.authCfg)
	tok := []byte(testAPIKey)
	unknown := []byte("sk-unknown")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Authenticate(tok, testNow); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(unknown, testNow); err == nil {
			t.Fatal("accepted unknown")
		}
	})
	if allocs != 0 {
		t.Fatalf("API-key path allocates %v times", allocs)
	}
}

func FuzzAuthenticate(f *testing.F) {
	k := newTestKeys(f)
	a := newTestAuthenticator(f, k.authCfg)
	good := goodClaims()
	// Seeds are near misses: well-formed but signed with the wrong keys,
	// so no mutation the fuzzer can make without forging a signature or
	// finding a SHA-256 preimage is valid.
	f.Add(sign(f, jwt.SigningMethodHS256, []byte(testOtherSecret), "hs", good))
	f.Add(sign(f, jwt.SigningMethodRS256, mustRSA(f), "rs", good))
	f.Add(sign(f, jwt.SigningMethodHS256, []byte(k.rsaPEM), "rs", good))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good))
	f.Add("sk-live-0123456789abcdefghijklmnopqrstuw")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := a.Authenticate([]byte(token), testNow)
		if err == nil {
			t.Fatalf("accepted %q as %+v", token, p)
		}
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
		}
		if len(token) >= 6 && strings.Contains(err.Error(), token) {
			t.Fatalf("error %q echoes the token", err)
		}
	})
}

func BenchmarkAuthenticate(b *testing.B) {
	k := newTestKeys(b)
	a := newTestAuthenticator(b, k.authCfg)
	cases := []struct {
		name  string
		token []byte
	}{
		{"APIKey", []byte(testAPIKey)},
		{"JWT_HS256", []byte(sign(b, jwt.SigningMethodHS256, []byte(testHMACSecret), "hs", goodClaims()))},
		{"JWT_ES256", []byte(sign(b, jwt.SigningMethodES256, k.ec, "es", goodClaims()))},
		{"JWT_EdDSA", []byte(sign(b, jwt.SigningMethodEdDSA, k.ed, "ed", goodClaims()))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(c.token, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
