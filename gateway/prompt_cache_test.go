package gateway

import (
	"strings"
	"testing"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/providers"
)

// TestDecodeAnthropicCacheControl: callers' breakpoints are read where
// Anthropic allows them and refused, by field, where the canonical
// request cannot keep them or Anthropic would refuse them.
func TestDecodeAnthropicCacheControl(t *testing.T) {
	const head = `{"model":"m","max_tokens":5,`
	eph := `{"type":"ephemeral"}`
	eph1h := `{"type":"ephemeral","ttl":"1h"}`
	cases := []struct {
		name, body string
		check      func(t *testing.T, c *conversation)
		wantField  string // a 400 naming it
	}{
		{name: "system blocks, last block of a turn, tool_result, tool",
			body: head + `"system":[{"type":"text","text":"AB","cache_control":` + eph1h + `},{"type":"text","text":"CD"}],` +
				`"tools":[{"name":"f","input_schema":{"type":"object"},"cache_control":` + eph1h + `}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"text","text":"r","cache_control":` + eph + `}]},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok","cache_control":` + eph + `},{"type":"text","text":"go on"}]}]}`,
			check: func(t *testing.T, c *conversation) {
				if len(c.systemCache) != 1 || c.systemCache[0] != (systemBreak{part: 0, at: 2, ttl: providers.Cache1h}) || c.system[0] != "ABCD" {
					t.Errorf("system %q breaks %+v", c.system, c.systemCache)
				}
				ms := c.req.Messages
				if len(ms) != 4 || ms[0].Cache != providers.Cache5m || ms[0].Text != "qr" || ms[1].Cache != providers.CacheNone ||
					ms[2].Role != providers.RoleTool || ms[2].Cache != providers.Cache5m || ms[3].Cache != providers.CacheNone {
					t.Errorf("messages %+v", ms)
				}
				if c.req.Tools[0].Cache != providers.Cache1h {
					t.Errorf("tools %+v", c.req.Tools)
				}
			}},
		{name: "a marker on a block that is not the turn's last",
			body:      head + `"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":` + eph + `},{"type":"text","text":"r"}]}]}`,
			wantField: "messages.0.content.0.cache_control"},
		{name: "five breakpoints",
			body: head + `"system":[{"type":"text","text":"a","cache_control":` + eph + `},{"type":"text","text":"b","cache_control":` + eph + `}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":` + eph + `}]},{"role":"assistant","content":[{"type":"text","text":"a","cache_control":` + eph + `}]},` +
				`{"role":"user","content":[{"type":"text","text":"q","cache_control":` + eph + `}]}]}`,
			wantField: "cache_control"},
		{name: "1h after 5m",
			body:      head + `"system":[{"type":"text","text":"a","cache_control":` + eph + `}],"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":` + eph1h + `}]}]}`,
			wantField: "messages.cache_control"},
		{name: "bad ttl",
			body:      head + `"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":{"type":"ephemeral","ttl":"2h"}}]}]}`,
			wantField: "messages.0.content.0.cache_control.ttl"},
		{name: "bad type",
			body:      head + `"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":{"type":"persistent"}}]}]}`,
			wantField: "messages.0.content.0.cache_control.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var conv conversation
			ae := decodeAnthropicRequest([]byte(c.body), &conv)
			if c.wantField != "" {
				if ae == nil || !strings.HasPrefix(ae.message, c.wantField+": ") {
					t.Fatalf("got %+v, want a 400 naming %s", ae, c.wantField)
				}
				return
			}
			if ae != nil {
				t.Fatalf("refused: %+v", ae)
			}
			c.check(t, &conv)
		})
	}
}

// TestCachePersona: the persona's breakpoint goes right after its prompt
// when the prompt is long enough and a breakpoint is left, with a TTL
// that keeps Anthropic's order; the cache key unless the caller set one.
func TestCachePersona(t *testing.T) {
	long := strings.Repeat("word ", 1000) // ≈1250 estimated tokens
	p := &persona.Persona{ID: "psn_x", Workspace: "wsp_x", SystemPrompt: long}
	model := &Model{PromptCache: PromptCache{TTL: providers.Cache5m, MinTokens: 1024}}
	run := func(p *persona.Persona, m *Model, r providers.Request) *exchange {
		x := &exchange{model: m, req: r}
		cachePersona(x, p, len(p.SystemPrompt))
		return x
	}
	x := run(p, model, providers.Request{System: long + "<digest>"})
	if got := x.req.SystemCache; len(got) != 1 || got[0] != (providers.CacheBreak{At: len(long), TTL: providers.Cache5m}) {
		t.Errorf("breaks %+v", got)
	}
	if x.req.CacheKey != p.CacheKey() || !strings.HasPrefix(p.CacheKey(), "pck_") || strings.Contains(p.CacheKey(), "psn_x") {
		t.Errorf("cache key %q", x.req.CacheKey)
	}
	if run(p, model, providers.Request{CacheKey: "mine"}).req.CacheKey != "mine" {
		t.Error("the caller's prompt_cache_key was replaced")
	}
	short := &persona.Persona{ID: "psn_s", Workspace: "wsp_x", SystemPrompt: "short"}
	if x := run(short, model, providers.Request{}); len(x.req.SystemCache) != 0 || x.req.CacheKey == "" {
		t.Errorf("short prompt: breaks %+v key %q", x.req.SystemCache, x.req.CacheKey)
	}
	off := &Model{PromptCache: PromptCache{Off: true, TTL: providers.Cache5m, MinTokens: 1}}
	if x := run(p, off, providers.Request{}); len(x.req.SystemCache) != 0 || x.req.CacheKey != "" {
		t.Errorf("model off: %+v", x.req)
	}
	pOff := *p
	pOff.PromptCache = "off"
	if x := run(&pOff, model, providers.Request{}); len(x.req.SystemCache) != 0 || x.req.CacheKey != "" {
		t.Errorf("persona off: %+v", x.req)
	}
	// Four caller breakpoints: none left for the persona.
	full := providers.Request{Messages: make([]providers.Message, 4)}
	for i := range full.Messages {
		full.Messages[i].Cache = providers.Cache5m
	}
	if x := run(p, model, full); len(x.req.SystemCache) != 0 {
		t.Errorf("a fifth breakpoint: %+v", x.req.SystemCache)
	}
	// A caller's 1h breakpoint later: the persona's becomes 1h too; its
	// own system breakpoint stays after the persona's.
	later := providers.Request{SystemCache: []providers.CacheBreak{{At: len(long) + 10, TTL: providers.Cache1h}}}
	if got := run(p, model, later).req.SystemCache; len(got) != 2 || got[0] != (providers.CacheBreak{At: len(long), TTL: providers.Cache1h}) || got[1].At != len(long)+10 {
		t.Errorf("order kept: %+v", got)
	}
	// A 5m tool breakpoint before and a 1h message after: no TTL fits.
	stuck := providers.Request{Tools: []providers.Tool{{Name: "f", Cache: providers.Cache5m}}, Messages: []providers.Message{{Cache: providers.Cache1h}}}
	if got := run(p, model, stuck).req.SystemCache; len(got) != 0 {
		t.Errorf("no TTL fits, got %+v", got)
	}
	// Persona TTL overrides the model's.
	p1h := *p
	p1h.PromptCacheTTL = "1h"
	if got := run(&p1h, model, providers.Request{}).req.SystemCache; len(got) != 1 || got[0].TTL != providers.Cache1h {
		t.Errorf("persona ttl: %+v", got)
	}
}
