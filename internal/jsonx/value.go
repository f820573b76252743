package jsonx

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Unquote decodes the raw string literal raw, appending the text to
// dst. When the literal needs no unescaping and is valid UTF-8 the result
// aliases raw and dst is untouched, so the common case copies nothing.
func Unquote(dst, raw []byte) ([]byte, error) { return unquote(dst, raw, false) }

// AppendUnquoted is Unquote for a caller that keeps the text past the
// life of raw or joins several texts in one buffer: the text is always
// appended to dst, never aliased from raw.
func AppendUnquoted(dst, raw []byte) ([]byte, error) { return unquote(dst, raw, true) }

func unquote(dst, raw []byte, copyPlain bool) ([]byte, error) {
	raw = trim(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return dst, ErrSyntax
	}
	if end, err := skipString(raw, 0); err != nil || end != len(raw) {
		return dst, ErrSyntax
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		if copyPlain {
			return append(dst, inner...), nil
		}
		return inner, nil
	}
	for i := 0; i < len(inner); {
		c := inner[i]
		if c == '\\' {
			e := inner[i+1]
			switch e {
			case 'u':
				r := hex4(inner[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, hex4(inner[i+2:i+6])); r2 != utf8.RuneError {
							dst = utf8.AppendRune(dst, r2)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			case 'b':
				e = '\b'
			case 'f':
				e = '\f'
			case 'n':
				e = '\n'
			case 'r':
				e = '\r'
			case 't':
				e = '\t'
			}
			dst = append(dst, e)
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(inner[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, inner[i:i+size]...)
		}
		i += size
	}
	return dst, nil
}

// Int reads raw as a JSON number holding an integer that fits int64
// (encoding/json rejects "1.0" and "1e3" for an integer field, and so does
// this).
func Int(raw []byte) (int64, error) {
	raw = trim(raw)
	if end, err := skipNumber(raw, 0); err != nil || end != len(raw) {
		return 0, ErrSyntax
	}
	var n int64
	neg := raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, ErrSyntax
		}
		d := int64(c - '0')
		if neg {
			if n < (-1<<63+d)/10 {
				return 0, ErrSyntax
			}
			n = n*10 - d
		} else {
			if n > (1<<63-1-d)/10 {
				return 0, ErrSyntax
			}
			n = n*10 + d
		}
	}
	return n, nil
}

// IntOrNull is Int for a member where null stands for absent: null
// gives 0 and null true, which callers use to leave a count as it was or
// to clear it.
func IntOrNull(raw []byte) (n int64, null bool, err error) {
	if IsNull(raw) {
		return 0, true, nil
	}
	n, err = Int(raw)
	return n, false, err
}

// UnquoteScratch is Unquote into a buffer kept across calls: the text
// aliases raw when it holds no escapes, else it is unescaped into
// *scratch, which then keeps the grown buffer, so that a parser reading
// one string per event (a stream's deltas) allocates only while the
// buffer grows. The text is valid until the next call with scratch.
func UnquoteScratch(scratch *[]byte, raw []byte) ([]byte, error) {
	text, err := Unquote((*scratch)[:0], raw)
	if err != nil {
		return nil, err
	}
	if len(text) > 0 && len(raw) > 0 && &text[0] != &raw[1] {
		*scratch = text
	}
	return text, nil
}

// Float reads raw as a JSON number into a float64 the way
// encoding/json does: a number out of float64's range is an error, as is
// anything that is not a number (null included).
func Float(raw []byte) (float64, error) {
	raw = trim(raw)
	if end, err := skipNumber(raw, 0); err != nil || end != len(raw) {
		return 0, ErrSyntax
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, ErrSyntax
	}
	return f, nil
}

// hex4 decodes four hex digits that skipString already validated.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= 'a':
			c -= 'a' - 10
		case c >= 'A':
			c -= 'A' - 10
		default:
			c -= '0'
		}
		r = r<<4 | rune(c)
	}
	return r
}
