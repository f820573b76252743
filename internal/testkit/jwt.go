package testkit

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// SignJWT signs claims with method and key, naming kid in the header
// when it is not empty: the session tokens the gateway's JWT tests
// present, valid or broken on purpose.
func SignJWT(t testing.TB, claims jwt.MapClaims, method jwt.SigningMethod, key any, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
