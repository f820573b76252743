package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// refRequest is what a request means, computed by refDecode with
// encoding/json: the reference the hand-written decoder is checked
// against.
type refRequest struct {
	model                  string
	hasModel               bool
	stream, includeUsage   bool
	maxTokens              int64
	hasMaxTokens           bool
	maxCompletionTokens    int64
	hasMaxCompletionTokens bool
	temperature            float64
	hasTemperature         bool
	hasMessages            bool
	messages               int
	system, user           []string
}

type refClass int

const (
	refOK refClass = iota
	refSyntax
	refType
)

func refDecode(body []byte, p protocol) (refRequest, refClass) {
	var r refRequest
	if !json.Valid(body) {
		return r, refSyntax
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return r, refSyntax
	}
	top, ok := v.(map[string]any)
	if !ok {
		return r, refType
	}
	bad := false
	str := func(v any) (string, bool) {
		switch x := v.(type) {
		case nil:
			return "", true
		case string:
			return x, true
		}
		bad = true
		return "", false
	}
	boolean := func(v any) bool {
		switch x := v.(type) {
		case nil:
		case bool:
			return x
		default:
			bad = true
		}
		return false
	}
	integer := func(v any) (int64, bool) {
		switch x := v.(type) {
		case nil:
		case json.Number:
			n, err := strconv.ParseInt(string(x), 10, 64)
			if err == nil {
				return n, true
			}
			bad = true
		default:
			bad = true
		}
		return 0, false
	}
	// blocks joins the text blocks of a content array.
	blocks := func(arr []any) string {
		var out []byte
		parts := 0
		for _, e := range arr {
			b, ok := e.(map[string]any)
			if !ok {
				bad = true
				continue
			}
			typ, _ := str(b["type"])
			text, _ := str(b["text"])
			if typ != "text" {
				continue
			}
			if parts > 0 {
				out = append(out, '\n')
			}
			out = append(out, text...)
			parts++
		}
		return string(out)
	}
	content := func(v any) string {
		switch x := v.(type) {
		case nil:
			return ""
		case string:
			return x
		case []any:
			return blocks(x)
		}
		bad = true
		return ""
	}
	if m, ok := top["model"]; ok && m != nil {
		r.model, r.hasModel = str(m)
	}
	r.stream = boolean(top["stream"])
	r.maxTokens, r.hasMaxTokens = integer(top["max_tokens"])
	if t, ok := top["temperature"]; ok && t != nil {
		if n, ok := t.(json.Number); ok {
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				bad = true
			}
			r.temperature, r.hasTemperature = f, err == nil
		} else {
			bad = true
		}
	}
	if p == protoOpenAI {
		r.maxCompletionTokens, r.hasMaxCompletionTokens = integer(top["max_completion_tokens"])
		switch so := top["stream_options"].(type) {
		case nil:
		case map[string]any:
			r.includeUsage = boolean(so["include_usage"])
		default:
			bad = true
		}
	} else {
		switch s := top["system"].(type) {
		case nil:
		case string:
			r.system = append(r.system, s)
		case []any:
			r.system = append(r.system, blocks(s))
		default:
			bad = true
		}
	}
	switch ms := top["messages"].(type) {
	case nil:
	case []any:
		r.hasMessages = true
		for _, e := range ms {
			m, ok := e.(map[string]any)
			if !ok {
				bad = true
				continue
			}
			role, _ := str(m["role"])
			text := content(m["content"])
			if p == protoOpenAI && (role == "system" || role == "developer") {
				r.system = append(r.system, text)
			} else {
				r.user = append(r.user, text)
			}
			r.messages++
		}
	default:
		bad = true
	}
	if bad {
		return r, refType
	}
	return r, refOK
}

func hashParts(parts []string) textHash {
	h := newTextHash()
	for _, p := range parts {
		h.addString(p)
	}
	return h
}

// checkDecode compares the decoder with the reference on body.
func checkDecode(t *testing.T, body []byte, p protocol) {
	t.Helper()
	var r wireRequest
	err := r.decode(body, p)
	ref, class := refDecode(body, p)
	var te *typeError
	switch {
	case err == nil && class != refOK,
		errors.Is(err, errSyntax) && class != refSyntax,
		errors.As(err, &te) && class != refType:
		t.Fatalf("decode(%q) = %v, reference class %d", body, err, class)
	case err != nil && !errors.Is(err, errSyntax) && !errors.As(err, &te):
		t.Fatalf("decode(%q): unexpected error %v", body, err)
	}
	if err != nil || !utf8.Valid(body) {
		return
	}
	got := refRequest{
		model: string(r.model), hasModel: r.hasModel, stream: r.stream, includeUsage: r.includeUsage,
		maxTokens: r.maxTokens, hasMaxTokens: r.hasMaxTokens,
		maxCompletionTokens: r.maxCompletionTokens, hasMaxCompletionTokens: r.hasMaxCompletionTokens,
		temperature: r.temperature, hasTemperature: r.hasTemperature,
		hasMessages: r.hasMessages, messages: r.messages,
	}
	want := ref
	want.system, want.user = nil, nil
	if got.model != want.model || got.hasModel != want.hasModel || got.stream != want.stream || got.includeUsage != want.includeUsage ||
		got.maxTokens != want.maxTokens || got.hasMaxTokens != want.hasMaxTokens ||
		got.maxCompletionTokens != want.maxCompletionTokens || got.hasMaxCompletionTokens != want.hasMaxCompletionTokens ||
		got.temperature != want.temperature || got.hasTemperature != want.hasTemperature ||
		got.hasMessages != want.hasMessages || got.messages != want.messages {
		t.Fatalf("decode(%q):\n got %+v\nwant %+v", body, got, want)
	}
	if sys := hashParts(ref.system); sys.h != r.system.h || sys.tokens != r.system.tokens {
		t.Fatalf("decode(%q): system text differs from %q", body, ref.system)
	}
	if usr := hashParts(ref.user); usr.h != r.user.h || usr.tokens != r.user.tokens {
		t.Fatalf("decode(%q): user text differs from %q", body, ref.user)
	}
}

