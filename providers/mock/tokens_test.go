package mock

import (
	"strings"
	"testing"
)

func TestCountTokens(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{"empty", "", 0},
		{"whitespace is free", " \t\n\r ", 0},
		{"short word", "hello", 1},
		{"six letters", "abcdef", 1},
		{"seven letters", "abcdefg", 2},
		{"long run ceil of len/4", "internationalization", 5},
		{"digits join letters", "gpt4o", 1},
		{"punctuation each", "Hello, world!", 4},
		{"underscore splits", "snake_case", 3},
		{"non-ASCII rune each", "héllo", 3},
		{"CJK", "日本語", 3},
		{"unicode space free", "a\u00a0b", 2},
		{"invalid UTF-8 byte", "a\xffb", 3},
		{"additive over newline", "Be nice\nHello there!", 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CountTokens(tc.in); got != tc.want {
				t.Errorf("CountTokens(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if got := countTokens([]byte(tc.in)); got != tc.want {
				t.Errorf("countTokens([]byte(%q)) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestVocabularyWordsAreOneToken(t *testing.T) {
	for _, w := range vocabWords {
		if n := CountTokens(w); n != 1 {
			t.Errorf("vocabulary word %q is %d tokens", w, n)
		}
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name        string
		output, max int
		wantN       int
		wantStop    bool
	}{
		{"no cap", 20, 0, 20, true},
		{"cap above", 20, 100, 20, true},
		{"cap equal", 20, 20, 20, true},
		{"cap below cuts", 20, 5, 5, false},
		{"single token", 1, 0, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(0); seed < 50; seed++ {
				p := newPlan(seed*7919, tc.output, tc.max)
				if p.n != tc.wantN || p.stop != tc.wantStop {
					t.Fatalf("plan = n %d stop %v, want n %d stop %v", p.n, p.stop, tc.wantN, tc.wantStop)
				}
				var sb strings.Builder
				for i := 0; i < p.n; i++ {
					d := p.token(i)
					if CountTokens(string(d)) != 1 {
						t.Fatalf("delta %d %q is not one token", i, d)
					}
					if string(d) != "." && (i == 0) == strings.HasPrefix(string(d), " ") {
						t.Fatalf("delta %d %q: leading space only after the first", i, d)
					}
					sb.Write(d)
				}
				content := sb.String()
				if got := CountTokens(content); got != int64(p.n) {
					t.Fatalf("content %q is %d tokens, want %d", content, got, p.n)
				}
				if string(p.appendContent(nil)) != content {
					t.Fatalf("appendContent differs from the deltas")
				}
				if ends := strings.HasSuffix(content, "."); ends != (tc.wantStop && p.n >= 2) {
					t.Fatalf("content %q: period at end = %v", content, ends)
				}
			}
		})
	}
}

func TestSeedDependsOnEveryInput(t *testing.T) {
	base, _ := seedOfStrings("m", "sys", "user")
	for name, s := range map[string][3]string{
		"model":  {"m2", "sys", "user"},
		"system": {"m", "sys2", "user"},
		"user":   {"m", "sys", "user2"},
		"moved":  {"m", "", "sys\nuser"},
	} {
		if got, _ := seedOfStrings(s[0], s[1], s[2]); got == base {
			t.Errorf("%s: seed did not change", name)
		}
	}
	again, in := seedOfStrings("m", "sys", "user")
	if again != base || in != 2 {
		t.Errorf("seedOfStrings not deterministic or wrong tokens: %x %d", again, in)
	}
}

func FuzzCountTokens(f *testing.F) {
	for _, s := range []string{"", "hello world", "internationalization, ok?", "héllo\u00a0日本", "a\xffb\xe2\x82"} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := CountTokens(a), CountTokens(b)
		if na < 0 || na > int64(len(a)) {
			t.Fatalf("CountTokens(%q) = %d out of range", a, na)
		}
		if got := countTokens([]byte(a)); got != na {
			t.Fatalf("string and []byte disagree on %q: %d vs %d", a, na, got)
		}
		if got := CountTokens(a + "\n" + b); got != na+nb {
			t.Fatalf("not additive over newline: %q %q: %d != %d+%d", a, b, got, na, nb)
		}
	})
}

// FuzzPrefixHasher holds the cache's tokenizer to CountTokens, and its
// checkpoints to prefixes: text appended after a space leaves every
// earlier checkpoint as it was.
func FuzzPrefixHasher(f *testing.F) {
	f.Add("Hello, wörld!  abcdefghij 12345678", "more text")
	f.Add("a\u00a0b\xffc", "")
	f.Add(strings.Repeat("abcdefgh", 70), "x")
	f.Fuzz(func(t *testing.T, s, more string) {
		var p prefixHasher
		p.reset(0)
		p.feedText([]byte(s))
		if p.n != CountTokens(s) {
			t.Fatalf("hasher counts %d tokens in %q, CountTokens %d", p.n, s, CountTokens(s))
		}
		for _, step := range []int64{1, 2, 7} {
			var a, b prefixHasher
			a.reset(step)
			a.feedText([]byte(s + " "))
			b.reset(step)
			b.feedText([]byte(s + " " + more))
			if b.n != CountTokens(s+" "+more) || len(b.snaps) < len(a.snaps) {
				t.Fatalf("step %d: %d tokens, %d snapshots (prefix %d)", step, b.n, len(b.snaps), len(a.snaps))
			}
			for i := range a.snaps {
				if a.snaps[i] != b.snaps[i] || a.snaps[i].n != step+int64(i)*openAIStride {
					t.Fatalf("step %d: snapshot %d %+v, with more text %+v", step, i, a.snaps[i], b.snaps[i])
				}
			}
		}
	})
}
