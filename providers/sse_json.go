package providers

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON reading helpers below serve the wire-protocol packages' stream
// hot path: each streamed chunk is walked in place, so a relayed delta
// costs no allocation. They accept exactly the JSON that encoding/json
// accepts (RFC 8259), and decode strings the way it does (invalid UTF-8
// and lone surrogates become U+FFFD); the fuzz tests hold them to that.
// Request bodies are written with AppendJSONString (jsonenc.go).

// ErrJSONSyntax is returned for input that is not valid JSON, or not of the
// JSON type the caller asked for.
var ErrJSONSyntax = errors.New("json: syntax error")

// jsonMaxDepth bounds nesting like encoding/json does, so hostile input
// cannot grow the stack.
const jsonMaxDepth = 10000

// JSONIter walks the members of one JSON object or the elements of one
// array in place, validating as it goes. Values come back as raw JSON
// slices of the input (read them with JSONString, JSONInt or another
// iterator); nothing is copied or allocated. The zero value is an empty,
// finished iterator.
type JSONIter struct {
	data  []byte
	pos   int
	count int
	close byte
	err   error
}

// NewJSONObject starts iterating the object that data holds (surrounding
// whitespace allowed). Anything else is ErrJSONSyntax, except that a JSON
// null gives an empty iterator, since upstreams send null for absent.
func NewJSONObject(data []byte) (JSONIter, error) { return newJSONIter(data, '{') }

// NewJSONArray is NewJSONObject for an array.
func NewJSONArray(data []byte) (JSONIter, error) { return newJSONIter(data, '[') }

func newJSONIter(data []byte, open byte) (JSONIter, error) {
	i := jsonSkipSpace(data, 0)
	if i < len(data) && data[i] == 'n' && JSONIsNull(data) {
		return JSONIter{}, nil
	}
	if i >= len(data) || data[i] != open {
		return JSONIter{}, ErrJSONSyntax
	}
	end := len(data)
	for end > i && jsonIsSpace(data[end-1]) {
		end--
	}
	return JSONIter{data: data[:end], pos: i + 1, close: open + 2}, nil // '{'+2 = '}', '['+2 = ']'
}

// Member returns the next member of an object: key is the raw string
// literal with its quotes (compare it with JSONKeyIs), value the raw value.
// ok is false at the end or on a syntax error (see Err).
func (it *JSONIter) Member() (key, value []byte, ok bool) {
	if !it.step() {
		return nil, nil, false
	}
	kend, err := jsonSkipString(it.data, it.pos)
	if err != nil {
		return it.fail()
	}
	key = it.data[it.pos:kend]
	i := jsonSkipSpace(it.data, kend)
	if i >= len(it.data) || it.data[i] != ':' {
		return it.fail()
	}
	value, ok = it.value(jsonSkipSpace(it.data, i+1))
	return key, value, ok
}

// Element returns the next element of an array; ok is false at the end or
// on a syntax error (see Err).
func (it *JSONIter) Element() (value []byte, ok bool) {
	if !it.step() {
		return nil, false
	}
	return it.value(it.pos)
}

// Err reports the syntax error that stopped the iteration, if any. It is
// nil after a complete, valid walk.
func (it *JSONIter) Err() error { return it.err }

// step moves past the separator before the next entry and reports whether
// one follows.
func (it *JSONIter) step() bool {
	if it.err != nil || it.data == nil {
		return false
	}
	i := jsonSkipSpace(it.data, it.pos)
	if i >= len(it.data) {
		it.err = ErrJSONSyntax
		return false
	}
	if it.data[i] == it.close {
		if i+1 != len(it.data) {
			it.err = ErrJSONSyntax // bytes after the closing bracket
		}
		it.data = nil
		return false
	}
	if it.count > 0 {
		if it.data[i] != ',' {
			it.err = ErrJSONSyntax
			return false
		}
		i = jsonSkipSpace(it.data, i+1)
	}
	it.pos = i
	it.count++
	return true
}

