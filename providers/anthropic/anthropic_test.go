package anthropic

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

const fakeKey = "sk-ant-api03-SECRETSECRET0123456789"

func textDelta(text string) string {
	t, _ := json.Marshal(text)
	return "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":" + string(t) + "}}\n\n"
}

// The example stream of Anthropic's streaming documentation, cache usage
// added.
const (
	msgStart   = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n"
	blockStart = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	ping       = "event: ping\ndata: {\"type\": \"ping\"}\n\n"
	thinking   = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\n\n"
	jsonDelta  = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
	blockStop  = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	msgDelta   = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
	msgStop    = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded " + fakeKey + "\"}}\n\n"
	apiError   = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\n"
)

func testConfig(url string) Config {
	return Config{HTTPConfig: providers.HTTPConfig{BaseURL: url, APIKey: fakeKey, Timeout: 2 * time.Second, FirstTokenTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}}
}

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New("ant-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var baseReq = providers.Request{
	Model:           "claude-sonnet-4-5",
	System:          "You are \"Moon\".\nBe brief.",
	UserText:        "Hi <there> \u2028 \x01 é",
	Temperature:     0.25,
	HasTemperature:  true,
	MaxOutputTokens: 512,
}

// proto is the Anthropic messages protocol as the shared suite sees it.
var proto = providertest.Protocol{
	Path: "/v1/messages",
	Key:  fakeKey,
	New: func(tb testing.TB, url string, edit func(*providers.HTTPConfig)) providers.Provider {
		cfg := testConfig(url)
		if edit != nil {
			edit(&cfg.HTTPConfig)
		}
		return newProvider(tb, cfg)
	},
	Headers: func(t *testing.T, h http.Header) {
		t.Helper()
		if h.Get("x-api-key") != fakeKey || h.Get("anthropic-version") != "2023-06-01" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("Authorization") != "" {
			t.Errorf("headers = %v", h)
		}
	},
	StreamBody: func(t *testing.T, b map[string]any) {
		if b["system"] != "1234" {
			t.Errorf("stream body = %v", b)
		}
	},
	Delta: textDelta,
	Head:  []string{msgStart, blockStart, ping},
	Tail:  []string{blockStop, msgDelta, msgStop},
	Req:   &baseReq,
}

func TestComplete(t *testing.T) {
	providertest.Completes(t, proto, []providertest.CompleteCase{
		{
			Name:      "text blocks joined, cache tokens counted as input",
			Req:       baseReq,
			Reply:     `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"hm","signature":"x"},{"type":"text","text":"Hello "},{"type":"tool_use","id":"t","name":"f","input":{}},{"type":"text","text":"\"there\"\n"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":503}}`,
			WantText:  "Hello \"there\"\n",
			WantUsage: providers.Usage{InputTokens: 2245, OutputTokens: 503, CacheReadTokens: 50, CacheWrite5mTokens: 100},
			Check: func(t *testing.T, b map[string]any) {
				msgs := b["messages"].([]any)
				if b["model"] != baseReq.Model || b["system"] != baseReq.System || b["max_tokens"] != 512.0 || b["temperature"] != 0.25 || b["stream"] != false ||
					len(msgs) != 1 || msgs[0].(map[string]any)["role"] != "user" || msgs[0].(map[string]any)["content"] != baseReq.UserText {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			Name: "cache breakpoints on system blocks, turns and tools",
			Req: providers.Request{Model: "m", MaxOutputTokens: 3,
				System:      "PERSONA" + "DIGEST",
				SystemCache: []providers.CacheBreak{{At: len("PERSONA"), TTL: providers.Cache1h}},
				Messages: []providers.Message{
					{Role: providers.RoleUser, Text: "q1", Cache: providers.Cache5m},
					{Role: providers.RoleAssistant, Text: "a1", ToolCalls: []providers.ToolCall{{ID: "t1", Name: "f", Arguments: `{}`}}, Cache: providers.Cache5m},
					{Role: providers.RoleTool, ToolCallID: "t1", Text: "r", Cache: providers.Cache5m},
					{Role: providers.RoleUser, Text: "q2"},
				},
				Tools: []providers.Tool{{Name: "f", Cache: providers.Cache1h}},
			},
			Reply:     `{"content":[],"usage":{"input_tokens":1,"output_tokens":1}}`,
			WantUsage: providers.Usage{InputTokens: 1, OutputTokens: 1},
			Check: func(t *testing.T, b map[string]any) {
				eph5 := map[string]any{"type": "ephemeral"}
				eph1h := map[string]any{"type": "ephemeral", "ttl": "1h"}
				want := map[string]any{
					"system": []any{
						map[string]any{"type": "text", "text": "PERSONA", "cache_control": eph1h},
						map[string]any{"type": "text", "text": "DIGEST"},
					},
					"messages": []any{
						map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "q1", "cache_control": eph5}}},
						map[string]any{"role": "assistant", "content": []any{
							map[string]any{"type": "text", "text": "a1"},
							map[string]any{"type": "tool_use", "id": "t1", "name": "f", "input": map[string]any{}, "cache_control": eph5}}},
						map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "t1", "content": "r", "cache_control": eph5}}},
						map[string]any{"role": "user", "content": "q2"},
					},
					"tools": []any{map[string]any{"name": "f", "input_schema": map[string]any{"type": "object", "properties": map[string]any{}}, "cache_control": eph1h}},
				}
				for k, v := range want {
					if !reflect.DeepEqual(b[k], v) {
						t.Errorf("%s = %#v\nwant %#v", k, b[k], v)
					}
				}
			},
		},
		{
			Name:      "no system, no temperature, null cache fields",
			Req:       providers.Request{Model: "m", UserText: "hi", MaxOutputTokens: 3},
			Reply:     `{"type":"message","content":[{"type":"text","text":"yo"}],"usage":{"input_tokens":7,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":2}}`,
			WantText:  "yo",
			WantUsage: providers.Usage{InputTokens: 7, OutputTokens: 2},
			Check: func(t *testing.T, b map[string]any) {
				if _, ok := b["system"]; ok {
					t.Errorf("empty system sent")
				}
				if _, ok := b["temperature"]; ok {
					t.Errorf("temperature sent without HasTemperature")
				}
			},
		},
	})
}

