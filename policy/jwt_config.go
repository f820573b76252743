package policy

import (
	"errors"
	"fmt"
	"net/url"
	"time"
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
