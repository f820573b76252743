package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

const fakeKey = "sk-ant-api03-SECRETSECRET0123456789"

// upstream is a loopback server writing Anthropic's wire bytes; it
// records what it received and how many connections it saw.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	headers  []http.Header
	conns    atomic.Int64
	gone     chan struct{}
	goneOnce sync.Once
}

func newUpstream(t *testing.T, h func(u *upstream, w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{gone: make(chan struct{})}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("request body is not JSON: %v: %s", err, raw)
		}
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		if r.URL.Path != "/v1/messages" || r.Method != http.MethodPost {
			t.Errorf("request to %s %s", r.Method, r.URL.Path)
		}
		h(u, w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last() (map[string]any, http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[len(u.bodies)-1], u.headers[len(u.headers)-1]
}

func (u *upstream) waitGone(r *http.Request) {
	select {
	case <-r.Context().Done():
		u.goneOnce.Do(func() { close(u.gone) })
	case <-time.After(5 * time.Second):
	}
}

func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

func send(w http.ResponseWriter, s string) {
	_, _ = io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

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

func upstreamErr(err error) *providers.UpstreamError {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) {
		return ue
	}
	return nil
}

func kindOf(err error) providers.ErrorKind {
	if ue := upstreamErr(err); ue != nil {
		return ue.Kind
	}
	return 0
}

func checkHeaders(t *testing.T, h http.Header) {
	t.Helper()
	if h.Get("x-api-key") != fakeKey || h.Get("anthropic-version") != "2023-06-01" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("Authorization") != "" {
		t.Errorf("headers = %v", h)
	}
}

func TestComplete(t *testing.T) {
	cases := []struct {
		name      string
		req       providers.Request
		reply     string
		wantText  string
		wantUsage providers.Usage
		check     func(t *testing.T, b map[string]any)
	}{
		{
			name:      "text blocks joined, cache tokens counted as input",
			req:       baseReq,
			reply:     `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"hm","signature":"x"},{"type":"text","text":"Hello "},{"type":"tool_use","id":"t","name":"f","input":{}},{"type":"text","text":"\"there\"\n"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":503}}`,
			wantText:  "Hello \"there\"\n",
			wantUsage: providers.Usage{InputTokens: 2245, OutputTokens: 503, CacheReadTokens: 50, CacheWrite5mTokens: 100},
			check: func(t *testing.T, b map[string]any) {
				msgs := b["messages"].([]any)
				if b["model"] != baseReq.Model || b["system"] != baseReq.System || b["max_tokens"] != 512.0 || b["temperature"] != 0.25 || b["stream"] != false ||
					len(msgs) != 1 || msgs[0].(map[string]any)["role"] != "user" || msgs[0].(map[string]any)["content"] != baseReq.UserText {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			name: "cache breakpoints on system blocks, turns and tools",
			req: providers.Request{Model: "m", MaxOutputTokens: 3,
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
			reply:     `{"content":[],"usage":{"input_tokens":1,"output_tokens":1}}`,
			wantUsage: providers.Usage{InputTokens: 1, OutputTokens: 1},
			check: func(t *testing.T, b map[string]any) {
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
			name:      "no system, no temperature, null cache fields",
			req:       providers.Request{Model: "m", UserText: "hi", MaxOutputTokens: 3},
			reply:     `{"type":"message","content":[{"type":"text","text":"yo"}],"usage":{"input_tokens":7,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":2}}`,
			wantText:  "yo",
			wantUsage: providers.Usage{InputTokens: 7, OutputTokens: 2},
			check: func(t *testing.T, b map[string]any) {
				if _, ok := b["system"]; ok {
					t.Errorf("empty system sent")
				}
				if _, ok := b["temperature"]; ok {
					t.Errorf("temperature sent without HasTemperature")
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, c.reply)
			})
			res, err := newProvider(t, testConfig(u.URL)).Complete(context.Background(), &c.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != c.wantText || res.Usage != c.wantUsage {
				t.Fatalf("got %q %+v, want %q %+v", res.Content, res.Usage, c.wantText, c.wantUsage)
			}
			b, h := u.last()
			checkHeaders(t, h)
			if h.Get("Accept") != "application/json" {
				t.Errorf("Accept = %q", h.Get("Accept"))
			}
			if c.check != nil {
				c.check(t, b)
			}
		})
	}
}

func TestStream(t *testing.T) {
	cases := []struct {
		name       string
		events     []string
		wantText   string
		wantKind   providers.ErrorKind // 0: clean io.EOF
		wantStatus int
		wantUsage  providers.Usage
	}{
		{"documented stream", []string{msgStart, blockStart, ping, textDelta("Hello"), textDelta(" \"world\"\n"), blockStop, msgDelta, msgStop},
			"Hello \"world\"\n", 0, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 15}},
		{"thinking, tool json and unknown events ignored", []string{msgStart, thinking, ping, jsonDelta, "event: future_event\ndata: {\"type\":\"future_event\",\"x\":[1]}\n\n", textDelta("ok"), msgDelta, msgStop},
			"ok", 0, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 15}},
		{"message_delta cumulative, latest wins, input there too", []string{msgStart, textDelta("a"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":3}}\n\n", textDelta("b"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":30,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":null,\"output_tokens\":9}}\n\n", msgStop},
			"ab", 0, 0, providers.Usage{InputTokens: 35, OutputTokens: 9, CacheReadTokens: 5}},
		{"cache writes split by TTL, repeated in message_delta", []string{
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":3000},\"output_tokens\":1}}}\n\n",
			textDelta("a"),
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":3000},\"output_tokens\":7}}\n\n", msgStop},
			"a", 0, 0, providers.Usage{InputTokens: 3004, OutputTokens: 7, CacheWrite1hTokens: 3000}},
		{"unnamed events read by type", []string{strings.TrimPrefix(msgStart, "event: message_start\n"), strings.TrimPrefix(textDelta("x"), "event: content_block_delta\n"),
			strings.TrimPrefix(msgDelta, "event: message_delta\n"), strings.TrimPrefix(msgStop, "event: message_stop\n")},
			"x", 0, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 15}},
		{"missing message_stop is truncated after the deltas", []string{msgStart, textDelta("Hel"), textDelta("lo")},
			"Hello", providers.KindTruncated, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 2, Estimated: true}},
		{"missing message_start estimates input", []string{textDelta("a"), textDelta("b"), textDelta("c")},
			"abc", providers.KindTruncated, 0, providers.Usage{InputTokens: 3, OutputTokens: 3, Estimated: true}},
		{"overloaded mid-stream", []string{msgStart, textDelta("Hel"), overloaded},
			"Hel", providers.KindProtocol, 529, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true}},
		{"api_error mid-stream", []string{msgStart, apiError},
			"", providers.KindProtocol, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true}},
		{"malformed delta", []string{msgStart, "event: content_block_delta\ndata: {\"delta\":\n\n"},
			"", providers.KindProtocol, 0, providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true}},
	}
	req := providers.Request{Model: "m", System: "1234", UserText: "12345", MaxOutputTokens: 10}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
				startSSE(w)
				for _, e := range c.events {
					send(w, e)
				}
			})
			s, err := newProvider(t, testConfig(u.URL)).Stream(context.Background(), &req)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			text, err := testkit.Drain(s)
			if text != c.wantText {
				t.Errorf("text = %q, want %q", text, c.wantText)
			}
			if c.wantKind == 0 && err != io.EOF || c.wantKind != 0 && kindOf(err) != c.wantKind {
				t.Fatalf("err = %v, want kind %v", err, c.wantKind)
			}
			if ue := upstreamErr(err); ue != nil && ue.Status != c.wantStatus {
				t.Errorf("status = %d, want %d", ue.Status, c.wantStatus)
			}
			if err != io.EOF && strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error leaks upstream text: %v", err)
			}
			if got := s.Usage(); got != c.wantUsage {
				t.Errorf("usage = %+v, want %+v", got, c.wantUsage)
			}
			b, h := u.last()
			checkHeaders(t, h)
			if h.Get("Accept") != "text/event-stream" {
				t.Errorf("Accept = %q", h.Get("Accept"))
			}
			if b["stream"] != true || b["max_tokens"] != 10.0 || b["system"] != "1234" {
				t.Errorf("stream body = %v", b)
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		headers   map[string]string
		body      string
		wantRetry time.Duration
	}{
		{"429 retry-after", 429, map[string]string{"retry-after": "12", "anthropic-ratelimit-requests-remaining": "0"}, `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`, 12 * time.Second},
		{"429 retry-after-ms", 429, map[string]string{"retry-after-ms": "250"}, `{}`, 250 * time.Millisecond},
		{"529 overloaded", 529, nil, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, 0},
		{"500", 500, nil, `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`, 0},
		{"401 quoting the key", 401, nil, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + fakeKey + `"}}`, 0},
	}
	for _, c := range cases {
		for _, mode := range []string{"complete", "stream"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
					for k, v := range c.headers {
						w.Header().Set(k, v)
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(c.status)
					_, _ = io.WriteString(w, c.body)
				})
				p := newProvider(t, testConfig(u.URL))
				var err error
				if mode == "complete" {
					_, err = p.Complete(context.Background(), &baseReq)
				} else {
					_, err = p.Stream(context.Background(), &baseReq)
				}
				ue := upstreamErr(err)
				if ue == nil || ue.Kind != providers.KindStatus || ue.Status != c.status || ue.RetryAfter != c.wantRetry {
					t.Fatalf("err = %v (%+v)", err, ue)
				}
				if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "message") {
					t.Fatalf("error text carries the upstream body: %v", err)
				}
			})
		}
	}
}