func (it *JSONIter) value(i int) ([]byte, bool) {
	// Depth 2: the iterator's own container is level 1, so nesting is
	// bounded exactly where encoding/json bounds it.
	end, err := jsonSkipValue(it.data, i, 2)
	if err != nil {
		it.err = err
		return nil, false
	}
	it.pos = end
	return it.data[i:end], true
}

func (it *JSONIter) fail() ([]byte, []byte, bool) {
	it.err = ErrJSONSyntax
	return nil, nil, false
}

// JSONKeyIs reports whether the raw string literal key (as Member returns
// it) decodes to name. Keys match exactly, unlike encoding/json's
// case-insensitive struct matching.
func JSONKeyIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	var buf [64]byte
	dec, err := JSONString(buf[:0], key)
	return err == nil && string(dec) == name
}

// JSONIsNull reports whether raw is the literal null.
func JSONIsNull(raw []byte) bool {
	return string(jsonTrim(raw)) == "null"
}

// JSONIsObject reports whether raw holds an object, judged by its first
// byte after whitespace. NewJSONObject takes null for an empty object;
// callers for whom a null where an object belongs is malformed (the top
// of a stream chunk) check this first.
func JSONIsObject(raw []byte) bool {
	i := jsonSkipSpace(raw, 0)
	return i < len(raw) && raw[i] == '{'
}

// JSONValid reports whether data is exactly one JSON value (surrounding
// whitespace allowed), as json.Valid does, without allocating.
func JSONValid(data []byte) bool {
	end, err := jsonSkipValue(data, jsonSkipSpace(data, 0), 1)
	return err == nil && jsonSkipSpace(data, end) == len(data)
}

// JSONString decodes the raw string literal raw, appending the text to
// dst. When the literal needs no unescaping and is valid UTF-8 the result
// aliases raw and dst is untouched, so the common case copies nothing.
func JSONString(dst, raw []byte) ([]byte, error) { return jsonString(dst, raw, false) }

// JSONAppendString is JSONString for a caller that keeps the text past the
// life of raw or joins several texts in one buffer: the text is always
// appended to dst, never aliased from raw.
func JSONAppendString(dst, raw []byte) ([]byte, error) { return jsonString(dst, raw, true) }

