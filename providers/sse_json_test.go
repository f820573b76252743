package providers

import (
	"bytes"
	"encoding/json"
	"testing"
)

// walkJSON visits every value of data through JSONIter, the way the
// protocol parsers do, and reports whether the whole input was valid.
func walkJSON(data []byte) error {
	trimmed := jsonTrim(data)
	if len(trimmed) == 0 {
		return ErrJSONSyntax
	}
	switch trimmed[0] {
	case '{':
		it, err := NewJSONObject(data)
		if err != nil {
			return err
		}
		for key, v, ok := it.Member(); ok; key, v, ok = it.Member() {
			if _, err := JSONString(nil, key); err != nil {
				return err
			}
			if err := walkJSON(v); err != nil {
				return err
			}
		}
		return it.Err()
	case '[':
		it, err := NewJSONArray(data)
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
		_, err := JSONString(nil, data)
		return err
	}
	end, err := jsonSkipValue(trimmed, 0, 1)
	if err == nil && end != len(trimmed) {
		err = ErrJSONSyntax
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
			got, err := JSONString(nil, []byte(c.raw))
			if err != nil || string(got) != c.want {
				t.Fatalf("JSONString(%s) = %q, %v; want %q", c.raw, got, err, c.want)
			}
		})
	}
	if !JSONKeyIs([]byte(`"cont\u0065nt"`), "content") || JSONKeyIs([]byte(`"Content"`), "content") {
		t.Fatal("JSONKeyIs must decode escapes and match case-sensitively")
	}
	for _, raw := range []string{`9223372036854775807`, `-9223372036854775808`, `0`} {
		var want int64
		_ = json.Unmarshal([]byte(raw), &want)
		if got, err := JSONInt([]byte(raw)); err != nil || got != want {
			t.Fatalf("JSONInt(%s) = %d, %v", raw, got, err)
		}
	}
	for _, raw := range []string{`9223372036854775808`, `1.0`, `1e3`, `"1"`, `-`} {
		if _, err := JSONInt([]byte(raw)); err == nil {
			t.Fatalf("JSONInt(%s) accepted", raw)
		}
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
		isNull := JSONIsNull(data) // encoding/json reads null as "leave unchanged"
		var s string
		errStd := json.Unmarshal(data, &s)
		got, err := JSONString(nil, data)
		if !isNull && (err == nil) != (errStd == nil) {
			t.Fatalf("JSONString err = %v, encoding/json err = %v", err, errStd)
		}
		if errStd == nil && !isNull && string(got) != s {
			t.Fatalf("JSONString = %q, encoding/json = %q", got, s)
		}
		var n int64
		errStd = json.Unmarshal(data, &n)
		gotN, err := JSONInt(data)
		if !isNull && (err == nil) != (errStd == nil) {
			t.Fatalf("JSONInt err = %v, encoding/json err = %v", err, errStd)
		}
		if errStd == nil && !isNull && gotN != n {
			t.Fatalf("JSONInt = %d, encoding/json = %d", gotN, n)
		}
	})
}
