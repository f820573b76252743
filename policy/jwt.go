package policy

import (
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT defaults and bounds.
const (
	DefaultWorkspaceClaim = "wsp"
	DefaultJWTLeeway      = 30 * time.Second
	MaxJWTLeeway          = 5 * time.Minute
	// minRSABits rejects RSA keys too small to be safe.
	minRSABits = 2048
)

// JWTConfig verifies session tokens issued by another service of ours.
type JWTConfig struct {
	// WorkspaceClaim names the string claim holding the workspace.
	// Default "wsp".
	WorkspaceClaim string `yaml:"workspaceClaim"`
	// Leeway tolerates clock skew on exp, nbf and iat. Default 30s (zero
	// means the default), max 5m.
	Leeway time.Duration `yaml:"leeway"`
	// Issuer, when set, must equal the token's iss.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be one of the token's aud values.
	Audience string `yaml:"audience"`
	// RequireExp rejects tokens without exp. Default true (a pointer so an
	// explicit false survives SetDefaults).
	RequireExp *bool `yaml:"requireExp"`
	// Keys are the verification keys, each pinned to one algorithm.
	Keys []JWTKeyConfig `yaml:"keys"`
	// JWKSURL, when set, is the issuer's JSON Web Key Set (http or
	// https), used beside Keys: fetched at start, again every JWKSRefresh
	// and on a token whose kid it does not hold (at most once per
	// JWKSMinInterval). Each JWK is pinned to the algorithm it declares
	// (its "alg"; EC and OKP keys without one get the curve's). While
	// the URL cannot be fetched, the last good set stays in use.
	JWKSURL string `yaml:"jwksURL"`
	// JWKSRefresh is the refresh schedule. Default 5m; at least 10s.
	JWKSRefresh time.Duration `yaml:"jwksRefresh"`
	// JWKSMinInterval is the least time between two fetches caused by
	// unknown kids, so forged kids cannot make the gateway hammer the
	// issuer. Default 30s; 1s to JWKSRefresh.
	JWKSMinInterval time.Duration `yaml:"jwksMinInterval"`
	// JWKSTimeout bounds one fetch. Default 5s.
	JWKSTimeout time.Duration `yaml:"jwksTimeout"`
	// Issuers are further token issuers, each a section of this shape
	// (without issuers of its own) whose issuer is required and unique. A
	// token is verified by the section whose issuer equals its iss, else
	// by this top-level section when its issuer is empty.
	Issuers []JWTConfig `yaml:"issuers"`
}

// configured reports whether any JWT can be verified.
func (c *JWTConfig) configured() bool {
	if len(c.Keys) > 0 || c.JWKSURL != "" {
		return true
	}
	for i := range c.Issuers {
		if c.Issuers[i].configured() {
			return true
		}
	}
	return false
}

// JWTKeyConfig is one verification key. The token's `kid` header selects
// it and its `alg` header must equal Algorithm, so `none` and algorithm
// switching are rejected.
type JWTKeyConfig struct {
	// ID matches the token's kid header. Unique; may be empty only when it
	// is the only key (then tokens without kid use it).
	ID string `yaml:"id"`
	// Algorithm is pinned: HS256, HS384, HS512, RS256, RS384, RS512, PS256,
	// ES256, ES384 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// Secret is the HMAC key (HS* only), at least as long as the hash
	// output: 32 bytes for HS256, 48 for HS384, 64 for HS512.
	Secret string `yaml:"secret"`
	// PublicKey is the PEM public key (RS*, PS*, ES*, EdDSA). RSA keys must
	// have at least 2048 bits; ES256 needs P-256, ES384 P-384. Exactly one
	// of PublicKey and PublicKeyFile.
	PublicKey string `yaml:"publicKey"`
	// PublicKeyFile is a path to the PEM public key, read at startup.
	PublicKeyFile string `yaml:"publicKeyFile"`
}

// hmacMinSecret reports whether alg is accepted and, for HMAC, the key size
// it needs (RFC 7518 §3.2: at least the hash output); 0 for asymmetric ones.
func hmacMinSecret(alg string) (minBytes int, ok bool) {
	switch alg {
	case "HS256":
		return 32, true
	case "HS384":
		return 48, true
	case "HS512":
		return 64, true
	case "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA":
		return 0, true
	}
	return 0, false
}

const jwtAlgorithmList = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, ES256, ES384, EdDSA"

// SetDefaults fills WorkspaceClaim, Leeway and RequireExp.
func (c *JWTConfig) SetDefaults() {
	if c.WorkspaceClaim == "" {
		c.WorkspaceClaim = DefaultWorkspaceClaim
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultJWTLeeway
	}
	if c.RequireExp == nil {
		t := true
		c.RequireExp = &t
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = 5 * time.Minute
	}
	if c.JWKSMinInterval == 0 {
		c.JWKSMinInterval = 30 * time.Second
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = 5 * time.Second
	}
	for i := range c.Issuers {
		c.Issuers[i].SetDefaults()
	}
}

// Validate reports every problem at once with paths relative to the jwt
// section (`keys[0].algorithm: ...`). It parses every key but never prints
// secrets.
func (c *JWTConfig) Validate() error {
	var errs []error
	c.validate("", &errs)
	return errors.Join(errs...)
}

func (c *JWTConfig) validate(prefix string, errs *[]error) {
	if c.Leeway < 0 || c.Leeway > MaxJWTLeeway {
		*errs = append(*errs, fmt.Errorf("%sleeway: must be between 0 and %s", prefix, MaxJWTLeeway))
	}
	_, keyErrs := buildJWTKeys(c.Keys, prefix)
	*errs = append(*errs, keyErrs...)
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			*errs = append(*errs, fmt.Errorf("%sjwksURL: must be an absolute http(s) URL", prefix))
		}
		if c.JWKSRefresh < 10*time.Second {
			*errs = append(*errs, fmt.Errorf("%sjwksRefresh: must be at least 10s", prefix))
		}
		if c.JWKSMinInterval < time.Second || c.JWKSMinInterval > c.JWKSRefresh {
			*errs = append(*errs, fmt.Errorf("%sjwksMinInterval: must be between 1s and jwksRefresh", prefix))
		}
		if c.JWKSTimeout <= 0 || c.JWKSTimeout > time.Minute {
			*errs = append(*errs, fmt.Errorf("%sjwksTimeout: must be between 1ms and 1m", prefix))
		}
	}
	seen := map[string]int{c.Issuer: -1}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		p := fmt.Sprintf("%sissuers[%d].", prefix, i)
		if len(is.Issuers) > 0 {
			*errs = append(*errs, fmt.Errorf("%sissuers: not allowed in an issuers entry", p))
		}
		if is.Issuer == "" {
			*errs = append(*errs, fmt.Errorf("%sissuer: required", p))
		} else if j, dup := seen[is.Issuer]; dup {
			*errs = append(*errs, fmt.Errorf("%sissuer: duplicate of %q (%d)", p, is.Issuer, j))
		} else {
			seen[is.Issuer] = i
		}
		if len(is.Keys) == 0 && is.JWKSURL == "" {
			*errs = append(*errs, fmt.Errorf("%skeys: set keys or jwksURL", p))
		}
		is.validate(p, errs)
	}
}

