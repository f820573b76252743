package policy

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Principal kinds, the values of Principal.Kind.
const (
	KindAPIKey = "api_key"
	KindJWT    = "jwt"
)

// MaxTokenLen bounds the bearer token Authenticate looks at, in bytes, so a
// hostile header cannot buy unbounded hashing or JSON decoding.
const MaxTokenLen = 8 << 10

// ErrUnauthenticated is the sentinel every authentication failure wraps
// (through *AuthError). The gateway maps it to 401 `unauthenticated`.
var ErrUnauthenticated = errors.New("unauthenticated")

// AuthError is an authentication failure with a short reason that is safe to
// show to the client: it never contains the token, the key or any part of
// them. It unwraps to ErrUnauthenticated.
type AuthError struct {
	// Reason is a fixed phrase such as "token expired" or "unknown API key".
	Reason string
}

// Error returns "unauthenticated: <reason>".
func (e *AuthError) Error() string { return "unauthenticated: " + e.Reason }

// Unwrap returns ErrUnauthenticated so callers can use errors.Is.
func (e *AuthError) Unwrap() error { return ErrUnauthenticated }

// The failures are fixed values so the API-key path returns them without
// allocating. They are never modified.
var (
	errNoCredentials    error = &AuthError{Reason: "missing credentials"}
	errTokenTooLong     error = &AuthError{Reason: "token too long"}
	errUnknownKey       error = &AuthError{Reason: "unknown API key"}
	errKeyDisabled      error = &AuthError{Reason: "API key revoked"}
	errKeyExpired       error = &AuthError{Reason: "API key expired"}
	errJWTNotAccepted   error = &AuthError{Reason: "session tokens are not accepted"}
	errMalformedToken   error = &AuthError{Reason: "malformed token"}
	errKidRequired      error = &AuthError{Reason: "token has no key id (kid)"}
	errUnknownKid       error = &AuthError{Reason: "unknown key id (kid)"}
	errAlgNotAllowed    error = &AuthError{Reason: "token algorithm not allowed"}
	errBadSignature     error = &AuthError{Reason: "invalid token signature"}
	errUnverifiable     error = &AuthError{Reason: "token cannot be verified"}
	errTokenExpired     error = &AuthError{Reason: "token expired"}
	errNotValidYet      error = &AuthError{Reason: "token not valid yet"}
	errIssuedInFuture   error = &AuthError{Reason: "token issued in the future"}
	errWrongAudience    error = &AuthError{Reason: "wrong token audience"}
	errWrongIssuer      error = &AuthError{Reason: "wrong token issuer"}
	errMissingClaim     error = &AuthError{Reason: "token is missing a required claim (exp, iss or aud)"}
	errInvalidClaims    error = &AuthError{Reason: "invalid token claims"}
	errMissingSubject   error = &AuthError{Reason: "token has no subject (sub)"}
	errMissingWorkspace error = &AuthError{Reason: "token has no workspace claim"}
)

// AuthConfig is the `auth` section: the API keys and the session-token
// (JWT) verification keys. At least one of them must be configured.
type AuthConfig struct {
	// APIKeys are the long-lived keys, stored as their SHA-256. Ids and
	// hashes must be unique.
	APIKeys []APIKeyConfig `yaml:"apiKeys"`
	// JWT verifies session tokens; no keys means session tokens are
	// rejected.
	JWT JWTConfig `yaml:"jwt"`
	// KeyStore holds the API keys managed at run time through the admin
	// API, in the ledger's database.
	KeyStore KeyStoreConfig `yaml:"keyStore"`
}

// APIKeyConfig is one API key. The key itself is never stored: generate it
// elsewhere and store its hash (`gateway hash-key`). A key must not contain
// exactly two dots, or it would be read as a JWT.
type APIKeyConfig struct {
	// ID names the credential in usage records and logs. Required, unique.
	ID string `yaml:"id"`
	// Workspace the key is bound to. Required.
	Workspace string `yaml:"workspace"`
	// SHA256 is the hex SHA-256 of the key (64 hex characters). Required,
	// unique.
	SHA256 string `yaml:"sha256"`
	// Disabled revokes the key while keeping its id on record. Default false.
	Disabled bool `yaml:"disabled"`
}

// SetDefaults fills the defaults of the JWT and key store sections.
func (c *AuthConfig) SetDefaults() {
	c.JWT.SetDefaults()
	c.KeyStore.SetDefaults()
}

// Validate reports every problem at once, each prefixed with its path
// relative to the auth section (`apiKeys[1].sha256: ...`,
// `jwt.keys[0].algorithm: ...`). It parses key material (and reads
// publicKeyFile) but never prints secrets.
func (c *AuthConfig) Validate() error {
	var errs []error
	c.validateAPIKeys(&errs)
	c.JWT.validate("jwt.", &errs)
	c.KeyStore.validate("keyStore.", &errs)
	if len(c.APIKeys) == 0 && !c.JWT.configured() && (c.KeyStore.Enabled == nil || !*c.KeyStore.Enabled) {
		errs = append(errs, errors.New("apiKeys: at least one API key, jwt.keys or jwt.jwksURL entry, or keyStore.enabled: true is required"))
	}
	return errors.Join(errs...)
}