func TestConnectRefused(t *testing.T) {
	addr := testkit.DeadAddr(t)
	p := newProvider(t, testConfig("http://"+addr))
	if _, err := p.Complete(context.Background(), &baseReq); kindOf(err) != providers.KindConnect {
		t.Fatalf("complete: %v", err)
	}
	if _, err := p.Stream(context.Background(), &baseReq); kindOf(err) != providers.KindConnect {
		t.Fatalf("stream: %v", err)
	}
}

func TestTimeouts(t *testing.T) {
	const limit = 100 * time.Millisecond
	cases := []struct {
		name    string
		handler func(u *upstream, w http.ResponseWriter, r *http.Request)
		stream  bool
		deltas  string
	}{
		{"complete total timeout", func(u *upstream, _ http.ResponseWriter, r *http.Request) { u.waitGone(r) }, false, ""},
		{"no headers within first-token timeout", func(u *upstream, _ http.ResponseWriter, r *http.Request) { u.waitGone(r) }, true, ""},
		{"pings are not a first token", func(u *upstream, w http.ResponseWriter, r *http.Request) {
			startSSE(w)
			send(w, msgStart)
			for range 10 {
				send(w, ping)
				time.Sleep(20 * time.Millisecond)
			}
			u.waitGone(r)
		}, true, ""},
		{"idle after first token", func(u *upstream, w http.ResponseWriter, r *http.Request) {
			startSSE(w)
			send(w, msgStart)
			send(w, textDelta("a"))
			u.waitGone(r)
		}, true, "a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpstream(t, c.handler)
			cfg := testConfig(u.URL)
			cfg.Timeout, cfg.FirstTokenTimeout, cfg.IdleTimeout = limit, limit, limit
			p := newProvider(t, cfg)
			start := time.Now()
			var err error
			if !c.stream {
				_, err = p.Complete(context.Background(), &baseReq)
			} else {
				var s providers.Stream
				if s, err = p.Stream(context.Background(), &baseReq); err == nil {
					var text string
					text, err = testkit.Drain(s)
					if text != c.deltas {
						t.Errorf("got %q before the timeout, want %q", text, c.deltas)
					}
					s.Close()
				}
			}
			if kindOf(err) != providers.KindTimeout {
				t.Fatalf("err = %v, want timeout", err)
			}
			if el := time.Since(start); el < limit || el > limit+900*time.Millisecond {
				t.Fatalf("timed out after %v, want about %v", el, limit)
			}
			select {
			case <-u.gone:
			case <-time.After(2 * time.Second):
				t.Fatal("upstream connection was not closed after the timeout")
			}
		})
	}
}

