package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

const fakeKey = "sk-test-SECRETSECRET0123456789"

func deltaChunk(content string) string {
	c, _ := json.Marshal(content)
	return `data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":` + string(c) + `},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"
}

const (
	roleChunk   = `data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"
	finishChunk = `data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}` + "\n\n"
	usageEmpty  = `data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":3,"total_tokens":22,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}` + "\n\n"
	usageNull   = `data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"m","choices":null,"usage":{"prompt_tokens":19,"completion_tokens":3,"total_tokens":22}}` + "\n\n"
	done        = "data: [DONE]\n\n"
)

func testConfig(url string) Config {
	return Config{
		HTTPConfig: providers.HTTPConfig{
			BaseURL:           url + "/v1",
			APIKey:            fakeKey,
			FirstTokenTimeout: 2 * time.Second,
			IdleTimeout:       2 * time.Second,
			Timeout:           2 * time.Second,
		},
		Organization: "org-moon",
	}
}

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New("oai-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var baseReq = providers.Request{
	Model:           "gpt-4o-mini",
	System:          "You are \"Moon\".\nBe brief.",
	UserText:        "Hi <there> \u2028 \x01 é",
	Temperature:     0.7,
	HasTemperature:  true,
	MaxOutputTokens: 256,
}

// proto is the OpenAI chat completions protocol as the shared suite
// sees it.
var proto = providertest.Protocol{
	Path: "/v1/chat/completions",
	Key:  fakeKey,
	New: func(tb testing.TB, url string, edit func(*providers.HTTPConfig)) providers.Provider {
		return withConfig(func(c *Config) {
			if edit != nil {
				edit(&c.HTTPConfig)
			}
		})(tb, url)
	},
	Headers: func(t *testing.T, h http.Header) {
		t.Helper()
		if h.Get("Authorization") != "Bearer "+fakeKey || h.Get("OpenAI-Organization") != "org-moon" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("headers = %v", h)
		}
	},
	StreamBody: func(t *testing.T, b map[string]any) {
		if fmt.Sprint(b["stream_options"]) != "map[include_usage:true]" {
			t.Errorf("stream body = %v", b)
		}
	},
	Delta: deltaChunk,
	Head:  []string{roleChunk},
	Tail:  []string{finishChunk, usageEmpty, done},
	Req:   &baseReq,
}

// withConfig builds providers from the test config changed by edit.
func withConfig(edit func(*Config)) func(tb testing.TB, url string) providers.Provider {
	return func(tb testing.TB, url string) providers.Provider {
		cfg := testConfig(url)
		edit(&cfg)
		return newProvider(tb, cfg)
	}
}