func jsonString(dst, raw []byte, copyPlain bool) ([]byte, error) {
	raw = jsonTrim(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return dst, ErrJSONSyntax
	}
	if end, err := jsonSkipString(raw, 0); err != nil || end != len(raw) {
		return dst, ErrJSONSyntax
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
				r := jsonHex4(inner[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, jsonHex4(inner[i+2:i+6])); r2 != utf8.RuneError {
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

// JSONInt reads raw as a JSON number holding an integer that fits int64
// (encoding/json rejects "1.0" and "1e3" for an integer field, and so does
// this).
func JSONInt(raw []byte) (int64, error) {
	raw = jsonTrim(raw)
	if end, err := jsonSkipNumber(raw, 0); err != nil || end != len(raw) {
		return 0, ErrJSONSyntax
	}
	var n int64
	neg := raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, ErrJSONSyntax
		}
		d := int64(c - '0')
		if neg {
			if n < (-1<<63+d)/10 {
				return 0, ErrJSONSyntax
			}
			n = n*10 - d
		} else {
			if n > (1<<63-1-d)/10 {
				return 0, ErrJSONSyntax
			}
			n = n*10 + d
		}
	}
	return n, nil
}

// JSONFloat reads raw as a JSON number into a float64 the way
// encoding/json does: a number out of float64's range is an error, as is
// anything that is not a number (null included).
func JSONFloat(raw []byte) (float64, error) {
	raw = jsonTrim(raw)
	if end, err := jsonSkipNumber(raw, 0); err != nil || end != len(raw) {
		return 0, ErrJSONSyntax
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, ErrJSONSyntax
	}
	return f, nil
}

// jsonHex4 decodes four hex digits that jsonSkipString already validated.
func jsonHex4(b []byte) rune {
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

// jsonTrim strips JSON whitespace (bytes.TrimSpace would also take \v,
// \f and Unicode spaces, which JSON does not allow).
func jsonTrim(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && jsonIsSpace(b[i]) {
		i++
	}
	for j > i && jsonIsSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

func jsonIsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func jsonSkipSpace(data []byte, i int) int {
	for i < len(data) && jsonIsSpace(data[i]) {
		i++
	}
	return i
}

// jsonSkipValue validates the value starting at data[i] and returns the index
// just past it.
func jsonSkipValue(data []byte, i, depth int) (int, error) {
	if i >= len(data) {
		return 0, ErrJSONSyntax
	}
	switch c := data[i]; {
	case c == '"':
		return jsonSkipString(data, i)
	case c == '{' || c == '[':
		if depth > jsonMaxDepth {
			return 0, ErrJSONSyntax
		}
		closer := c + 2
		i = jsonSkipSpace(data, i+1)
		if i < len(data) && data[i] == closer {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if i, err = jsonSkipString(data, i); err != nil {
					return 0, err
				}
				i = jsonSkipSpace(data, i)
				if i >= len(data) || data[i] != ':' {
					return 0, ErrJSONSyntax
				}
				i = jsonSkipSpace(data, i+1)
			}
			if i, err = jsonSkipValue(data, i, depth+1); err != nil {
				return 0, err
			}
			i = jsonSkipSpace(data, i)
			if i >= len(data) {
				return 0, ErrJSONSyntax
			}
			if data[i] == closer {
				return i + 1, nil
			}
			if data[i] != ',' {
				return 0, ErrJSONSyntax
			}
			i = jsonSkipSpace(data, i+1)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return jsonSkipNumber(data, i)
	case c == 't':
		return jsonSkipLiteral(data, i, "true")
	case c == 'f':
		return jsonSkipLiteral(data, i, "false")
	case c == 'n':
		return jsonSkipLiteral(data, i, "null")
	}
	return 0, ErrJSONSyntax
}

func jsonSkipLiteral(data []byte, i int, lit string) (int, error) {
	if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
		return i + len(lit), nil
	}
	return 0, ErrJSONSyntax
}

// jsonSkipString validates the string literal at data[i] (escapes well formed,
// no raw control characters; any other bytes pass, as in encoding/json).
func jsonSkipString(data []byte, i int) (int, error) {
	if i >= len(data) || data[i] != '"' {
		return 0, ErrJSONSyntax
	}
	for i++; i < len(data); i++ {
		// Most bytes of a string are plain: one compare-and-branch each.
		for i < len(data) && data[i] >= 0x20 && data[i] != '"' && data[i] != '\\' {
			i++
		}
		if i >= len(data) {
			break
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return 0, ErrJSONSyntax
		case c == '\\':
			i++
			if i >= len(data) {
				return 0, ErrJSONSyntax
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(data)-i < 5 {
					return 0, ErrJSONSyntax
				}
				for _, h := range data[i+1 : i+5] {
					if !jsonIsHex(h) {
						return 0, ErrJSONSyntax
					}
				}
				i += 4
			default:
				return 0, ErrJSONSyntax
			}
		}
	}
	return 0, ErrJSONSyntax
}

func jsonIsHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// jsonSkipNumber validates the RFC 8259 number at data[i].
func jsonSkipNumber(data []byte, i int) (int, error) {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return 0, ErrJSONSyntax
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = jsonSkipDigits(data, i)
	default:
		return 0, ErrJSONSyntax
	}
	if i < len(data) && data[i] == '.' {
		j := jsonSkipDigits(data, i+1)
		if j == i+1 {
			return 0, ErrJSONSyntax
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := jsonSkipDigits(data, i)
		if j == i {
			return 0, ErrJSONSyntax
		}
		i = j
	}
	return i, nil
}

func jsonSkipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}