func TestAbort(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		send(w, msgStart)
		send(w, textDelta("first"))
		u.waitGone(r)
	})
	s, err := newProvider(t, testConfig(u.URL)).Stream(context.Background(), &baseReq)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Next(); err != nil || string(d) != "first" {
		t.Fatalf("first delta: %q, %v", d, err)
	}
	timer := time.AfterFunc(50*time.Millisecond, s.Abort)
	defer timer.Stop()
	start := time.Now()
	if _, err = s.Next(); !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("err = %v, want ErrAborted", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("abort took %v", el)
	}
	if got, want := s.Usage(), (providers.Usage{InputTokens: 40, CacheReadTokens: 5, CacheWrite5mTokens: 10, OutputTokens: 1, Estimated: true}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	s.Close()
	s.Abort()
	select {
	case <-u.gone:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream never saw the connection close")
	}
}

func TestConnectionReuseAfterStop(t *testing.T) {
	u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
		startSSE(w)
		for _, e := range []string{msgStart, textDelta("a"), msgDelta, msgStop} {
			send(w, e)
		}
	})
	p := newProvider(t, testConfig(u.URL))
	for i := range 3 {
		s, err := p.Stream(context.Background(), &baseReq)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Drain(s); err != io.EOF {
			t.Fatalf("round %d: %v", i, err)
		}
		s.Close()
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 finished streams, want 1 reused", n)
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults valid", Config{HTTPConfig: providers.HTTPConfig{APIKey: "k"}}, nil},
		{"missing key", Config{}, []string{"apiKey: required"}},
		{"bad", Config{HTTPConfig: providers.HTTPConfig{BaseURL: "ftp://x", APIKey: "k", Timeout: -1, MaxConns: -2}}, []string{"baseURL: must be an absolute http(s) URL", "timeout: must be positive", "maxConns: must be at least 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.SetDefaults()
			err := c.cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.cfg.BaseURL != "https://api.anthropic.com" || c.cfg.Version != "2023-06-01" || c.cfg.Timeout != 120*time.Second ||
					c.cfg.ConnectTimeout != 5*time.Second || c.cfg.FirstTokenTimeout != time.Minute || c.cfg.IdleTimeout != time.Minute || c.cfg.MaxConns != 512 {
					t.Fatalf("defaults = %+v", c.cfg)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