func TestComplete(t *testing.T) {
	providertest.Completes(t, proto, []providertest.CompleteCase{
		{
			Name: "prompt_cache_key sent, breakpoints ignored, system one message",
			New:  withConfig(func(c *Config) { c.PromptCacheKey = "on" }),
			Req: providers.Request{Model: "m", System: "PERSONA" + "DIGEST", MaxOutputTokens: 3, UserText: "hi",
				SystemCache: []providers.CacheBreak{{At: len("PERSONA"), TTL: providers.Cache5m}}, CacheKey: "pck_abc"},
			Reply:     `{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":2048,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1920}}}`,
			WantText:  "x",
			WantUsage: providers.Usage{InputTokens: 2048, OutputTokens: 1, CacheReadTokens: 1920},
			Check: func(t *testing.T, b map[string]any) {
				msgs := b["messages"].([]any)
				if b["prompt_cache_key"] != "pck_abc" || len(msgs) != 2 || msgs[0].(map[string]any)["content"] != "PERSONADIGEST" {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			Name:      "system, temperature, max_tokens",
			Req:       baseReq,
			Reply:     `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"you\"\n","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":4,"total_tokens":25}}`,
			WantText:  "Hello \"you\"\n",
			WantUsage: providers.Usage{InputTokens: 21, OutputTokens: 4},
			Check: func(t *testing.T, b map[string]any) {
				msgs := b["messages"].([]any)
				if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[0].(map[string]any)["content"] != baseReq.System ||
					msgs[1].(map[string]any)["role"] != "user" || msgs[1].(map[string]any)["content"] != baseReq.UserText {
					t.Errorf("messages = %v", msgs)
				}
				if b["model"] != "gpt-4o-mini" || b["temperature"] != 0.7 || b["max_tokens"] != 256.0 || b["stream"] != false {
					t.Errorf("body = %v", b)
				}
				if _, ok := b["stream_options"]; ok {
					t.Errorf("stream_options sent without stream")
				}
			},
		},
		{
			Name:      "no system, no temperature, max_completion_tokens, null content",
			Req:       providers.Request{Model: "o3-mini", UserText: "hi", MaxOutputTokens: 9},
			New:       withConfig(func(c *Config) { c.MaxTokensField = "max_completion_tokens" }),
			Reply:     `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":0}}`,
			WantText:  "",
			WantUsage: providers.Usage{InputTokens: 5, OutputTokens: 0},
			Check: func(t *testing.T, b map[string]any) {
				if msgs := b["messages"].([]any); len(msgs) != 1 {
					t.Errorf("messages = %v", msgs)
				}
				if _, ok := b["temperature"]; ok {
					t.Errorf("temperature sent without HasTemperature")
				}
				if _, ok := b["max_tokens"]; ok || b["max_completion_tokens"] != 9.0 {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			Name:      "prompt_cache_key not sent by default to a server that is not OpenAI",
			Req:       providers.Request{Model: "m", UserText: "hi", MaxOutputTokens: 1, CacheKey: "pck_abc"},
			Reply:     `{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`,
			WantText:  "x",
			WantUsage: providers.Usage{InputTokens: 1, OutputTokens: 1},
			Check: func(t *testing.T, b map[string]any) {
				if _, ok := b["prompt_cache_key"]; ok {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			Name:      "usage missing is estimated",
			Req:       providers.Request{Model: "m", UserText: "12345678", MaxOutputTokens: 1},
			Reply:     `{"choices":[{"message":{"content":"abcd"}}]}`,
			WantText:  "abcd",
			WantUsage: providers.Usage{InputTokens: 2, OutputTokens: 1, Estimated: true},
		},
	})
}

func TestStream(t *testing.T) {
	est := func(in, out int64) providers.Usage {
		return providers.Usage{InputTokens: in, OutputTokens: out, Estimated: true}
	}
	providertest.Streams(t, proto, []providertest.StreamCase{
		{Name: "usage chunk with choices []", Events: []string{roleChunk, deltaChunk("Hel"), deltaChunk("lo \"x\"\n"), deltaChunk("!"), finishChunk, usageEmpty, done},
			WantText: "Hello \"x\"\n!", WantUsage: providers.Usage{InputTokens: 19, OutputTokens: 3}},
		{Name: "usage chunk with cached and reasoning tokens", Events: []string{roleChunk, deltaChunk("a"), finishChunk,
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":300,\"total_tokens\":2306,\"prompt_tokens_details\":{\"cached_tokens\":1920,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":256}}}\n\n", done},
			WantText: "a", WantUsage: providers.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 256}},
		{Name: "usage chunk with choices null", Events: []string{roleChunk, deltaChunk("a"), deltaChunk("b"), finishChunk, usageNull, done},
			WantText: "ab", WantUsage: providers.Usage{InputTokens: 19, OutputTokens: 3}},
		{Name: "done without usage is estimated", Events: []string{deltaChunk("a"), deltaChunk("b"), done},
			WantText: "ab", WantUsage: est(3, 2)},
		{Name: "CRLF framing and comments", Events: []string{": keep-alive\r\n\r\n", strings.ReplaceAll(deltaChunk("x"), "\n", "\r\n"), "data: [DONE]\r\n\r\n"},
			WantText: "x", WantUsage: est(3, 1)},
		{Name: "missing [DONE] is truncated after the deltas", Events: []string{roleChunk, deltaChunk("Hel"), deltaChunk("lo")},
			WantText: "Hello", WantKind: providers.KindTruncated, WantUsage: est(3, 2)},
		{Name: "cut mid-event is truncated", Events: []string{deltaChunk("Hel"), `data: {"choices":[{"delta":{"content":"lo`},
			WantText: "Hel", WantKind: providers.KindTruncated, WantUsage: est(3, 1)},
		{Name: "error chunk mid-stream", Events: []string{deltaChunk("Hel"), `data: {"error":{"message":"The server had an error while processing your request. ` + fakeKey + `","type":"server_error","param":null,"code":null}}` + "\n\n"},
			WantText: "Hel", WantKind: providers.KindProtocol, WantUsage: est(3, 1)},
		{Name: "malformed chunk", Events: []string{deltaChunk("a"), "data: {\"choices\":[\n\n"},
			WantText: "a", WantKind: providers.KindProtocol, WantUsage: est(3, 1)},
	})
}

func TestStatusErrors(t *testing.T) {
	now := time.Now().UTC().Add(30 * time.Second).Format(http.TimeFormat)
	providertest.StatusErrors(t, proto, []providertest.StatusCase{
		{Name: "429 retry-after-ms wins", Status: 429, Headers: map[string]string{"retry-after-ms": "1500", "retry-after": "9"}, Body: `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, WantRetry: 1500 * time.Millisecond},
		{Name: "429 retry-after seconds", Status: 429, Headers: map[string]string{"retry-after": "7"}, Body: `{}`, WantRetry: 7 * time.Second},
		{Name: "503 retry-after date", Status: 503, Headers: map[string]string{"retry-after": now}, WantRetry: 30 * time.Second, Slack: 2 * time.Second},
		{Name: "500 no hint", Status: 500, Body: `{"error":{"message":"The server had an error","type":"server_error"}}`},
		{Name: "401 quoting the key", Status: 401, Body: `{"error":{"message":"Incorrect API key provided: ` + fakeKey + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
	})
}

func TestTimeouts(t *testing.T) {
	providertest.Timeouts(t, proto, providertest.TimeoutCase{Name: "complete total timeout mid-body",
		Handler: func(u *providertest.Upstream, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			providertest.Send(w, `{"choices":[`)
			u.WaitGone(r)
		}})
}

func TestAbort(t *testing.T) {
	req := providers.Request{Model: "m", System: "abcd", UserText: "abcdefgh", MaxOutputTokens: 5}
	providertest.Abort(t, proto, &req, providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true})
}

// TestPromptCacheKeyAuto: auto sends prompt_cache_key to OpenAI only.
func TestPromptCacheKeyAuto(t *testing.T) {
	for _, c := range []struct {
		url, mode string
		want      bool
	}{
		{"https://api.openai.com/v1", "auto", true},
		{"https://vllm.internal/v1", "auto", false},
		{"https://vllm.internal/v1", "on", true},
		{"https://api.openai.com/v1", "off", false},
	} {
		cfg := Config{HTTPConfig: providers.HTTPConfig{BaseURL: c.url, APIKey: "k"}, PromptCacheKey: c.mode}
		cfg.SetDefaults()
		if got := cfg.sendsCacheKey(); got != c.want {
			t.Errorf("%s %s: sends %v, want %v", c.url, c.mode, got, c.want)
		}
	}
}

func TestConfig(t *testing.T) {
	providertest.Configs(t, []providertest.ConfigCase[Config]{
		{Name: "defaults valid", Cfg: Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://api.openai.com/v1", APIKey: "k"}}},
		{Name: "missing", Cfg: Config{}, Want: []string{"baseURL: required", "apiKey: required"}},
		{Name: "bad url and field", Cfg: Config{HTTPConfig: providers.HTTPConfig{BaseURL: "api.openai.com/v1", APIKey: "k", MaxConns: -1, IdleTimeout: -time.Second}, MaxTokensField: "tokens"},
			Want: []string{"baseURL: must be an absolute http(s) URL", "maxTokensField: must be one of", "maxConns: must be at least 1", "idleTimeout: must be positive"}},
		{Name: "credentials in url", Cfg: Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://u:p@x/v1", APIKey: "k"}}, Want: []string{"baseURL:"}},
		{Name: "bad promptCacheKey", Cfg: Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://x/v1", APIKey: "k"}, PromptCacheKey: "yes"}, Want: []string{"promptCacheKey: must be one of auto, on, off"}},
	}, func(c *Config) bool {
		return c.Timeout == 120*time.Second && c.ConnectTimeout == 5*time.Second && c.FirstTokenTimeout == time.Minute &&
			c.IdleTimeout == time.Minute && c.MaxConns == 512 && c.MaxTokensField == "max_tokens"
	})
}
