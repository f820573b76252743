package policy

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

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