func (c *AuthConfig) validateAPIKeys(errs *[]error) {
	ids := make(map[string]int, len(c.APIKeys))
	hashes := make(map[[sha256.Size]byte]int, len(c.APIKeys))
	for i, k := range c.APIKeys {
		p := fmt.Sprintf("apiKeys[%d]", i)
		if k.ID == "" {
			*errs = append(*errs, fmt.Errorf("%s.id: required", p))
		} else if j, dup := ids[k.ID]; dup {
			*errs = append(*errs, fmt.Errorf("%s.id: duplicate of apiKeys[%d].id %q", p, j, k.ID))
		} else {
			ids[k.ID] = i
		}
		if k.Workspace == "" {
			*errs = append(*errs, fmt.Errorf("%s.workspace: required", p))
		}
		sum, ok := parseKeyHash(k.SHA256)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s.sha256: must be 64 hex characters (the SHA-256 of the key, not the key)", p))
			continue
		}
		if j, dup := hashes[sum]; dup {
			*errs = append(*errs, fmt.Errorf("%s.sha256: same key as apiKeys[%d]", p, j))
		} else {
			hashes[sum] = i
		}
	}
}

func parseKeyHash(s string) (sum [sha256.Size]byte, ok bool) {
	if len(s) != hex.EncodedLen(sha256.Size) {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, false
	}
	return sum, true
}

// HashKey returns the lowercase hex SHA-256 of an API key, the value to put
// in apiKeys[].sha256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Authenticator turns a bearer token into a Principal. It is immutable after
// NewAuthenticator and safe for concurrent use; rotate keys by building a
// new one.
type Authenticator struct {
	apiKeys map[[sha256.Size]byte]*apiKey
	jwt     []*jwtVerifier // one per issuer; empty when JWTs are not accepted
	keys    *KeyStore      // nil without a key store
	jwks    []*JWKS        // the JWKS sets the verifiers use, for Close
}

// AuthOptions are what an Authenticator uses beside its config.
type AuthOptions struct {
	// Keys, when set, is consulted for keys the config does not list.
	Keys *KeyStore
	// Previous is the Authenticator a reload replaces: its JWKS sets are
	// reused for unchanged URLs (with their cached keys) instead of
	// fetched again. The caller closes Previous's other sets with
	// CloseUnshared.
	Previous *Authenticator
	// Log receives JWKS fetch problems; nil discards them.
	Log *slog.Logger
	// Now is the clock of the JWKS refresh schedule; nil means time.Now.
	Now func() time.Time
}

type apiKey struct {
	sum       [sha256.Size]byte
	principal Principal
	disabled  bool
}

// NewAuthenticator validates cfg (after applying defaults to a copy) and
// builds the lookup tables and verification keys, with no key store and
// JWKS sets of its own.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	return NewAuthenticatorWith(cfg, AuthOptions{})
}

// NewAuthenticatorWith is NewAuthenticator with a key store and the
// JWKS sets of the Authenticator it replaces. A JWKS URL that cannot be
// fetched now is not an error: its set starts empty and is fetched again
// on schedule and on the first unknown kid.
func NewAuthenticatorWith(cfg AuthConfig, o AuthOptions) (*Authenticator, error) {
	cfg.APIKeys = append([]APIKeyConfig(nil), cfg.APIKeys...)
	cfg.JWT.Keys = append([]JWTKeyConfig(nil), cfg.JWT.Keys...)
	cfg.JWT.Issuers = append([]JWTConfig(nil), cfg.JWT.Issuers...)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a := &Authenticator{apiKeys: make(map[[sha256.Size]byte]*apiKey, len(cfg.APIKeys)), keys: o.Keys}
	for _, k := range cfg.APIKeys {
		sum, _ := parseKeyHash(k.SHA256)
		a.apiKeys[sum] = &apiKey{
			sum:       sum,
			principal: Principal{Workspace: k.Workspace, CredentialID: k.ID, Kind: KindAPIKey},
			disabled:  k.Disabled,
		}
	}
	if err := a.buildJWT(cfg.JWT, o); err != nil {
		a.Close()
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// Authenticate resolves a bearer token (without the "Bearer " prefix) at
// instant now. A token with exactly two dots is a session JWT; anything else
// is an API key. Failures are *AuthError values wrapping
// ErrUnauthenticated. The token is not retained.
func (a *Authenticator) Authenticate(token []byte, now time.Time) (Principal, error) {
	switch {
	case len(token) == 0:
		return Principal{}, errNoCredentials
	case len(token) > MaxTokenLen:
		return Principal{}, errTokenTooLong
	case bytes.Count(token, []byte(".")) == 2:
		if len(a.jwt) == 0 {
			return Principal{}, errJWTNotAccepted
		}
		return a.verifyJWT(token, now)
	default:
		return a.authenticateAPIKey(token, now)
	}
}

// authenticateAPIKey finds the key by its hash. The map lookup works on the
// hash, which tells an attacker nothing about the key; the constant-time
// compare afterwards makes the final decision independent of where bytes
// differ.
func (a *Authenticator) authenticateAPIKey(key []byte, now time.Time) (Principal, error) {
	sum := sha256.Sum256(key)
	k, ok := a.apiKeys[sum]
	if !ok && a.keys != nil {
		// Managed keys: an in-memory lookup too, never a database call.
		if p, found, err := a.keys.authenticate(&sum, now); found {
			return p, err
		}
	}
	if !ok || subtle.ConstantTimeCompare(k.sum[:], sum[:]) != 1 {
		return Principal{}, errUnknownKey
	}
	if k.disabled {
		return Principal{}, errKeyDisabled
	}
	return k.principal, nil
}