// jwtKey is a parsed verification key with its own parser, which accepts
// only the pinned algorithm.
type jwtKey struct {
	id      string
	alg     string
	key     any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc
}

// buildJWTKeys parses every key, returning the problems with their paths.
func buildJWTKeys(keys []JWTKeyConfig, prefix string) ([]*jwtKey, []error) {
	var (
		errs []error
		out  = make([]*jwtKey, 0, len(keys))
		ids  = make(map[string]int, len(keys))
	)
	for i, k := range keys {
		p := fmt.Sprintf("%skeys[%d]", prefix, i)
		if k.ID == "" && len(keys) > 1 {
			errs = append(errs, fmt.Errorf("%s.id: required when more than one key is configured", p))
		} else if j, dup := ids[k.ID]; dup {
			errs = append(errs, fmt.Errorf("%s.id: duplicate of %skeys[%d].id %q", p, prefix, j, k.ID))
		} else {
			ids[k.ID] = i
		}
		key, err := parseJWTKey(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", p, err))
			continue
		}
		out = append(out, key)
	}
	return out, errs
}

// parseJWTKey returns errors that start with the field name. They come from
// our checks or from PEM/x509 parsing, never from key material.
func parseJWTKey(k JWTKeyConfig) (*jwtKey, error) {
	minSecret, ok := hmacMinSecret(k.Algorithm)
	if !ok {
		return nil, fmt.Errorf("algorithm: must be one of %s", jwtAlgorithmList)
	}
	jk := &jwtKey{id: k.ID, alg: k.Algorithm}
	if minSecret > 0 {
		if k.PublicKey != "" || k.PublicKeyFile != "" {
			return nil, fmt.Errorf("publicKey: not used with %s (set secret)", k.Algorithm)
		}
		if len(k.Secret) < minSecret {
			return nil, fmt.Errorf("secret: must be at least %d bytes for %s", minSecret, k.Algorithm)
		}
		jk.key = []byte(k.Secret)
	} else {
		if k.Secret != "" {
			return nil, fmt.Errorf("secret: not used with %s (set publicKey or publicKeyFile)", k.Algorithm)
		}
		pemData, field, err := publicKeyPEM(k)
		if err != nil {
			return nil, err
		}
		if jk.key, err = parsePublicKey(k.Algorithm, pemData); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	return pinKey(jk), nil
}

// pinKey gives jk its parser and keyfunc, which accept only jk.alg.
func pinKey(jk *jwtKey) *jwtKey {
	jk.parser = jwt.NewParser(jwt.WithValidMethods([]string{jk.alg}), jwt.WithoutClaimsValidation())
	jk.keyfunc = func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused other algorithms; this check
		// keeps the pin even if the parser options change.
		if t.Method == nil || t.Method.Alg() != jk.alg {
			return nil, errAlgNotAllowed
		}
		return jk.key, nil
	}
	return jk
}

