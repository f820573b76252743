package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
)

// requestIDs makes unique request ids cheaply: a random per-process prefix
// and a counter, so no entropy is drawn per request.
type requestIDs struct {
	prefix [12]byte
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var seed [6]byte
	_, _ = rand.Read(seed[:])
	g := &requestIDs{}
	hex.Encode(g.prefix[:], seed[:])
	return g
}

// appendNext appends "req_" + prefix + 16 hex digits of the counter.
func (g *requestIDs) appendNext(dst []byte) []byte {
	n := g.n.Add(1)
	dst = append(dst, "req_"...)
	dst = append(dst, g.prefix[:]...)
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(n>>uint(shift))&0xf])
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// saneRequestID reports whether a caller's X-Request-Id may be echoed:
// 1 to 128 characters of A-Z a-z 0-9 . _ : - (API.md).
func saneRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