var decodeCases = []struct {
	name string
	p    protocol
	body string
}{
	{"openai minimal", protoOpenAI, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`},
	{"openai full", protoOpenAI, `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":12,"max_completion_tokens":9,"temperature":0.5,"n":1,"tools":[]}`},
	{"openai developer role and role after content", protoOpenAI, `{"model":"m","messages":[{"content":"rules","role":"developer"},{"content":null,"role":"assistant"}]}`},
	{"escapes", protoOpenAI, `{"mod\u0065l":"g\"p\\t\u00e9\ud83d\ude00\ud800x","messages":[{"role":"user","content":"line\nbreak\t\/"}]}`},
	{"duplicate keys last wins", protoOpenAI, `{"model":1,"model":"m","messages":[{"role":"user","content":5,"content":"ok"}],"messages":[{"content":"second"}]}`},
	{"nulls", protoOpenAI, `{"model":null,"messages":null,"stream":null,"stream_options":null,"max_tokens":null,"temperature":null}`},
	{"wrong type model", protoOpenAI, `{"model":5,"messages":[]}`},
	{"wrong type content", protoOpenAI, `{"model":"m","messages":[{"role":"user","content":{}}]}`},
	{"wrong type block", protoOpenAI, `{"model":"m","messages":[{"role":"user","content":["x"]}]}`},
	{"non-integer max_tokens", protoOpenAI, `{"max_tokens":1.5}`},
	{"huge max_tokens", protoOpenAI, `{"max_tokens":99999999999999999999}`},
	{"syntax after type error", protoOpenAI, `{"model":5,"messages":[}`},
	{"trailing garbage", protoOpenAI, `{"model":"m"} x`},
	{"top-level array", protoOpenAI, `[1,2]`},
	{"empty body", protoOpenAI, ``},
	{"bad number", protoOpenAI, `{"temperature":01}`},
	{"bad escape", protoOpenAI, `{"model":"\x"}`},
	{"control char in string", protoOpenAI, "{\"model\":\"a\x01b\"}"},
	{"anthropic string system", protoAnthropic, `{"model":"claude","max_tokens":5,"system":"Be kind.","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"yo"}]}]}`},
	{"anthropic block system", protoAnthropic, `{"model":"claude","max_tokens":5,"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],"messages":[{"role":"user","content":"hi"}]}`},
	{"anthropic system role message is user text", protoAnthropic, `{"messages":[{"role":"system","content":"x"}]}`},
	{"anthropic ignores stream_options", protoAnthropic, `{"stream_options":5,"max_completion_tokens":"x"}`},
	{"anthropic wrong system", protoAnthropic, `{"system":5}`},
	{"openai system field ignored", protoOpenAI, `{"system":5}`},
}

func TestDecodeMatchesReference(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) { checkDecode(t, []byte(tc.body), tc.p) })
	}
}

// TestDecodeDepth holds the nesting bound to encoding/json's at its edge,
// which the fuzz targets do not reach.
func TestDecodeDepth(t *testing.T) {
	for _, levels := range []int{10000, 10001} {
		nest := strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1)
		t.Run(strconv.Itoa(levels), func(t *testing.T) {
			checkDecode(t, []byte(`{"model":"m","x":`+nest+`}`), protoOpenAI)
			checkDecode(t, []byte(`{"messages":`+nest+`}`), protoOpenAI)
		})
	}
}

func TestDecodeExtracts(t *testing.T) {
	var r wireRequest
	body := `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":12}`
	if err := r.decode([]byte(body), protoOpenAI); err != nil {
		t.Fatal(err)
	}
	seed, in := seedOfStrings("gpt-4o", "Be brief.", "a\nb")
	if got := seedOf(r.model, &r.system, &r.user); got != seed {
		t.Errorf("seed %x, want %x (same as the in-process provider)", got, seed)
	}
	if in != r.system.tokens+r.user.tokens {
		t.Errorf("input tokens %d, want %d", r.system.tokens+r.user.tokens, in)
	}
	if !r.stream || !r.includeUsage || r.maxTokens != 12 || r.messages != 2 {
		t.Errorf("decoded %+v", r)
	}
}

func TestDecodeAllocs(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":12,"temperature":0.7}`)
	var r wireRequest
	_ = r.decode(body, protoOpenAI)
	if a := testing.AllocsPerRun(100, func() { _ = r.decode(body, protoOpenAI) }); a != 0 {
		t.Fatalf("decode allocates %.1f times", a)
	}
}

func FuzzDecodeOpenAI(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecode(t, body, protoOpenAI) })
}

func FuzzDecodeAnthropic(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecode(t, body, protoAnthropic) })
}

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful persona who answers briefly and kindly."},{"role":"user","content":"What is the capital of France, and why is it famous?"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":256,"temperature":0.7}`)
	var r wireRequest
	for b.Loop() {
		if err := r.decode(body, protoOpenAI); err != nil {
			b.Fatal(err)
		}
	}
}