func publicKeyPEM(k JWTKeyConfig) (data []byte, field string, err error) {
	switch {
	case k.PublicKey != "" && k.PublicKeyFile != "":
		return nil, "", errors.New("publicKey: set publicKey or publicKeyFile, not both")
	case k.PublicKey != "":
		return []byte(k.PublicKey), "publicKey", nil
	case k.PublicKeyFile != "":
		data, err := os.ReadFile(k.PublicKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("publicKeyFile: %w", err)
		}
		return data, "publicKeyFile", nil
	default:
		return nil, "", fmt.Errorf("publicKey: required for %s", k.Algorithm)
	}
}

func parsePublicKey(alg string, pemData []byte) (any, error) {
	switch alg[:2] {
	case "RS", "PS":
		k, err := jwt.ParseRSAPublicKeyFromPEM(pemData)
		if err != nil {
			return nil, fmt.Errorf("not a PEM RSA public key: %w", err)
		}
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, need at least %d", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case "ES":
		k, err := jwt.ParseECPublicKeyFromPEM(pemData)
		if err != nil {
			return nil, fmt.Errorf("not a PEM ECDSA public key: %w", err)
		}
		want := elliptic.P256()
		if alg == "ES384" {
			want = elliptic.P384()
		}
		if k.Curve != want {
			return nil, fmt.Errorf("%s needs curve %s, key is %s", alg, want.Params().Name, k.Curve.Params().Name)
		}
		return k, nil
	default: // EdDSA
		k, err := jwt.ParseEdPublicKeyFromPEM(pemData)
		if err != nil {
			return nil, fmt.Errorf("not a PEM Ed25519 public key: %w", err)
		}
		return k, nil
	}
}

// jwtVerifier holds one issuer's parsed keys and claim rules; immutable
// (its JWKS set changes inside).
type jwtVerifier struct {
	issuer         string
	keys           []*jwtKey
	jwks           *JWKS // nil without jwksURL
	workspaceClaim string
	validatorOpts  []jwt.ParserOption
}

// buildJWT makes one verifier per issuer section, reusing the previous
// Authenticator's JWKS sets for unchanged settings.
func (a *Authenticator) buildJWT(c JWTConfig, o AuthOptions) error {
	sections := append([]JWTConfig{c}, c.Issuers...)
	for i := range sections {
		sc := sections[i]
		if len(sc.Keys) == 0 && sc.JWKSURL == "" {
			continue
		}
		v, err := newJWTVerifier(sc)
		if err != nil {
			return err
		}
		if sc.JWKSURL != "" {
			v.jwks = o.Previous.reuseJWKS(sc)
			if v.jwks == nil {
				v.jwks = NewJWKS(sc, o.Log, o.Now)
			}
			a.jwks = append(a.jwks, v.jwks)
		}
		a.jwt = append(a.jwt, v)
	}
	return nil
}

func (a *Authenticator) reuseJWKS(c JWTConfig) *JWKS {
	if a == nil {
		return nil
	}
	for _, j := range a.jwks {
		if j.sameSettings(c) {
			return j
		}
	}
	return nil
}

// Close stops the refresh of the JWKS sets this Authenticator owns.
func (a *Authenticator) Close() {
	for _, j := range a.jwks {
		j.Close()
	}
}

// CloseUnshared stops the JWKS sets of a that next does not use: call it
// on the Authenticator a reload replaced, once next serves.
func (a *Authenticator) CloseUnshared(next *Authenticator) {
	for _, j := range a.jwks {
		if !slices.Contains(next.jwks, j) {
			j.Close()
		}
	}
}

