package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// personaPrompt is a persona prompt long enough to cache: 1,500 of the
// mock's tokens (each word is one), some 1,900 by the gateway's 4-bytes
// estimate, above the 1,024 minimum of both.
var personaPrompt = strings.Repeat("rule ", 1500)

// cacheConfig serves psn_long (the long prompt) and psn_off (the same,
// caching off) on an Anthropic-protocol model and an OpenAI-protocol one,
// both on the mock up, and on a model with caching off.
func cacheConfig(t *testing.T, up *mocktest.Upstream, ttl string) string {
	t.Helper()
	return fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  adminListen: 127.0.0.1:0
  adminToken: %q
log:
  level: error
auth:
  apiKeys:
    - {id: key_demo, workspace: wsp_demo, sha256: %s}
personas:
  items:
    - {id: psn_long, workspace: wsp_demo, name: Long, systemPrompt: %q, defaultModel: an-1}
    - {id: psn_off, workspace: wsp_demo, name: Off, systemPrompt: %[3]q, defaultModel: an-1, promptCache: "off"}
providers:
  - name: oa
    type: openai
    openai: {baseURL: "http://%[4]s/v1", apiKey: sk-test-upstream, timeout: 2s, promptCacheKey: "on"}
  - name: an
    type: anthropic
    anthropic: {baseURL: "http://%[4]s", apiKey: sk-ant-test-upstream, timeout: 2s}
models:
  - {id: an-1, provider: an, upstreamModel: claude-test, inputPricePerMTok: 3, outputPricePerMTok: 15, maxOutputTokens: 100, promptCache: {ttl: %[5]s}}
  - {id: oa-1, provider: oa, upstreamModel: gpt-test, inputPricePerMTok: 2.5, outputPricePerMTok: 10, maxOutputTokens: 100}
  - {id: an-off, provider: an, upstreamModel: claude-test, inputPricePerMTok: 3, outputPricePerMTok: 15, maxOutputTokens: 100, promptCache: {mode: "off"}}
ledger:
  driver: jsonl
  path: %[6]s
  flushInterval: 10ms
`, testAdminToken, hashOf(mocktest.KeyDemo), personaPrompt, up.Addr, ttl, t.TempDir()+"/usage.jsonl")
}

// TestPromptCacheAnthropic: the persona prompt goes as its own system
// block with a breakpoint, the digest after it; the first call writes
// the cache, the next read it whatever the digest, streamed or not, and
// after the TTL it is written again; every cost equals the hand
// computation from the tokens at the configured and derived prices.
func TestPromptCacheAnthropic(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5, PromptCacheTTL5m: 400 * time.Millisecond})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	personaTokens := mock.CountTokens(personaPrompt)
	type call struct {
		digest         string
		stream         bool
		wait           time.Duration
		wantRead       int64
		wantWrite      int64
		wantBreakpoint bool
	}
	calls := []call{
		{digest: "d1", wantWrite: personaTokens, wantBreakpoint: true},
		{digest: "d2 changes every call", wantRead: personaTokens, wantBreakpoint: true},
		{digest: "d3", stream: true, wantRead: personaTokens, wantBreakpoint: true},
		{digest: "d4", wait: 700 * time.Millisecond, wantWrite: personaTokens, wantBreakpoint: true},
	}
	var costs []int64
	for i, c := range calls {
		time.Sleep(c.wait)
		body := fmt.Sprintf(`{"userText":"question %d","memoryDigest":%q,"stream":%v}`, i, c.digest, c.stream)
		var cost, in int64
		if c.stream {
			resp, r := g.OpenStream(mocktest.KeyDemo, "psn_long", body)
			if resp.StatusCode != 200 {
				t.Fatalf("call %d: status %d", i, resp.StatusCode)
			}
			for {
				ev, err := r.Next()
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if ev.Name == "done" {
					cost, in = int64(ev.Data["costUsdMicros"].(float64)), int64(ev.Data["inputTokens"].(float64))
					break
				}
			}
		} else {
			ok := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_long", body))
			cost, in = ok.CostUsdMicros, ok.InputTokens
		}
		costs = append(costs, cost)
		rec, _ := up.Srv.LastRequest()
		var sent struct {
			System []struct {
				Text         string          `json:"text"`
				CacheControl json.RawMessage `json:"cache_control"`
			} `json:"system"`
		}
		if err := json.Unmarshal(rec.Body, &sent); err != nil {
			t.Fatalf("call %d: upstream body %s: %v", i, rec.Body, err)
		}
		if len(sent.System) != 2 || sent.System[0].Text != personaPrompt || string(sent.System[0].CacheControl) != `{"type":"ephemeral"}` ||
			!strings.Contains(sent.System[1].Text, c.digest) || sent.System[1].CacheControl != nil {
			t.Fatalf("call %d: system sent as %+v", i, sent.System)
		}
		if len(rec.CacheBreakpoints) != 1 || rec.CacheBreakpoints[0].Block != "system.0" || rec.CacheBreakpoints[0].PrefixTokens != personaTokens {
			t.Fatalf("call %d: breakpoints %+v", i, rec.CacheBreakpoints)
		}
		if in < personaTokens {
			t.Fatalf("call %d: inputTokens %d is not the whole input", i, in)
		}
	}
	recs := g.readLedger()
	if len(recs) != len(calls) {
		t.Fatalf("%d ledger records, want %d", len(recs), len(calls))
	}
	for i, c := range calls {
		rec := recs[i]
		n := func(k string) int64 { v, _ := rec[k].(float64); return int64(v) }
		if n("cacheReadTokens") != c.wantRead || n("cacheWrite5mTokens") != c.wantWrite || n("cacheWrite1hTokens") != 0 {
			t.Errorf("call %d: record %v, want read %d write %d", i, rec, c.wantRead, c.wantWrite)
		}
		// Claude-priced: input 3, read 0.3 (0.1×), 5m write 3.75 (1.25×), output 15.
		want := (n("inputTokens")-n("cacheReadTokens")-n("cacheWrite5mTokens"))*3_000_000 + n("cacheReadTokens")*300_000 +
			n("cacheWrite5mTokens")*3_750_000 + n("outputTokens")*15_000_000
		want = (want + 500_000) / 1_000_000
		if n("costUsdMicros") != want || costs[i] != want {
			t.Errorf("call %d: cost %d (reply %d), hand computation %d", i, n("costUsdMicros"), costs[i], want)
		}
		noCache := (n("inputTokens")*3_000_000 + n("outputTokens")*15_000_000 + 500_000) / 1_000_000
		if n("cacheSavingsUsdMicros") != noCache-want {
			t.Errorf("call %d: savings %d, want %d", i, n("cacheSavingsUsdMicros"), noCache-want)
		}
		if rec["estimated"] == true {
			t.Errorf("call %d: estimated", i)
		}
	}
	if !(costs[1] < costs[0]/3) {
		t.Errorf("a read (%d µUSD) should cost far less than a write (%d)", costs[1], costs[0])
	}
}

// TestPromptCacheOneHour: a 1h TTL goes on the breakpoint and its writes
// are priced at 2× input.
func TestPromptCacheOneHour(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := startGateway(t, cacheConfig(t, up, "1h"))
	testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_long", `{"userText":"hi"}`))
	rec, _ := up.Srv.LastRequest()
	if len(rec.CacheBreakpoints) != 1 || rec.CacheBreakpoints[0].TTL != "1h" {
		t.Fatalf("breakpoints %+v", rec.CacheBreakpoints)
	}
	r := g.readLedger()[0]
	n := func(k string) int64 { v, _ := r[k].(float64); return int64(v) }
	w := n("cacheWrite1hTokens")
	if w != mock.CountTokens(personaPrompt) || n("cacheWrite5mTokens") != 0 {
		t.Fatalf("record %v", r)
	}
	want := ((n("inputTokens")-w)*3_000_000 + w*6_000_000 + n("outputTokens")*15_000_000 + 500_000) / 1_000_000
	if n("costUsdMicros") != want {
		t.Fatalf("cost %d, hand computation %d", n("costUsdMicros"), want)
	}
}

// TestPromptCacheOpenAI: OpenAI-compatible deployments get the persona's
// stable prompt_cache_key (no id in clear); a repeated long prefix comes
// back as cached_tokens, priced at the derived 0.5× input.
func TestPromptCacheOpenAI(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	var keys []string
	for i := range 3 {
		testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_long", fmt.Sprintf(`{"userText":"question %d","modelId":"oa-1","memoryDigest":"d%d"}`, i, i)))
		rec, _ := up.Srv.LastRequest()
		keys = append(keys, rec.PromptCacheKey)
	}
	if keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] || strings.Contains(keys[0], "psn_long") || strings.Contains(keys[0], "wsp_demo") {
		t.Fatalf("prompt_cache_key %q", keys)
	}
	recs := g.readLedger()
	for i, r := range recs {
		n := func(k string) int64 { v, _ := r[k].(float64); return int64(v) }
		read := n("cacheReadTokens")
		switch {
		case i == 0 && read != 0:
			t.Errorf("first call read %d from the cache", read)
		case i > 0 && (read < 1024 || read%128 != 0 || read > n("inputTokens")):
			t.Errorf("call %d: cached %d of %d", i, read, n("inputTokens"))
		}
		// input 2.5, read 1.25, output 10 (µUSD per token).
		want := ((n("inputTokens")-read)*2_500_000 + read*1_250_000 + n("outputTokens")*10_000_000 + 500_000) / 1_000_000
		if n("costUsdMicros") != want {
			t.Errorf("call %d: cost %d, hand computation %d", i, n("costUsdMicros"), want)
		}
	}
}

// TestPromptCacheOff: a model or persona with caching off sends no
// breakpoint and no key, and Anthropic caches nothing.
func TestPromptCacheOff(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	for _, c := range []struct{ persona, model string }{{"psn_long", "an-off"}, {"psn_off", "an-1"}, {"psn_off", "oa-1"}} {
		for range 2 {
			testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, c.persona, `{"userText":"hi","modelId":"`+c.model+`"}`))
			rec, _ := up.Srv.LastRequest()
			if len(rec.CacheBreakpoints) != 0 || rec.PromptCacheKey != "" {
				t.Fatalf("%s on %s: breakpoints %+v key %q", c.persona, c.model, rec.CacheBreakpoints, rec.PromptCacheKey)
			}
		}
	}
	for _, r := range g.readLedger() {
		// OpenAI caches long prefixes whatever the request says; those
		// reads are still counted (and priced), only the key is not sent.
		if r["model"] != "oa-1" && (r["cacheReadTokens"] != nil || r["cacheWrite5mTokens"] != nil) {
			t.Fatalf("cached with caching off: %v", r)
		}
	}
}

// TestPromptCacheUsageAPI: the usage API sums cache tokens and savings
// per model and persona, as the records say.
func TestPromptCacheUsageAPI(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	for i := range 3 {
		testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_long", fmt.Sprintf(`{"userText":"q%d"}`, i)))
	}
	var sum struct {
		Total struct {
			Requests, InputTokens, CacheReadTokens, CacheWrite5mTokens, CostUsdMicros, CacheSavingsUsdMicros int64
		}
		ByPersona []struct {
			Name            string
			CacheReadTokens int64
		}
	}
	testkit.Eventually(t, 5*time.Second, "three records in the usage API", func() bool {
		r := g.admin(http.MethodGet, "/admin/workspaces/wsp_demo/usage?from=2000-01-01", "")
		if r.Status != 200 || json.Unmarshal(r.Body, &sum) != nil {
			t.Fatalf("usage API: %d %s", r.Status, r.Body)
		}
		return sum.Total.Requests == 3
	})
	p := mock.CountTokens(personaPrompt)
	if sum.Total.CacheWrite5mTokens != p || sum.Total.CacheReadTokens != 2*p || sum.Total.CacheSavingsUsdMicros <= 0 ||
		len(sum.ByPersona) != 1 || sum.ByPersona[0].CacheReadTokens != 2*p {
		t.Fatalf("usage %+v", sum)
	}
	st := up.Srv.Stats()
	if st.PromptCacheReadTokens != sum.Total.CacheReadTokens || st.PromptCacheWriteTokens != sum.Total.CacheWrite5mTokens {
		t.Fatalf("upstream reported read %d write %d, ledger %d %d", st.PromptCacheReadTokens, st.PromptCacheWriteTokens,
			sum.Total.CacheReadTokens, sum.Total.CacheWrite5mTokens)
	}
}

// TestPromptCacheAnthropicSDK: through the official SDK, the caller's own
// cache_control markers reach the Anthropic deployment untouched beside
// the persona's, and the usage the SDK reads is Anthropic's: input_tokens
// uncached, the cache's reads and writes beside it.
func TestPromptCacheAnthropicSDK(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	c := g.AnthropicSDK(mocktest.KeyDemo)
	tools := strings.Repeat("tool ", 1100)
	params := anthropic.MessageNewParams{
		Model:     "persona/psn_long",
		MaxTokens: 20,
		System: []anthropic.TextBlockParam{{Text: "Caller rules. " + tools,
			CacheControl: anthropic.CacheControlEphemeralParam{TTL: anthropic.CacheControlEphemeralTTLTTL5m}}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	}
	var usages []anthropic.Usage
	for range 2 {
		res, err := c.Messages.New(testkit.SDKContext(t), params)
		if err != nil {
			t.Fatal(err)
		}
		usages = append(usages, res.Usage)
		rec, _ := up.Srv.LastRequest()
		if len(rec.CacheBreakpoints) != 2 || rec.CacheBreakpoints[0].Block != "system.0" || rec.CacheBreakpoints[1].Block != "system.1" {
			t.Fatalf("breakpoints %+v", rec.CacheBreakpoints)
		}
	}
	p := mock.CountTokens(personaPrompt)
	first, second := usages[0], usages[1]
	if first.CacheReadInputTokens != 0 || first.CacheCreationInputTokens <= p {
		t.Fatalf("first call usage %+v: want the persona and the caller's block written", first)
	}
	if second.CacheCreationInputTokens != 0 || second.CacheReadInputTokens != first.CacheCreationInputTokens ||
		second.InputTokens != first.InputTokens {
		t.Fatalf("second call usage %+v after %+v", second, first)
	}
	// Five markers are refused by name, before any upstream call.
	five := params
	five.System = nil
	for i := range 5 {
		five.System = append(five.System, anthropic.TextBlockParam{Text: fmt.Sprintf("block %d", i),
			CacheControl: anthropic.NewCacheControlEphemeralParam()})
	}
	_, err := c.Messages.New(testkit.SDKContext(t), five)
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Error(), "A maximum of 4 blocks with cache_control") {
		t.Fatalf("five breakpoints: %v", err)
	}
}

// TestPromptCacheCutStream: a stream cut after a few tokens keeps the
// cache counts message_start reported, and its record stays estimated.
func TestPromptCacheCutStream(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 20, CutAfterTokens: 3})
	g := startGateway(t, cacheConfig(t, up, "5m"))
	resp, r := g.OpenStream(mocktest.KeyDemo, "psn_long", `{"userText":"hi","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for {
		ev, err := r.Next()
		if err != nil || ev.Name == "error" || ev.Name == "done" {
			break
		}
	}
	resp.Body.Close()
	recs := g.readLedger()
	if len(recs) != 1 || recs[0]["estimated"] != true || int64(recs[0]["cacheWrite5mTokens"].(float64)) != mock.CountTokens(personaPrompt) {
		t.Fatalf("records %v", recs)
	}
}
