package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
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

// refMark is a cache_control breakpoint as refMarkers reads it.
type refMark struct {
	block  string
	ttl    string
	tokens int64
}

// refMarkers reads a decodable Anthropic body's breakpoints with
// encoding/json, by the rules cache_scan.go implements: the reference
// for FuzzAnthropicMarkers.
func refMarkers(body []byte) (marks []refMark, problem string) {
	var top map[string]any
	if json.Unmarshal(body, &top) != nil {
		return nil, "unreadable"
	}
	var tokens int64
	bad := ""
	// mark reads a block's marker; "" for none.
	mark := func(path string, blk map[string]any) string {
		cc, ok := blk["cache_control"]
		if !ok || cc == nil {
			return ""
		}
		m, ok := cc.(map[string]any)
		if !ok {
			if bad == "" {
				bad = path + ".cache_control: Input should be a valid dictionary"
			}
			return ""
		}
		typ, ok := m["type"]
		if !ok {
			if bad == "" {
				bad = path + ".cache_control.type: Field required"
			}
			return ""
		}
		if typ != "ephemeral" {
			if bad == "" {
				bad = path + ".cache_control.type: Input should be 'ephemeral'"
			}
			return ""
		}
		switch ttl := m["ttl"]; ttl {
		case nil, "5m":
			return "5m"
		case "1h":
			return "1h"
		}
		if bad == "" {
			bad = path + ".cache_control.ephemeral.ttl: Input should be '5m' or '1h'"
		}
		return ""
	}
	block := func(path string, el any) {
		blk, ok := el.(map[string]any)
		if !ok {
			return
		}
		typ, _ := blk["type"].(string)
		if typ == "text" {
			text, _ := blk["text"].(string)
			tokens += CountTokens(text)
		}
		ttl := mark(path, blk)
		if ttl != "" && (typ == "thinking" || typ == "redacted_thinking") && bad == "" {
			bad = path + "." + typ + ".cache_control: Extra inputs are not permitted"
		}
		if ttl != "" {
			marks = append(marks, refMark{path, ttl, tokens})
		}
	}
	if tools, ok := top["tools"].([]any); ok {
		for i, el := range tools {
			block("tools."+strconv.Itoa(i), el)
		}
	}
	switch sys := top["system"].(type) {
	case string:
		tokens += CountTokens(sys)
	case []any:
		for i, el := range sys {
			block("system."+strconv.Itoa(i), el)
		}
	}
	msgs, _ := top["messages"].([]any)
	for i, m := range msgs {
		msg, _ := m.(map[string]any)
		switch c := msg["content"].(type) {
		case string:
			tokens += CountTokens(c)
		case []any:
			for j, el := range c {
				block("messages."+strconv.Itoa(i)+".content."+strconv.Itoa(j), el)
			}
		}
	}
	if bad != "" {
		return nil, bad
	}
	if len(marks) > 4 {
		return nil, "A maximum of 4 blocks with cache_control may be provided. Found " + strconv.Itoa(len(marks)) + "."
	}
	seen5m := false
	for _, m := range marks {
		if m.ttl == "1h" && seen5m {
			return nil, m.block + ".cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."
		}
		seen5m = seen5m || m.ttl == "5m"
	}
	return marks, ""
}

// checkMarkers compares the decoder's marker pass with refMarkers.
func checkMarkers(t *testing.T, body []byte) {
	t.Helper()
	var r wireRequest
	if r.decodeScan(body, protoAnthropic, true, 0) != nil || !utf8.Valid(body) {
		return
	}
	if _, class := refDecode(body, protoAnthropic); class != refOK {
		return
	}
	pts, msg := r.cache.anthropicPoints(r.model, nil)
	want, wantMsg := refMarkers(body)
	if msg != wantMsg {
		t.Fatalf("markers of %q: problem %q, want %q", body, msg, wantMsg)
	}
	var got []refMark
	for _, p := range pts {
		if p.ttl != ttlNone {
			ttl := "5m"
			if p.ttl == ttl1h {
				ttl = "1h"
			}
			got = append(got, refMark{blockPath(int(p.sec), p.i, p.j), ttl, p.tokens})
		}
	}
	if msg == "" && !slices.Equal(got, want) {
		t.Fatalf("markers of %q:\n got %+v\nwant %+v", body, got, want)
	}
	// The marker pass changes nothing else the decoder reports.
	var plain wireRequest
	_ = plain.decode(body, protoAnthropic)
	if plain.system != r.system || plain.user != r.user || plain.messages != r.messages {
		t.Fatalf("decode of %q differs with the marker pass", body)
	}
	if total := r.system.tokens + r.user.tokens; len(pts) > 0 && pts[len(pts)-1].tokens > total {
		t.Fatalf("prefix of %d tokens beyond the input %d", pts[len(pts)-1].tokens, total)
	}
}

var markerCases = []string{
	`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"a b","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}`,
	`{"tools":[{"name":"t","cache_control":{"type":"ephemeral","ttl":"1h"}},5],"system":"s","messages":[{"content":[{"type":"image","source":{},"cache_control":{"type":"ephemeral","ttl":"5m"}},{"type":"text","text":"x","cache_control":null}]}]}`,
	`{"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral","ttl":"10m"}}],"system":[{"type":"text","text":"b","cache_control":{"type":"ephemeral"}}]}`,
	`{"messages":[{"content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}],"content":"b"},{"role":"assistant","content":[{"type":"thinking","cache_control":{"type":"ephemeral"}}]}]}`,
	`{"messages":[{"content":[{"type":"text","text":"a","cache_control":5,"cache_control":{"type":"ephemeral"}},{"type":"text","cache_control":{"ttl":"1h"}}]}]}`,
	`{"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b","cache_control":{"type":"ephemeral","ttl":"1h"}}]}`,
	`{"tools":[{"cache_control":{"type":"ephemeral"}},{"cache_control":{"type":"ephemeral"}},{"cache_control":{"type":"ephemeral"}},{"cache_control":{"type":"ephemeral"}},{"cache_control":{"type":"ephemeral"}}]}`,
	`{"system":[{"type":"text","text":"a","cache\u005fcontrol":{"type":"ephem\u0065ral","ttl":"1\u0068"}}]}`,
}

func TestMarkersMatchReference(t *testing.T) {
	for i, body := range markerCases {
		t.Run(strconv.Itoa(i), func(t *testing.T) { checkMarkers(t, []byte(body)) })
	}
}

func FuzzAnthropicMarkers(f *testing.F) {
	for _, body := range markerCases {
		f.Add([]byte(body))
	}
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkMarkers(t, body) })
}

// FuzzOpenAIScan: the checkpoint pass changes nothing the decoder
// reports, and counts exactly the input's tokens.
func FuzzOpenAIScan(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var plain, scan wireRequest
		errPlain := plain.decode(body, protoOpenAI)
		errScan := scan.decodeScan(body, protoOpenAI, true, 1)
		if (errPlain == nil) != (errScan == nil) {
			t.Fatalf("decode of %q: %v, with the pass %v", body, errPlain, errScan)
		}
		if errPlain != nil {
			return
		}
		if plain.system != scan.system || plain.user != scan.user || plain.messages != scan.messages {
			t.Fatalf("decode of %q differs with the pass", body)
		}
		if n, in := scan.cache.sec[secMessages].ph.n, scan.system.tokens+scan.user.tokens; n != in {
			t.Fatalf("pass of %q counts %d tokens, input %d", body, n, in)
		}
	})
}