func TestStream(t *testing.T) {
	full := providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 15}
	started := providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true}
	providertest.Streams(t, proto, []providertest.StreamCase{
		{Name: "documented stream", Events: []string{msgStart, blockStart, ping, textDelta("Hello"), textDelta(" \"world\"\n"), blockStop, msgDelta, msgStop},
			WantText: "Hello \"world\"\n", WantUsage: full},
		{Name: "thinking, tool json and unknown events ignored", Events: []string{msgStart, thinking, ping, jsonDelta, "event: future_event\ndata: {\"type\":\"future_event\",\"x\":[1]}\n\n", textDelta("ok"), msgDelta, msgStop},
			WantText: "ok", WantUsage: full},
		{Name: "message_delta cumulative, latest wins, input there too", Events: []string{msgStart, textDelta("a"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":3}}\n\n", textDelta("b"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":30,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":null,\"output_tokens\":9}}\n\n", msgStop},
			WantText: "ab", WantUsage: providers.Usage{InputTokens: 35, OutputTokens: 9, CacheReadTokens: 5}},
		{Name: "cache writes split by TTL, repeated in message_delta", Events: []string{
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":3000},\"output_tokens\":1}}}\n\n",
			textDelta("a"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":3000},\"output_tokens\":7}}\n\n", msgStop},
			WantText: "a", WantUsage: providers.Usage{InputTokens: 3004, OutputTokens: 7, CacheWrite1hTokens: 3000}},
		{Name: "unnamed events read by type", Events: []string{strings.TrimPrefix(msgStart, "event: message_start\n"), strings.TrimPrefix(textDelta("x"), "event: content_block_delta\n"),
			strings.TrimPrefix(msgDelta, "event: message_delta\n"), strings.TrimPrefix(msgStop, "event: message_stop\n")},
			WantText: "x", WantUsage: full},
		{Name: "missing message_stop is truncated after the deltas", Events: []string{msgStart, textDelta("Hel"), textDelta("lo")},
			WantText: "Hello", WantKind: providers.KindTruncated, WantUsage: providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 2, Estimated: true}},
		{Name: "missing message_start estimates input", Events: []string{textDelta("a"), textDelta("b"), textDelta("c")},
			WantText: "abc", WantKind: providers.KindTruncated, WantUsage: providers.Usage{InputTokens: 3, OutputTokens: 3, Estimated: true}},
		{Name: "overloaded mid-stream", Events: []string{msgStart, textDelta("Hel"), overloaded},
			WantText: "Hel", WantKind: providers.KindProtocol, WantStatus: 529, WantUsage: started},
		{Name: "api_error mid-stream", Events: []string{msgStart, apiError},
			WantKind: providers.KindProtocol, WantUsage: started},
		{Name: "malformed delta", Events: []string{msgStart, "event: content_block_delta\ndata: {\"delta\":\n\n"},
			WantKind: providers.KindProtocol, WantUsage: started},
	})
}

func TestStatusErrors(t *testing.T) {
	providertest.StatusErrors(t, proto, []providertest.StatusCase{
		{Name: "429 retry-after", Status: 429, Headers: map[string]string{"retry-after": "12", "anthropic-ratelimit-requests-remaining": "0"}, Body: `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`, WantRetry: 12 * time.Second},
		{Name: "429 retry-after-ms", Status: 429, Headers: map[string]string{"retry-after-ms": "250"}, Body: `{}`, WantRetry: 250 * time.Millisecond},
		{Name: "529 overloaded", Status: 529, Body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
		{Name: "500", Status: 500, Body: `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`},
		{Name: "401 quoting the key", Status: 401, Body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + fakeKey + `"}}`},
	})
}

func TestTimeouts(t *testing.T) {
	providertest.Timeouts(t, proto, providertest.TimeoutCase{Name: "pings are not a first token", Stream: true,
		Handler: func(u *providertest.Upstream, w http.ResponseWriter, r *http.Request) {
			providertest.StartSSE(w)
			providertest.Send(w, msgStart)
			for range 10 {
				providertest.Send(w, ping)
				time.Sleep(20 * time.Millisecond)
			}
			u.WaitGone(r)
		}})
}

func TestAbort(t *testing.T) {
	providertest.Abort(t, proto, &baseReq, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true})
}

func TestConfig(t *testing.T) {
	providertest.Configs(t, []providertest.ConfigCase[Config]{
		{Name: "defaults valid", Cfg: Config{HTTPConfig: providers.HTTPConfig{APIKey: "k"}}},
		{Name: "missing key", Cfg: Config{}, Want: []string{"apiKey: required"}},
		{Name: "bad", Cfg: Config{HTTPConfig: providers.HTTPConfig{BaseURL: "ftp://x", APIKey: "k", Timeout: -1, MaxConns: -2}}, Want: []string{"baseURL: must be an absolute http(s) URL", "timeout: must be positive", "maxConns: must be at least 1"}},
	}, func(c *Config) bool {
		return c.BaseURL == "https://api.anthropic.com" && c.Version == "2023-06-01" && c.Timeout == 120*time.Second &&
			c.ConnectTimeout == 5*time.Second && c.FirstTokenTimeout == time.Minute && c.IdleTimeout == time.Minute && c.MaxConns == 512
	})
}