// verifyJWT picks the issuer's verifier: the only one, else the one whose
// issuer equals the token's (unverified) iss, else the catch-all one.
func (a *Authenticator) verifyJWT(token []byte, now time.Time) (Principal, error) {
	if len(a.jwt) == 1 {
		return a.jwt[0].verify(token, now)
	}
	iss := peekIssuer(token)
	var fallback *jwtVerifier
	for _, v := range a.jwt {
		if v.issuer == iss && iss != "" {
			return v.verify(token, now)
		}
		if v.issuer == "" {
			fallback = v
		}
	}
	if fallback == nil {
		return Principal{}, errWrongIssuer
	}
	return fallback.verify(token, now)
}

// peekIssuer reads iss from the payload without verifying anything, only
// to choose the verifier; the chosen one checks the token in full.
func peekIssuer(token []byte) string {
	first := bytes.IndexByte(token, '.')
	rest := token[first+1:]
	raw := rest[:bytes.IndexByte(rest, '.')]
	b := make([]byte, base64.RawURLEncoding.DecodedLen(len(raw)))
	n, err := base64.RawURLEncoding.Decode(b, raw)
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(b[:n], &c)
	return c.Iss
}

func newJWTVerifier(c JWTConfig) (*jwtVerifier, error) {
	keys, errs := buildJWTKeys(c.Keys, "jwt.")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	opts := []jwt.ParserOption{jwt.WithLeeway(c.Leeway), jwt.WithIssuedAt()}
	if c.RequireExp == nil || *c.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	return &jwtVerifier{issuer: c.Issuer, keys: keys, workspaceClaim: c.WorkspaceClaim, validatorOpts: opts}, nil
}

// jwtHeader is the part of the JOSE header we read before verification,
// only to choose the key.
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// verify checks a token with exactly two dots at instant now.
func (v *jwtVerifier) verify(token []byte, now time.Time) (Principal, error) {
	rawHeader := token[:bytes.IndexByte(token, '.')]
	var h jwtHeader
	hb := make([]byte, base64.RawURLEncoding.DecodedLen(len(rawHeader)))
	n, err := base64.RawURLEncoding.Decode(hb, rawHeader)
	if err != nil || json.Unmarshal(hb[:n], &h) != nil {
		return Principal{}, errMalformedToken
	}
	key, err := v.pickKey(h.Kid, now)
	if err != nil {
		return Principal{}, err
	}
	if h.Alg != key.alg {
		return Principal{}, errAlgNotAllowed
	}

	claims := jwt.MapClaims{}
	t, err := key.parser.ParseWithClaims(string(token), claims, key.keyfunc)
	if err != nil {
		return Principal{}, jwtReason(err)
	}
	// The header jwt parsed is the one we chose the key from, but check the
	// kid again so a key can never verify a token that names another.
	if kid, _ := t.Header["kid"].(string); kid != h.Kid {
		return Principal{}, errMalformedToken
	}
	opts := append(v.validatorOpts[:len(v.validatorOpts):len(v.validatorOpts)],
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err := jwt.NewValidator(opts...).Validate(claims); err != nil {
		return Principal{}, jwtReason(err)
	}

	sub, err := claims.GetSubject()
	if err != nil || strings.TrimSpace(sub) == "" {
		return Principal{}, errMissingSubject
	}
	wsp, _ := claims[v.workspaceClaim].(string)
	if strings.TrimSpace(wsp) == "" {
		return Principal{}, errMissingWorkspace
	}
	return Principal{Workspace: wsp, CredentialID: sub, Kind: KindJWT}, nil
}

func (v *jwtVerifier) pickKey(kid string, now time.Time) (*jwtKey, error) {
	if kid == "" {
		if len(v.keys) == 1 && v.jwks == nil {
			return v.keys[0], nil
		}
		if len(v.keys) == 0 && v.jwks != nil {
			if k := v.jwks.only(); k != nil {
				return k, nil
			}
		}
		return nil, errKidRequired
	}
	for _, k := range v.keys {
		if k.id == kid {
			return k, nil
		}
	}
	if v.jwks != nil {
		if k := v.jwks.key(kid, now); k != nil {
			return k, nil
		}
	}
	return nil, errUnknownKid
}

// jwtReason maps a jwt/v5 error to a fixed, client-safe reason. The order
// picks the most useful reason when several claims fail at once.
func jwtReason(err error) error {
	switch {
	case errors.Is(err, errAlgNotAllowed):
		return errAlgNotAllowed
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errMalformedToken
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return errUnverifiable
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errNotValidYet
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errIssuedInFuture
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errWrongAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errWrongIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return errMissingClaim
	default:
		return errInvalidClaims
	}
}
