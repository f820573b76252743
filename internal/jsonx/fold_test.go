package jsonx

import (
	"encoding/json"
	"strconv"
	"testing"
)

func TestJSONKeyFold(t *testing.T) {
	cases := []struct {
		name string
		key  string // raw literal
		want bool
	}{
		{"exact", `"usage"`, true},
		{"upper", `"USAGE"`, true},
		{"long s folds to s", `"u` + "\u017f" + `age"`, true},
		{"kelvin folds to k", `"to` + "\u212a" + `ens"`, false}, // compared with "usage"
		{"escaped", `"us\u0061ge"`, true},
		{"escaped long s", `"u\u017fage"`, true},
		{"shorter", `"usag"`, false},
		{"longer", `"usages"`, false},
		{"other", `"usagf"`, false},
		{"empty", `""`, false},
		{"invalid utf8", "\"usag\xff\"", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := KeyFold([]byte(c.key), "usage"); got != c.want {
				t.Fatalf("KeyFold(%s, usage) = %v, want %v", c.key, got, c.want)
			}
		})
	}
	if !KeyFold([]byte(`"Prompt_To`+"\u212a"+`ens"`), "prompt_tokens") {
		t.Fatal("Kelvin sign does not fold to k")
	}
}

// FuzzJSONKeyFold holds KeyFold to encoding/json's field matching.
func FuzzJSONKeyFold(f *testing.F) {
	for _, s := range []string{"prompt_tokens", "PROMPT_TOKENS", "prompt_to\u212aens", "\\u0070rompt_tokens", "prompt_token\u017f", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		raw := strconv.Quote(key) // Go escapes are JSON escapes for most input
		if !Valid([]byte(raw)) {
			raw = `"` + key + `"`
			if !Valid([]byte(raw)) {
				return
			}
		}
		var v struct {
			F int `json:"prompt_tokens"`
		}
		if err := json.Unmarshal([]byte(`{`+raw+`:1}`), &v); err != nil {
			t.Fatalf("reference rejected %s: %v", raw, err)
		}
		if got := KeyFold([]byte(raw), "prompt_tokens"); got != (v.F == 1) {
			t.Fatalf("KeyFold(%s) = %v, encoding/json matched = %v", raw, got, v.F == 1)
		}
	})
}

func BenchmarkJSONKeyFold(b *testing.B) {
	key := []byte(`"completion_tokens"`)
	b.ReportAllocs()
	for b.Loop() {
		if KeyFold(key, "prompt_tokens") || !KeyFold(key, "completion_tokens") {
			b.Fatal("mismatch")
		}
	}
}
