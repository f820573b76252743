package jsonx

import "testing"

func TestIntOrNull(t *testing.T) {
	cases := []struct {
		name     string
		raw      string
		want     int64
		null, ok bool
	}{
		{"number", `42`, 42, false, true},
		{"spaced null", ` null `, 0, true, true},
		{"null", `null`, 0, true, true},
		{"float", `1.0`, 0, false, false},
		{"string", `"1"`, 0, false, false},
	}
	for _, c := range cases {
		n, null, err := IntOrNull([]byte(c.raw))
		if n != c.want || null != c.null || (err == nil) != c.ok {
			t.Errorf("%s: IntOrNull(%q) = %d, %v, %v; want %d, %v, ok %v", c.name, c.raw, n, null, err, c.want, c.null, c.ok)
		}
	}
}

func TestUnquoteScratch(t *testing.T) {
	var scratch []byte
	plain := []byte(`"plain"`)
	got, err := UnquoteScratch(&scratch, plain)
	if err != nil || string(got) != "plain" || &got[0] != &plain[1] || scratch != nil {
		t.Fatalf("plain: %q, %v, aliased %v, scratch %q", got, err, err == nil && &got[0] == &plain[1], scratch)
	}
	got, err = UnquoteScratch(&scratch, []byte(`"a\nb"`))
	if err != nil || string(got) != "a\nb" || &scratch[0] != &got[0] {
		t.Fatalf("escaped: %q, %v; scratch %q should hold it", got, err, scratch)
	}
	grown := cap(scratch)
	escaped := []byte(`"x\ty"`)
	if a := testing.AllocsPerRun(100, func() { _, _ = UnquoteScratch(&scratch, escaped) }); a != 0 {
		t.Errorf("UnquoteScratch allocates %.1f times once the buffer has grown", a)
	}
	if cap(scratch) != grown {
		t.Errorf("scratch capacity %d, want the grown %d kept", cap(scratch), grown)
	}
	if got, err := UnquoteScratch(&scratch, []byte(`1`)); err == nil || got != nil {
		t.Errorf("non-string: %q, %v; want nil, an error", got, err)
	}
}

func TestNewStrictObject(t *testing.T) {
	cases := []struct {
		name string
		data string
		ok   bool
	}{
		{"object", ` {"a":1} `, true},
		{"null", `null`, false},
		{"array", `[]`, false},
		{"empty", ``, false},
	}
	for _, c := range cases {
		_, err := NewStrictObject([]byte(c.data))
		if (err == nil) != c.ok {
			t.Errorf("%s: NewStrictObject(%q) error %v, want ok %v", c.name, c.data, err, c.ok)
		}
	}
}
