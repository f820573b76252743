package jsonx

import (
	"encoding/json"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "hello", `"hello"`},
		{"empty", "", `""`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"controls", "a\nb\tc\r\x01", `"a\nb\tc\r\u0001"`},
		{"html", "<a&b>", `"\u003ca\u0026b\u003e"`},
		{"unicode kept", "héllo 世界", `"héllo 世界"`},
		{"invalid utf8", "a\xffb", `"a\ufffdb"`},
		{"line separators", "a\u2028b\u2029", `"a\u2028b\u2029"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(AppendString(nil, c.in)); got != c.want {
				t.Fatalf("string: got %s want %s", got, c.want)
			}
			if got := string(AppendString(nil, []byte(c.in))); got != c.want {
				t.Fatalf("bytes: got %s want %s", got, c.want)
			}
		})
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "x", "\"\\", "\xff\xfe", "\u2028", "<>&", "\x00\x1f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json = %s", s, got, want)
		}
	})
}

func BenchmarkAppendJSONString(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	s := "Hello, world! A typical \"delta\" with some text\n"
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}

func TestAppendStrings(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, `[]`},
		{[]string{"a"}, `["a"]`},
		{[]string{"\n", `"q"`, ""}, `["\n","\"q\"",""]`},
	} {
		if got := string(AppendStrings([]byte("x"), c.in)); got != "x"+c.want {
			t.Errorf("AppendStrings(%q) = %s, want x%s", c.in, got, c.want)
		}
	}
}
