package jsonx

import (
	"bytes"
	"errors"
)

// ErrSyntax is returned for input that is not valid JSON, or not of the
// JSON type the caller asked for.
var ErrSyntax = errors.New("json: syntax error")

// maxDepth bounds nesting like encoding/json does, so hostile input
// cannot grow the stack.
const maxDepth = 10000

// Iter walks the members of one JSON object or the elements of one
// array in place, validating as it goes. Values come back as raw JSON
// slices of the input (read them with Unquote, Int or another
// iterator); nothing is copied or allocated. The zero value is an empty,
// finished iterator.
type Iter struct {
	data  []byte
	pos   int
	count int
	close byte
	err   error
}

// NewObject starts iterating the object that data holds (surrounding
// whitespace allowed). Anything else is ErrSyntax, except that a JSON
// null gives an empty iterator, since upstreams send null for absent.
func NewObject(data []byte) (Iter, error) { return newIter(data, '{') }

// NewStrictObject is NewObject for data that must be an object: null is
// ErrSyntax too, as for the top level of an event or a reply.
func NewStrictObject(data []byte) (Iter, error) {
	if !IsObject(data) {
		return Iter{}, ErrSyntax
	}
	return NewObject(data)
}

// NewArray is NewObject for an array.
func NewArray(data []byte) (Iter, error) { return newIter(data, '[') }

func newIter(data []byte, open byte) (Iter, error) {
	i := skipSpace(data, 0)
	if i < len(data) && data[i] == 'n' && IsNull(data) {
		return Iter{}, nil
	}
	if i >= len(data) || data[i] != open {
		return Iter{}, ErrSyntax
	}
	end := len(data)
	for end > i && isSpace(data[end-1]) {
		end--
	}
	return Iter{data: data[:end], pos: i + 1, close: open + 2}, nil // '{'+2 = '}', '['+2 = ']'
}

// Member returns the next member of an object: key is the raw string
// literal with its quotes (compare it with KeyIs), value the raw value.
// ok is false at the end or on a syntax error (see Err).
func (it *Iter) Member() (key, value []byte, ok bool) {
	if !it.step() {
		return nil, nil, false
	}
	kend, err := skipString(it.data, it.pos)
	if err != nil {
		return it.fail()
	}
	key = it.data[it.pos:kend]
	i := skipSpace(it.data, kend)
	if i >= len(it.data) || it.data[i] != ':' {
		return it.fail()
	}
	value, ok = it.value(skipSpace(it.data, i+1))
	return key, value, ok
}

// Element returns the next element of an array; ok is false at the end or
// on a syntax error (see Err).
func (it *Iter) Element() (value []byte, ok bool) {
	if !it.step() {
		return nil, false
	}
	return it.value(it.pos)
}

// Err reports the syntax error that stopped the iteration, if any. It is
// nil after a complete, valid walk.
func (it *Iter) Err() error { return it.err }

// step moves past the separator before the next entry and reports whether
// one follows.
func (it *Iter) step() bool {
	if it.err != nil || it.data == nil {
		return false
	}
	i := skipSpace(it.data, it.pos)
	if i >= len(it.data) {
		it.err = ErrSyntax
		return false
	}
	if it.data[i] == it.close {
		if i+1 != len(it.data) {
			it.err = ErrSyntax // bytes after the closing bracket
		}
		it.data = nil
		return false
	}
	if it.count > 0 {
		if it.data[i] != ',' {
			it.err = ErrSyntax
			return false
		}
		i = skipSpace(it.data, i+1)
	}
	it.pos = i
	it.count++
	return true
}

func (it *Iter) value(i int) ([]byte, bool) {
	// Depth 2: the iterator's own container is level 1, so nesting is
	// bounded exactly where encoding/json bounds it.
	end, err := skipValue(it.data, i, 2)
	if err != nil {
		it.err = err
		return nil, false
	}
	it.pos = end
	return it.data[i:end], true
}

func (it *Iter) fail() ([]byte, []byte, bool) {
	it.err = ErrSyntax
	return nil, nil, false
}

// KeyIs reports whether the raw string literal key (as Member returns
// it) decodes to name. Keys match exactly, unlike encoding/json's
// case-insensitive struct matching.
func KeyIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	var buf [64]byte
	dec, err := Unquote(buf[:0], key)
	return err == nil && string(dec) == name
}

// IsNull reports whether raw is the literal null.
func IsNull(raw []byte) bool {
	return string(trim(raw)) == "null"
}

// IsObject reports whether raw holds an object, judged by its first
// byte after whitespace. NewObject takes null for an empty object;
// callers for whom a null where an object belongs is malformed (the top
// of a stream chunk) check this first.
func IsObject(raw []byte) bool {
	i := skipSpace(raw, 0)
	return i < len(raw) && raw[i] == '{'
}

// Valid reports whether data is exactly one JSON value (surrounding
// whitespace allowed), as json.Valid does, without allocating.
func Valid(data []byte) bool {
	end, err := skipValue(data, skipSpace(data, 0), 1)
	return err == nil && skipSpace(data, end) == len(data)
}
