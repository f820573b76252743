package jsonx

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// KeyFold reports whether the raw string literal key (as Member
// returns it) names the struct field name the way encoding/json matches
// keys to fields: after unescaping, case-insensitively under Unicode
// simple folding (so "Usage" and "uſage" match "usage"). The non-streaming
// decoders use it to keep encoding/json's semantics exactly; name must be
// ASCII.
func KeyFold(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	plain := bytes.IndexByte(inner, '\\') < 0
	if plain && len(inner) == len(name) {
		ascii := true
		for i, c := range inner {
			if c >= utf8.RuneSelf {
				ascii = false
				break
			}
			if upper(c) != upper(name[i]) {
				return false
			}
		}
		if ascii {
			return true
		}
	} else if plain && len(inner) < len(name) {
		return false // every folded rune takes at least one byte
	}
	var buf [64]byte
	dec := inner
	if !plain || !utf8.Valid(inner) {
		var err error
		if dec, err = Unquote(buf[:0], key); err != nil {
			return false
		}
	}
	j := 0
	for i := 0; i < len(dec); j++ {
		if j >= len(name) {
			return false
		}
		r, size := rune(dec[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(dec[i:])
			r = foldRune(r)
		} else {
			r = rune(upper(byte(r)))
		}
		if r != rune(upper(name[j])) {
			return false
		}
		i += size
	}
	return j == len(name)
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// foldRune returns the smallest rune of r's simple fold orbit, as
// encoding/json folds field names.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
