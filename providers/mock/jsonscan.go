package mock

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// errSyntax is a request body that is not valid JSON.
var errSyntax = errors.New("invalid JSON")

// maxDepth bounds nesting as encoding/json does, so a hostile body cannot
// exhaust the stack.
const maxDepth = 10000

// scanner is a minimal validating JSON reader over one request body. The
// mock decodes request bodies with it instead of encoding/json because the
// mock is the bench's baseline and should cost next to nothing: it reads
// only the fields the mock needs, skips the rest, and allocates nothing
// once its scratch buffers have grown.
type scanner struct {
	b     []byte
	i     int
	depth int
	key   []byte // scratch for keys with escapes
}

func (s *scanner) reset(b []byte) {
	s.b, s.i, s.depth = b, 0, 0
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.peek()
	return s.i == len(s.b)
}

func (s *scanner) literal(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// null consumes a null literal if one comes next.
func (s *scanner) null() bool {
	return s.peek() == 'n' && s.literal("null")
}

// strRaw reads a string and returns the bytes between its quotes, and
// whether they contain escapes (then appendUnescaped decodes them).
func (s *scanner) strRaw() (raw []byte, escaped bool, err error) {
	if !s.consume('"') {
		return nil, false, errSyntax
	}
	b, i := s.b, s.i
	start := i
	for i < len(b) {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return b[start:i], escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return nil, false, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return nil, false, errSyntax
				}
				i += 6
			default:
				return nil, false, errSyntax
			}
		default: // a control character
			return nil, false, errSyntax
		}
	}
	return nil, false, errSyntax
}

// str reads a string value and appends its decoded bytes to dst.
func (s *scanner) str(dst []byte) ([]byte, error) {
	raw, esc, err := s.strRaw()
	if err != nil {
		return dst, err
	}
	if !esc {
		return append(dst, raw...), nil
	}
	return appendUnescaped(dst, raw), nil
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			r |= rune(c - 'a' + 10)
		}
	}
	return r
}

// appendUnescaped decodes raw (validated by strRaw) the way encoding/json
// does, including its treatment of lone surrogates (U+FFFD).
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(raw[i+2:])); d != utf8.RuneError {
						r = d
						i += 6
						dst = utf8.AppendRune(dst, r)
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// number reads a number literal per the JSON grammar and returns it.
func (s *scanner) number() ([]byte, error) {
	s.peek()
	start := s.i
	b := s.b
	i := s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, errSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, errSyntax
		}
	}
	s.i = i
	return b[start:i], nil
}

// skip reads and discards any value.
func (s *scanner) skip() error {
	switch s.peek() {
	case '{':
		return s.object(func([]byte) error { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		_, _, err := s.strRaw()
		return err
	case 't':
		if s.literal("true") {
			return nil
		}
	case 'f':
		if s.literal("false") {
			return nil
		}
	case 'n':
		if s.literal("null") {
			return nil
		}
	default:
		_, err := s.number()
		return err
	}
	return errSyntax
}

// object reads an object, calling field for each member with its decoded
// key; field must consume the value. The key is valid only until field
// reads further.
func (s *scanner) object(field func(key []byte) error) error {
	if !s.consume('{') {
		return errSyntax
	}
	if s.depth++; s.depth > maxDepth {
		return errSyntax
	}
	if s.consume('}') {
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			return errSyntax
		}
		key, esc, err := s.strRaw()
		if err != nil {
			return err
		}
		if esc {
			s.key = appendUnescaped(s.key[:0], key)
			key = s.key
		}
		if !s.consume(':') {
			return errSyntax
		}
		if err := field(key); err != nil {
			return err
		}
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			s.depth--
			return nil
		}
		return errSyntax
	}
}

// array reads an array, calling elem for each element; elem must consume
// it.
func (s *scanner) array(elem func() error) error {
	if !s.consume('[') {
		return errSyntax
	}
	if s.depth++; s.depth > maxDepth {
		return errSyntax
	}
	if s.consume(']') {
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if s.consume(',') {
			continue
		}
		if s.consume(']') {
			s.depth--
			return nil
		}
		return errSyntax
	}
}
