package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

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
