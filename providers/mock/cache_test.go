package mock

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the cache's clock in tests: time moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startCacheServer is startServer with the cache on a fake clock (set
// before serving, so no request races with it).
func startCacheServer(t *testing.T, cfg ServerConfig) (*Server, string, *fakeClock) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := NewServer(cfg)
	s.now = clock.now
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String(), clock
}

// words is a text of n tokens by CountTokens.
func words(n int, w string) string { return strings.TrimSpace(strings.Repeat(w+" ", n)) }

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// anBlock is a text block, marked when ttl is "5m", "1h" or "default"
// (a marker without ttl).
func anBlock(text, ttl string) string {
	b := `{"type":"text","text":` + jsonStr(text)
	switch ttl {
	case "":
	case "default":
		b += `,"cache_control":{"type":"ephemeral"}`
	default:
		b += `,"cache_control":{"type":"ephemeral","ttl":"` + ttl + `"}`
	}
	return b + "}"
}

func anCacheBody(stream bool, system []string, user string) string {
	s := `{"model":"claude-sonnet","max_tokens":50,"system":[` + strings.Join(system, ",") + `],"messages":[{"role":"user","content":` + jsonStr(user) + `}]`
	if stream {
		s += `,"stream":true`
	}
	return s + "}"
}

// anthropicUsage sends body and returns the usage reported: the reply's,
// or message_start's checked against message_delta's cumulative one.
func anthropicUsage(t *testing.T, addr, body string, stream bool) anUsage {
	t.Helper()
	r := call(t, "POST", addr, "/v1/messages", body, "anthropic-version", anthropicVersion)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if !stream {
		var m anMessage
		strict(t, r.body, &m)
		return m.Usage
	}
	var start anUsage
	var delta anDeltaUsage
	for _, ev := range parseSSE(t, r.body) {
		switch ev.name {
		case "message_start":
			var v struct {
				Type    string `json:"type"`
				Message struct {
					anMessage
				} `json:"message"`
			}
			strict(t, []byte(ev.data), &v)
			start = v.Message.Usage
		case "message_delta":
			var v struct {
				Type  string          `json:"type"`
				Delta json.RawMessage `json:"delta"`
				Usage anDeltaUsage    `json:"usage"`
			}
			strict(t, []byte(ev.data), &v)
			delta = v.Usage
		}
	}
	if delta.InputTokens != start.InputTokens || delta.CacheCreationInputTokens != start.CacheCreationInputTokens ||
		delta.CacheReadInputTokens != start.CacheReadInputTokens {
		t.Fatalf("message_delta usage %+v does not repeat message_start's %+v", delta, start)
	}
	start.OutputTokens = delta.OutputTokens
	return start
}

// cacheCounts is the part of a usage a cache test checks.
type cacheCounts struct{ input, read, write, w5m, w1h int64 }

func countsOf(u anUsage) cacheCounts {
	return cacheCounts{u.InputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.CacheCreation.Ephemeral5m, u.CacheCreation.Ephemeral1h}
}

