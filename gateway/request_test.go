package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeChatRequest(t *testing.T) {
	cases := []struct {
		name, body string
		wantErr    string // message of the 422, "" when valid
	}{
		{"minimal", `{"userText":"hi"}`, ""},
		{"all fields", `{"userText":"hi","modelId":"m","temperature":1.5,"maxOutputTokens":10,"memoryDigest":"d","stream":true}`, ""},
		{"nulls are absent", `{"userText":"hi","modelId":null,"temperature":null,"maxOutputTokens":null,"memoryDigest":null,"stream":null}`, ""},
		{"unknown fields ignored", `{"userText":"hi","future":{"a":[1,2]},"x":1}`, ""},
		{"whole float tokens", `{"userText":"hi","maxOutputTokens":5.0}`, ""},
		{"temperature bounds", `{"userText":"hi","temperature":0}`, ""},
		{"temperature 2", `{"userText":"hi","temperature":2}`, ""},
		{"empty body", ``, "body: must be a JSON object"},
		{"array", `[1]`, "body: must be a JSON object"},
		{"string", `"hi"`, "body: must be a JSON object"},
		{"null", `null`, "body: must be a JSON object"},
		{"truncated", `{"userText":"hi"`, "body: malformed JSON"},
		{"trailing garbage", `{"userText":"hi"} x`, "body: malformed JSON"},
		{"invalid utf8", "{\"userText\":\"\xff\"}", "body: must be valid UTF-8"},
		{"missing userText", `{}`, "userText: is required"},
		{"null userText", `{"userText":null}`, "userText: is required"},
		{"empty userText", `{"userText":""}`, "userText: must not be empty"},
		{"blank userText", `{"userText":"  \n"}`, "userText: must not be empty"},
		{"userText number", `{"userText":5}`, "userText: must be a string"},
		{"modelId number", `{"userText":"hi","modelId":1}`, "modelId: must be a string"},
		{"modelId empty", `{"userText":"hi","modelId":""}`, "modelId: must not be empty"},
		{"temperature string", `{"userText":"hi","temperature":"1"}`, "temperature: must be a number"},
		{"temperature high", `{"userText":"hi","temperature":2.01}`, "temperature: must be between 0 and 2"},
		{"temperature negative", `{"userText":"hi","temperature":-0.1}`, "temperature: must be between 0 and 2"},
		{"tokens zero", `{"userText":"hi","maxOutputTokens":0}`, "maxOutputTokens: must be a whole number of at least 1"},
		{"tokens fraction", `{"userText":"hi","maxOutputTokens":1.5}`, "maxOutputTokens: must be a whole number of at least 1"},
		{"tokens string", `{"userText":"hi","maxOutputTokens":"5"}`, "maxOutputTokens: must be a number"},
		{"stream string", `{"userText":"hi","stream":"true"}`, "stream: must be a boolean"},
		{"digest object", `{"userText":"hi","memoryDigest":{}}`, "memoryDigest: must be a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ae := decodeChatRequest([]byte(c.body))
			switch {
			case c.wantErr == "" && ae != nil:
				t.Fatalf("unexpected error %q", ae.message)
			case c.wantErr != "" && ae == nil:
				t.Fatalf("accepted; want %q", c.wantErr)
			case c.wantErr != "" && !strings.HasPrefix(ae.message, c.wantErr):
				t.Fatalf("message %q; want prefix %q", ae.message, c.wantErr)
			case ae != nil && (ae.status != 422 || ae.code != codeValidation):
				t.Fatalf("status %d code %s; want 422 validation_error", ae.status, ae.code)
			}
		})
	}
}

// FuzzDecodeChatRequest checks that any body is either refused with a 422
// or accepted with a request that satisfies every rule.
func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range []string{`{"userText":"hi"}`, `{"userText":"a","temperature":1,"maxOutputTokens":3,"stream":true}`,
		`{"userText":null}`, `[]`, `{"userText":"\u00e9"}`, "{\"userText\":\"\xff\"}", `{"maxOutputTokens":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ae := decodeChatRequest(body)
		if ae != nil {
			if ae.status != 422 || ae.code != codeValidation || ae.message == "" {
				t.Fatalf("bad refusal %+v", ae)
			}
			return
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if !req.HasUserText || strings.TrimSpace(req.UserText) == "" {
			t.Fatal("accepted without userText")
		}
		if tp := req.Temperature; req.HasTemperature && (tp < 0 || tp > 2) {
			t.Fatalf("accepted temperature %v", tp)
		}
		if m := req.MaxOutputTokens; req.HasMaxOutputTokens && (m < 1 || float64(int64(m)) != m) {
			t.Fatalf("accepted maxOutputTokens %v", m)
		}
		// What encoding/json reads from an accepted body must agree.
		var ref struct {
			UserText *string `json:"userText"`
			Stream   *bool   `json:"stream"`
		}
		if err := json.Unmarshal(body, &ref); err == nil && ref.UserText != nil && *ref.UserText != req.UserText && !hasCaseVariantKeys(body) {
			t.Fatalf("userText %q, encoding/json read %q", req.UserText, *ref.UserText)
		}
	})
}

func TestSaneRequestID(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"abc", true}, {"A-Z_a.z:09", true}, {strings.Repeat("a", 128), true},
		{"", false}, {strings.Repeat("a", 129), false}, {"a b", false}, {"a/b", false}, {"é", false}, {"a\nb", false},
	}
	for _, c := range cases {
		if got := saneRequestID([]byte(c.id)); got != c.want {
			t.Errorf("saneRequestID(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct{ header, want string }{
		{"Bearer abc", "abc"}, {"bearer abc", "abc"}, {"BEARER  abc ", "abc"},
		{"", ""}, {"Bearer", ""}, {"Bearer ", ""}, {"Basic abc", ""}, {"Bearerabc", ""},
	}
	for _, c := range cases {
		tok, ok := bearerToken([]byte(c.header))
		if string(tok) != c.want || ok != (c.want != "") {
			t.Errorf("bearerToken(%q) = %q,%v; want %q", c.header, tok, ok, c.want)
		}
	}
}

func TestRequestIDsUnique(t *testing.T) {
	g := newRequestIDs()
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := string(g.appendNext(nil))
		if seen[id] || !saneRequestID([]byte(id)) {
			t.Fatalf("id %q repeated or not sane", id)
		}
		seen[id] = true
	}
}

// hasCaseVariantKeys reports whether a body spells a known key in another
// case: encoding/json matches those, the API does not.
func hasCaseVariantKeys(body []byte) bool {
	lower := strings.ToLower(string(body))
	return strings.Count(lower, `"usertext"`) != strings.Count(string(body), `"userText"`)
}
