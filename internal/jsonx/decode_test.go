package jsonx

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// walkJSON visits every value of data through Iter, the way the
// protocol parsers do, and reports whether the whole input was valid.
func walkJSON(data []byte) error {
	trimmed := trim(data)
	if len(trimmed) == 0 {
		return ErrSyntax
	}
	switch trimmed[0] {
	case '{':
		it, err := NewObject(data)
		if err != nil {
			return err
		}
		for key, v, ok := it.Member(); ok; key, v, ok = it.Member() {
			if _, err := Unquote(nil, key); err != nil {
				return err
			}
			if err := walkJSON(v); err != nil {
				return err
			}
		}
		return it.Err()
	case '[':
		it, err := NewArray(data)
		if err != nil {
			return err
		}
		for v, ok := it.Element(); ok; v, ok = it.Element() {
			if err := walkJSON(v); err != nil {
				return err
			}
		}
		return it.Err()
	case '"':
		_, err := Unquote(nil, data)
		return err
	}
	end, err := skipValue(trimmed, 0, 1)
	if err == nil && end != len(trimmed) {
		err = ErrSyntax
	}
	return err
}

func TestJSONIter(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		valid bool
	}{
		{"empty object", `{}`, true},
		{"nested", ` {"a":[1,-2.5e3,"x\u00e9",true,false,null,{"b":{}}]} `, true},
		{"trailing comma", `{"a":1,}`, false},
		{"missing colon", `{"a" 1}`, false},
		{"garbage after", `{"a":1} x`, false},
		{"leading zero", `[01]`, false},
		{"bad escape", `["\x"]`, false},
		{"raw control char", "[\"a\x01\"]", false},
		{"unterminated", `{"a":"b`, false},
		{"bare minus", `[-]`, false},
		{"exponent without digits", `[1e]`, false},
		{"single quotes", `{'a':1}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := walkJSON([]byte(c.in))
			if (err == nil) != c.valid {
				t.Fatalf("walk err = %v, want valid=%v", err, c.valid)
			}
			if json.Valid([]byte(c.in)) != c.valid {
				t.Fatalf("test case disagrees with encoding/json")
			}
		})
	}
}

func TestJSONStringAndKey(t *testing.T) {
	cases := []struct {
		name, raw, want string
	}{
		{"plain", `"hello"`, "hello"},
		{"escapes", `"a\"b\\c\/d\n\t"`, "a\"b\\c/d\n\t"},
		{"unicode escape", `"\u00e9\u4e16"`, "é世"},
		{"surrogate pair", `"\ud83d\ude00"`, "😀"},
		{"lone surrogate", `"\ud83dx"`, "\uFFFDx"},
		{"invalid utf8", "\"a\xffb\"", "a\uFFFDb"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Unquote(nil, []byte(c.raw))
			if err != nil || string(got) != c.want {
				t.Fatalf("Unquote(%s) = %q, %v; want %q", c.raw, got, err, c.want)
			}
		})
	}
	if !KeyIs([]byte(`"cont\u0065nt"`), "content") || KeyIs([]byte(`"Content"`), "content") {
		t.Fatal("KeyIs must decode escapes and match case-sensitively")
	}
	for _, raw := range []string{`9223372036854775807`, `-9223372036854775808`, `0`} {
		var want int64
		_ = json.Unmarshal([]byte(raw), &want)
		if got, err := Int([]byte(raw)); err != nil || got != want {
			t.Fatalf("Int(%s) = %d, %v", raw, got, err)
		}
	}
	for _, raw := range []string{`9223372036854775808`, `1.0`, `1e3`, `"1"`, `-`} {
		if _, err := Int([]byte(raw)); err == nil {
			t.Fatalf("Int(%s) accepted", raw)
		}
	}
}

// TestJSONDepth holds the nesting bound to encoding/json's exactly (the
// fuzz target stays shallow, so it cannot).
func TestJSONDepth(t *testing.T) {
	for _, levels := range []int{10000, 10001} {
		inner := strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1)
		for _, doc := range []string{`{"a":` + inner + `}`, `[` + inner + `]`} {
			want := json.Valid([]byte(doc))
			// One level of iteration validates the rest (walkJSON would
			// revisit every level, quadratic at this depth).
			it, err := NewObject([]byte(doc))
			if doc[0] == '[' {
				it, err = NewArray([]byte(doc))
			}
			for ok := err == nil; ok; _, ok = it.Element() {
				if doc[0] == '{' {
					_, _, ok = it.Member()
				}
			}
			if err == nil {
				err = it.Err()
			}
			if (err == nil) != want {
				t.Errorf("%d levels %.2s...: iterator err = %v, encoding/json valid = %v", levels, doc, err, want)
			}
			if got := Valid([]byte(doc)); got != want {
				t.Errorf("%d levels %.2s...: Valid = %v, encoding/json = %v", levels, doc, got, want)
			}
		}
	}
}

func TestJSONFloat(t *testing.T) {
	cases := []struct {
		raw  string
		want float64
		ok   bool
	}{
		{`0.7`, 0.7, true},
		{` -2.5e3 `, -2500, true},
		{`1`, 1, true},
		{`1e-400`, 0, true}, // underflow rounds to zero, as in encoding/json
		{`1e400`, 0, false},
		{`-1e400`, 0, false},
		{`01`, 0, false},
		{`.5`, 0, false},
		{`"1"`, 0, false},
		{`null`, 0, false},
		{`NaN`, 0, false},
		{``, 0, false},
	}
	for _, c := range cases {
		got, err := Float([]byte(c.raw))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Float(%q) = %v, %v; want %v, ok %v", c.raw, got, err, c.want, c.ok)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = Float([]byte(`0.123456789`)) }); a != 0 {
		t.Errorf("Float allocates %.1f times", a)
	}
}

func TestJSONAppendString(t *testing.T) {
	raw := []byte(`"plain"`)
	dst := make([]byte, 0, 16)
	dst = append(dst, "a\n"...)
	got, err := AppendUnquoted(dst, raw)
	if err != nil || string(got) != "a\nplain" {
		t.Fatalf("AppendUnquoted = %q, %v", got, err)
	}
	if &got[0] != &dst[0] {
		t.Fatal("AppendUnquoted did not append to dst")
	}
	raw[1] = 'X' // the result must not alias raw
	if string(got) != "a\nplain" {
		t.Fatalf("result aliases raw: %q", got)
	}
	if got, err := AppendUnquoted([]byte("x"), []byte(`"\u00e9"`)); err != nil || string(got) != "xé" {
		t.Fatalf("escaped: %q, %v", got, err)
	}
	if got, err := AppendUnquoted([]byte("x"), []byte(`1`)); err == nil || string(got) != "x" {
		t.Fatalf("non-string: %q, %v", got, err)
	}
}

func TestJSONIsObject(t *testing.T) {
	cases := []struct {
		name, in string
		want     bool
	}{
		{"object", `{"a":1}`, true},
		{"leading whitespace", " \t\r\n{}", true},
		{"null", `null`, false},
		{"array", `[{}]`, false},
		{"empty", ``, false},
		{"only whitespace", " \n", false},
		{"vertical tab is not JSON space", "\v{}", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsObject([]byte(c.in)); got != c.want {
				t.Fatalf("IsObject(%q) = %v", c.in, got)
			}
		})
	}
}

func FuzzJSONScan(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"content":"Hi \u00e9\n"}}],"usage":null}`,
		`{"type":"message_delta","usage":{"output_tokens":15}}`,
		`["\ud83d\ude00", 1.5e-3, -0, true, null]`,
		`"\ud800\udc00\\"`,
		`12345678901234567890`,
		`{"a":{"b":[[],{}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) > 500 {
			return // depth limits differ in how deep they allow, not in kind
		}
		valid := json.Valid(data)
		if err := walkJSON(data); (err == nil) != valid {
			t.Fatalf("walk err = %v, encoding/json valid = %v", err, valid)
		}
		if got := Valid(data); got != valid {
			t.Fatalf("Valid = %v, encoding/json = %v", got, valid)
		}
		isNull := IsNull(data) // encoding/json reads null as "leave unchanged"
		var s string
		errStd := json.Unmarshal(data, &s)
		got, err := Unquote(nil, data)
		if !isNull && (err == nil) != (errStd == nil) {
			t.Fatalf("Unquote err = %v, encoding/json err = %v", err, errStd)
		}
		if errStd == nil && !isNull && string(got) != s {
			t.Fatalf("Unquote = %q, encoding/json = %q", got, s)
		}
		app, errApp := AppendUnquoted([]byte("p"), data)
		if (errApp == nil) != (err == nil) || (err == nil && string(app) != "p"+string(got)) || (err != nil && string(app) != "p") {
			t.Fatalf("AppendUnquoted = %q, %v; Unquote = %q, %v", app, errApp, got, err)
		}
		var n int64
		errStd = json.Unmarshal(data, &n)
		gotN, err := Int(data)
		if !isNull && (err == nil) != (errStd == nil) {
			t.Fatalf("Int err = %v, encoding/json err = %v", err, errStd)
		}
		if errStd == nil && !isNull && gotN != n {
			t.Fatalf("Int = %d, encoding/json = %d", gotN, n)
		}
		var fl float64
		errStd = json.Unmarshal(data, &fl)
		gotF, err := Float(data)
		if !isNull && (err == nil) != (errStd == nil) {
			t.Fatalf("Float err = %v, encoding/json err = %v", err, errStd)
		}
		if errStd == nil && !isNull && gotF != fl && !(math.IsNaN(gotF) && math.IsNaN(fl)) {
			t.Fatalf("Float = %v, encoding/json = %v", gotF, fl)
		}
	})
}