func TestAnthropicPromptCache(t *testing.T) {
	persona := words(2000, "word")   // 2,000 tokens
	user := "Where is the treasure?" // 5 tokens
	in := int64(2000 + CountTokens(user))
	type step struct {
		name    string
		advance time.Duration
		system  []string
		want    cacheCounts
	}
	marked := []string{anBlock(persona, "default")}
	tests := []struct {
		name  string
		cfg   ServerConfig
		steps []step
	}{
		{"write, read, expire, write", ServerConfig{}, []step{
			{"first call writes", 0, marked, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
			{"second call reads", time.Minute, marked, cacheCounts{in - 2000, 2000, 0, 0, 0}},
			{"a read refreshed the TTL", 4*time.Minute + 59*time.Second, marked, cacheCounts{in - 2000, 2000, 0, 0, 0}},
			{"after the TTL it writes again", 5*time.Minute + time.Second, marked, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
		}},
		{"no marker, no caching", ServerConfig{}, []step{
			{"first", 0, []string{anBlock(persona, "")}, cacheCounts{in, 0, 0, 0, 0}},
			{"second", time.Second, []string{anBlock(persona, "")}, cacheCounts{in, 0, 0, 0, 0}},
		}},
		{"a changing block after the breakpoint", ServerConfig{}, []step{
			{"digest 1", 0, []string{anBlock(persona, "5m"), anBlock("digest one", "")}, cacheCounts{in + 2 - 2000, 0, 2000, 2000, 0}},
			{"digest 2 reads the persona", time.Second, []string{anBlock(persona, "5m"), anBlock("digest two two", "")}, cacheCounts{in + 3 - 2000, 2000, 0, 0, 0}},
		}},
		{"a changed persona misses", ServerConfig{}, []step{
			{"persona 1", 0, marked, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
			{"persona 2", time.Second, []string{anBlock(words(2000, "other"), "5m")}, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
		}},
		{"below the minimum nothing is written", ServerConfig{AnthropicMinCacheTokens: 2001}, []step{
			{"first", 0, marked, cacheCounts{in, 0, 0, 0, 0}},
			{"second", time.Second, marked, cacheCounts{in, 0, 0, 0, 0}},
		}},
		{"5m and 1h split", ServerConfig{}, []step{
			{"write both", 0, []string{anBlock(words(1200, "word"), "1h"), anBlock(words(800, "more"), "5m")}, cacheCounts{in - 2000, 0, 2000, 800, 1200}},
			{"read both", time.Minute, []string{anBlock(words(1200, "word"), "1h"), anBlock(words(800, "more"), "5m")}, cacheCounts{in - 2000, 2000, 0, 0, 0}},
			{"5m gone, 1h read, 5m rewritten", 10 * time.Minute, []string{anBlock(words(1200, "word"), "1h"), anBlock(words(800, "more"), "5m")}, cacheCounts{in - 2000, 1200, 800, 800, 0}},
		}},
		{"a short first breakpoint is written with the last", ServerConfig{}, []step{
			{"write", 0, []string{anBlock(words(100, "word"), "1h"), anBlock(words(1900, "more"), "5m")}, cacheCounts{in - 2000, 0, 2000, 1900, 100}},
			{"read the last", time.Second, []string{anBlock(words(100, "word"), "1h"), anBlock(words(1900, "more"), "5m")}, cacheCounts{in - 2000, 2000, 0, 0, 0}},
		}},
		{"caching off", ServerConfig{PromptCacheOff: true}, []step{
			{"first", 0, marked, cacheCounts{in, 0, 0, 0, 0}},
			{"second", time.Second, marked, cacheCounts{in, 0, 0, 0, 0}},
		}},
		{"a shorter TTL", ServerConfig{PromptCacheTTL5m: 100 * time.Millisecond}, []step{
			{"write", 0, marked, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
			{"read", 99 * time.Millisecond, marked, cacheCounts{in - 2000, 2000, 0, 0, 0}},
			{"expired", 101 * time.Millisecond, marked, cacheCounts{in - 2000, 0, 2000, 2000, 0}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Streamed and not, from a fresh cache each: the same counts.
			for _, stream := range []bool{false, true} {
				_, addr, clock := startCacheServer(t, tc.cfg)
				for _, st := range tc.steps {
					clock.advance(st.advance)
					u := anthropicUsage(t, addr, anCacheBody(stream, st.system, user), stream)
					if got := countsOf(u); got != st.want {
						t.Errorf("stream=%v %s: got %+v, want %+v", stream, st.name, got, st.want)
					}
					if u.OutputTokens != DefaultOutputTokens {
						t.Errorf("output_tokens %d", u.OutputTokens)
					}
				}
			}
		})
	}
}

// TestAnthropicCacheLookback: a breakpoint moved to a later block still
// reads the prefix an earlier request cached at a block it no longer
// marks (Anthropic looks back up to 20 blocks).
func TestAnthropicCacheLookback(t *testing.T) {
	_, addr, _ := startCacheServer(t, ServerConfig{})
	turn1 := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` + anBlock(words(1500, "word"), "5m") + `]}]}`
	turn2 := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` + anBlock(words(1500, "word"), "") + `]},` +
		`{"role":"assistant","content":"ok"},{"role":"user","content":[` + anBlock(words(100, "more"), "5m") + `]}]}`
	if got := countsOf(anthropicUsage(t, addr, turn1, false)); got != (cacheCounts{0, 0, 1500, 1500, 0}) {
		t.Fatalf("turn 1: %+v", got)
	}
	if got := countsOf(anthropicUsage(t, addr, turn2, false)); got != (cacheCounts{0, 1500, 101, 101, 0}) {
		t.Fatalf("turn 2: %+v", got)
	}
}

func TestAnthropicCacheMarkerErrors(t *testing.T) {
	_, addr, _ := startCacheServer(t, ServerConfig{})
	five := strings.Repeat(anBlock("x", "5m")+",", 4) + anBlock("x", "5m")
	tests := []struct {
		name, body, want string
	}{
		{"five markers", `{"model":"m","max_tokens":5,"system":[` + five + `],"messages":[{"role":"user","content":"hi"}]}`,
			"A maximum of 4 blocks with cache_control may be provided. Found 5."},
		{"five across tools, system and messages", `{"model":"m","max_tokens":5,"tools":[{"name":"a","input_schema":{},"cache_control":{"type":"ephemeral"}}],"system":[` +
			anBlock("a", "5m") + `,` + anBlock("b", "5m") + `],"messages":[{"role":"user","content":[` + anBlock("c", "5m") + `,` + anBlock("d", "5m") + `]}]}`,
			"A maximum of 4 blocks with cache_control may be provided. Found 5."},
		{"1h after 5m", `{"model":"m","max_tokens":5,"system":[` + anBlock("a", "5m") + `],"messages":[{"role":"user","content":[` + anBlock("b", "1h") + `]}]}`,
			"messages.0.content.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."},
		{"1h after a 5m tool", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":[` + anBlock("a", "1h") + `],"tools":[{"name":"a","cache_control":{"type":"ephemeral"}}]}`,
			"system.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."},
		{"bad ttl", `{"model":"m","max_tokens":5,"system":[` + anBlock("a", "10m") + `],"messages":[{"role":"user","content":"hi"}]}`,
			"system.0.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"},
		{"bad type", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"persistent"}}]}]}`,
			"messages.0.content.0.cache_control.type: Input should be 'ephemeral'"},
		{"not an object", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":"ephemeral"}]}]}`,
			"messages.0.content.0.cache_control: Input should be a valid dictionary"},
		{"thinking block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s","cache_control":{"type":"ephemeral"}}]}]}`,
			"messages.1.content.0.thinking.cache_control: Extra inputs are not permitted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", addr, "/v1/messages", tc.body, "anthropic-version", anthropicVersion)
			var e anError
			strict(t, r.body, &e)
			if r.status != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" || e.Error.Message != tc.want {
				t.Fatalf("status %d %+v, want 400 %q", r.status, e, tc.want)
			}
		})
	}
	// Four, 1h before 5m, and null markers are fine.
	ok := `{"model":"m","max_tokens":5,"tools":[{"name":"a","cache_control":{"type":"ephemeral","ttl":"1h"}}],"system":[` +
		anBlock("a", "1h") + `,{"type":"text","text":"n","cache_control":null}],"messages":[{"role":"user","content":[` + anBlock("c", "5m") + `,` + anBlock("d", "default") + `]}]}`
	if r := call(t, "POST", addr, "/v1/messages", ok, "anthropic-version", anthropicVersion); r.status != 200 {
		t.Fatalf("valid markers: status %d: %s", r.status, r.body)
	}
}

// TestRecordedCacheMarkers: a test can see which markers (and which
// prompt_cache_key) reached the mock.
func TestRecordedCacheMarkers(t *testing.T) {
	s, addr, _ := startCacheServer(t, ServerConfig{})
	body := `{"model":"m","max_tokens":5,"tools":[{"name":"a","description":"d","input_schema":{},"cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
		`"system":[` + anBlock(words(30, "word"), "1h") + `,` + anBlock("digest", "") + `],` +
		`"messages":[{"role":"user","content":"hello there"},{"role":"assistant","content":[{"type":"text","text":"hi"}]},` +
		`{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}},` + anBlock("and this", "5m") + `]}]}`
	if r := call(t, "POST", addr, "/v1/messages", body, "anthropic-version", anthropicVersion); r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	rec, _ := s.LastRequest()
	want := []CacheBreakpoint{
		{Block: "tools.0", TTL: "1h", PrefixTokens: 0},
		{Block: "system.0", TTL: "1h", PrefixTokens: 30},
		{Block: "messages.2.content.1", TTL: "5m", PrefixTokens: 30 + 1 + 2 + 1 + 2},
	}
	if len(rec.CacheBreakpoints) != len(want) {
		t.Fatalf("breakpoints %+v, want %+v", rec.CacheBreakpoints, want)
	}
	for i := range want {
		if rec.CacheBreakpoints[i] != want[i] {
			t.Errorf("breakpoint %d: %+v, want %+v", i, rec.CacheBreakpoints[i], want[i])
		}
	}

	oa := `{"model":"gpt-4o","prompt_cache_key":"persona-7f3a","messages":[{"role":"user","content":"hi"}]}`
	if r := call(t, "POST", addr, "/v1/chat/completions", oa); r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if rec, _ := s.LastRequest(); rec.PromptCacheKey != "persona-7f3a" || rec.CacheBreakpoints != nil {
		t.Fatalf("recorded %q %+v", rec.PromptCacheKey, rec.CacheBreakpoints)
	}
}

func oaCacheBody(stream bool, key string, system, user string) string {
	s := `{"model":"gpt-4o-mini","messages":[{"role":"system","content":` + jsonStr(system) + `},{"role":"user","content":` + jsonStr(user) + `}]`
	if key != "" {
		s += `,"prompt_cache_key":` + jsonStr(key)
	}
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return s + "}"
}

func openAIUsage(t *testing.T, addr, body string, stream bool) oaUsage {
	t.Helper()
	r := call(t, "POST", addr, "/v1/chat/completions", body)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if stream {
		_, _, u := openAIStream(t, r.body, true)
		return *u
	}
	var c oaCompletion
	strict(t, r.body, &c)
	return c.Usage
}

func TestOpenAIPromptCache(t *testing.T) {
	persona := words(1300, "word")
	type step struct {
		name          string
		advance       time.Duration
		key, sys, usr string
		prompt        int64
		cached        int64
	}
	tests := []struct {
		name  string
		cfg   ServerConfig
		steps []step
	}{
		{"repeat, shared prefix, expiry", ServerConfig{}, []step{
			{"first", 0, "", persona, "hello there", 1302, 0},
			{"repeat: 128-token steps", time.Minute, "", persona, "hello there", 1302, 1280},
			{"longer prompt, same persona", time.Minute, "", persona, words(700, "other"), 2000, 1280},
			{"and again: its own steps", time.Minute, "", persona, words(700, "other"), 2000, 1920},
			{"idle past the TTL", 5*time.Minute + time.Second, "", persona, words(700, "other"), 2000, 0},
		}},
		{"prompt_cache_key namespaces", ServerConfig{}, []step{
			{"key a", 0, "a", persona, "hi", 1301, 0},
			{"key b misses", time.Second, "b", persona, "hi", 1301, 0},
			{"key a hits", time.Second, "a", persona, "hi", 1301, 1280},
			{"no key misses", time.Second, "", persona, "hi", 1301, 0},
		}},
		{"below 1,024 tokens", ServerConfig{}, []step{
			{"first", 0, "", words(1000, "word"), "hi", 1001, 0},
			{"second", time.Second, "", words(1000, "word"), "hi", 1001, 0},
		}},
		{"exactly 1,024", ServerConfig{}, []step{
			{"first", 0, "", words(1023, "word"), "hi", 1024, 0},
			{"second", time.Second, "", words(1023, "word"), "hi", 1024, 1024},
		}},
		{"a changed early token misses", ServerConfig{}, []step{
			{"first", 0, "", persona, "hi", 1301, 0},
			{"second", time.Second, "", "Changed " + persona, "hi", 1303, 0},
		}},
		{"caching off", ServerConfig{PromptCacheOff: true}, []step{
			{"first", 0, "", persona, "hi", 1301, 0},
			{"second", time.Second, "", persona, "hi", 1301, 0},
		}},
		{"lower minimum", ServerConfig{OpenAIMinCacheTokens: 10}, []step{
			{"first", 0, "", words(200, "word"), "hi", 201, 0},
			{"second", time.Second, "", words(200, "word"), "hi", 201, 138},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				_, addr, clock := startCacheServer(t, tc.cfg)
				for _, st := range tc.steps {
					clock.advance(st.advance)
					u := openAIUsage(t, addr, oaCacheBody(stream, st.key, st.sys, st.usr), stream)
					if u.PromptTokens != st.prompt || u.PromptTokensDetails.CachedTokens != st.cached {
						t.Errorf("stream=%v %s: prompt %d cached %d, want %d %d", stream, st.name,
							u.PromptTokens, u.PromptTokensDetails.CachedTokens, st.prompt, st.cached)
					}
				}
			}
		})
	}
}

// TestOpenAICacheContentParts: checkpoints inside a text part do not
// depend on what follows them, and other parts (an image) are part of
// the prefix.
func TestOpenAICacheContentParts(t *testing.T) {
	_, addr, _ := startCacheServer(t, ServerConfig{})
	body := func(image, tail string) string {
		return `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + image + `"}},{"type":"text","text":` +
			jsonStr(words(1200, "word")+" "+tail) + `}]}]}`
	}
	steps := []struct {
		image, tail string
		want        int64
	}{
		{"a.png", "first", 0},
		{"a.png", "second tail", 1152},
		{"b.png", "second tail", 0},
	}
	for i, st := range steps {
		if u := openAIUsage(t, addr, body(st.image, st.tail), false); u.PromptTokensDetails.CachedTokens != st.want {
			t.Fatalf("call %d: cached %d, want %d", i, u.PromptTokensDetails.CachedTokens, st.want)
		}
	}
}

// TestOpenAICacheToolsArePartOfThePrefix: a change of tools misses, as
// OpenAI asks for identical tools.
func TestOpenAICacheToolsArePartOfThePrefix(t *testing.T) {
	_, addr, _ := startCacheServer(t, ServerConfig{})
	body := func(tool string) string {
		return `{"model":"m","messages":[{"role":"user","content":` + jsonStr(words(1100, "word")) + `}],"tools":[{"type":"function","function":{"name":"` + tool + `","parameters":{}}}],"tool_choice":"none"}`
	}
	for i, want := range []int64{0, 1024, 0} {
		tool := "a"
		if i == 2 {
			tool = "b"
		}
		if u := openAIUsage(t, addr, body(tool), false); u.PromptTokensDetails.CachedTokens != want {
			t.Fatalf("call %d: cached %d, want %d", i, u.PromptTokensDetails.CachedTokens, want)
		}
	}
}

func TestPromptCacheStatsAndFlush(t *testing.T) {
	s, addr, _ := startCacheServer(t, ServerConfig{})
	body := anCacheBody(false, []string{anBlock(words(1500, "word"), "5m")}, "hi")
	anthropicUsage(t, addr, body, false)
	anthropicUsage(t, addr, body, false)
	st := s.Stats()
	if st.PromptCacheWriteTokens != 1500 || st.PromptCacheReadTokens != 1500 || st.PromptCacheEntries != 1 {
		t.Fatalf("stats %+v", st)
	}
	if r := call(t, "DELETE", addr, "/_mock/cache", ""); r.status != 200 {
		t.Fatalf("flush: %d %s", r.status, r.body)
	}
	if got := countsOf(anthropicUsage(t, addr, body, false)); got.write != 1500 || got.read != 0 {
		t.Fatalf("after flush: %+v", got)
	}
}

func TestPromptCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newPromptCache()
	const max = 3
	for k := uint64(1); k <= 3; k++ {
		c.put(k, 0, time.Hour, max)
	}
	if !c.hit(1, 1) { // 1 is now the most recent; 2 the least
		t.Fatal("1 missing")
	}
	c.put(4, 2, time.Hour, max)
	for k, want := range map[uint64]bool{1: true, 2: false, 3: true, 4: true} {
		if got := c.hit(k, 3); got != want {
			t.Errorf("key %d present %v, want %v", k, got, want)
		}
	}
	if n := c.len(); n != max {
		t.Errorf("len %d", n)
	}
	// Expired entries go when found, and their slots are reused.
	c.put(5, 10, time.Nanosecond, max)
	if c.hit(5, 11) || c.len() != max-1 {
		t.Fatalf("expired entry still there (len %d)", c.len())
	}
	c.put(6, 12, time.Hour, max)
	if len(c.ents) > max+1 {
		t.Errorf("%d slots for %d entries", len(c.ents), max)
	}
}

func TestPromptCacheConcurrent(t *testing.T) {
	_, addr, _ := startCacheServer(t, ServerConfig{PromptCacheMaxEntries: 8})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				body := anCacheBody(false, []string{anBlock(words(1100, "w"+strconv.Itoa(i%5)), "5m")}, "hi")
				r := call(t, "POST", addr, "/v1/messages", body, "anthropic-version", anthropicVersion)
				var m anMessage
				strict(t, r.body, &m)
				if u := m.Usage; u.InputTokens+u.CacheReadInputTokens+u.CacheCreationInputTokens != 1101 {
					t.Errorf("usage %+v does not add up", u)
				}
				oa := oaCacheBody(false, strconv.Itoa(i%3), words(1100, "word"), "hi")
				if u := openAIUsage(t, addr, oa, false); u.PromptTokens != 1101 {
					t.Errorf("prompt_tokens %d", u.PromptTokens)
				}
			}
		}()
	}
	wg.Wait()
}
