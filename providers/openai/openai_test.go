package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

const fakeKey = "sk-test-SECRETSECRET0123456789"

// upstream is a loopback server writing OpenAI's wire bytes; it records
// what it received and how many connections it saw.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	headers  []http.Header
	conns    atomic.Int64
	gone     chan struct{} // closed when a handler saw its client leave
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
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
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

func (u *upstream) lastBody() map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[len(u.bodies)-1]
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[len(u.headers)-1]
}

// waitGone blocks the handler until the client closed the connection and
// records that it did.
func (u *upstream) waitGone(r *http.Request) {
	select {
	case <-r.Context().Done():
		u.goneOnce.Do(func() { close(u.gone) })
	case <-time.After(5 * time.Second):
	}
}

func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

func send(w http.ResponseWriter, s string) {
	_, _ = io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

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

func kindOf(err error) providers.ErrorKind {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return 0
}

func TestComplete(t *testing.T) {
	cases := []struct {
		name      string
		req       providers.Request
		field     string
		cacheKey  string // promptCacheKey; default auto (off on loopback)
		reply     string
		wantText  string
		wantUsage providers.Usage
		check     func(t *testing.T, body map[string]any)
	}{
		{
			name:     "prompt_cache_key sent, breakpoints ignored, system one message",
			cacheKey: "on",
			req: providers.Request{Model: "m", System: "PERSONA" + "DIGEST", MaxOutputTokens: 3, UserText: "hi",
				SystemCache: []providers.CacheBreak{{At: len("PERSONA"), TTL: providers.Cache5m}}, CacheKey: "pck_abc"},
			reply:     `{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":2048,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1920}}}`,
			wantText:  "x",
			wantUsage: providers.Usage{InputTokens: 2048, OutputTokens: 1, CacheReadTokens: 1920},
			check: func(t *testing.T, b map[string]any) {
				msgs := b["messages"].([]any)
				if b["prompt_cache_key"] != "pck_abc" || len(msgs) != 2 || msgs[0].(map[string]any)["content"] != "PERSONADIGEST" {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			name:      "system, temperature, max_tokens",
			req:       baseReq,
			reply:     `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"you\"\n","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":4,"total_tokens":25}}`,
			wantText:  "Hello \"you\"\n",
			wantUsage: providers.Usage{InputTokens: 21, OutputTokens: 4},
			check: func(t *testing.T, b map[string]any) {
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
			name:      "no system, no temperature, max_completion_tokens, null content",
			req:       providers.Request{Model: "o3-mini", UserText: "hi", MaxOutputTokens: 9},
			field:     "max_completion_tokens",
			reply:     `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":0}}`,
			wantText:  "",
			wantUsage: providers.Usage{InputTokens: 5, OutputTokens: 0},
			check: func(t *testing.T, b map[string]any) {
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
			name:      "prompt_cache_key not sent by default to a server that is not OpenAI",
			req:       providers.Request{Model: "m", UserText: "hi", MaxOutputTokens: 1, CacheKey: "pck_abc"},
			reply:     `{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`,
			wantText:  "x",
			wantUsage: providers.Usage{InputTokens: 1, OutputTokens: 1},
			check: func(t *testing.T, b map[string]any) {
				if _, ok := b["prompt_cache_key"]; ok {
					t.Errorf("body = %v", b)
				}
			},
		},
		{
			name:      "usage missing is estimated",
			req:       providers.Request{Model: "m", UserText: "12345678", MaxOutputTokens: 1},
			reply:     `{"choices":[{"message":{"content":"abcd"}}]}`,
			wantText:  "abcd",
			wantUsage: providers.Usage{InputTokens: 2, OutputTokens: 1, Estimated: true},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, c.reply)
			})
			cfg := testConfig(u.URL)
			cfg.MaxTokensField = c.field
			cfg.PromptCacheKey = c.cacheKey
			res, err := newProvider(t, cfg).Complete(context.Background(), &c.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != c.wantText || res.Usage != c.wantUsage {
				t.Fatalf("got %q %+v, want %q %+v", res.Content, res.Usage, c.wantText, c.wantUsage)
			}
			h := u.lastHeader()
			if h.Get("Authorization") != "Bearer "+fakeKey || h.Get("OpenAI-Organization") != "org-moon" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") ||
				h.Get("Accept") != "application/json" {
				t.Errorf("headers = %v", h)
			}
			if c.check != nil {
				c.check(t, u.lastBody())
			}
		})
	}
}

func TestStream(t *testing.T) {
	cases := []struct {
		name      string
		events    []string
		wantText  string
		wantErr   providers.ErrorKind // 0: clean io.EOF
		wantUsage providers.Usage
	}{
		{"usage chunk with choices []", []string{roleChunk, deltaChunk("Hel"), deltaChunk("lo \"x\"\n"), deltaChunk("!"), finishChunk, usageEmpty, done},
			"Hello \"x\"\n!", 0, providers.Usage{InputTokens: 19, OutputTokens: 3}},
		{"usage chunk with cached and reasoning tokens", []string{roleChunk, deltaChunk("a"), finishChunk,
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":300,\"total_tokens\":2306,\"prompt_tokens_details\":{\"cached_tokens\":1920,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":256}}}\n\n", done},
			"a", 0, providers.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 256}},
		{"usage chunk with choices null", []string{roleChunk, deltaChunk("a"), deltaChunk("b"), finishChunk, usageNull, done},
			"ab", 0, providers.Usage{InputTokens: 19, OutputTokens: 3}},
		{"done without usage is estimated", []string{deltaChunk("a"), deltaChunk("b"), done},
			"ab", 0, providers.Usage{InputTokens: 3, OutputTokens: 2, Estimated: true}},
		{"CRLF framing and comments", []string{": keep-alive\r\n\r\n", strings.ReplaceAll(deltaChunk("x"), "\n", "\r\n"), "data: [DONE]\r\n\r\n"},
			"x", 0, providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true}},
		{"missing [DONE] is truncated after the deltas", []string{roleChunk, deltaChunk("Hel"), deltaChunk("lo")},
			"Hello", providers.KindTruncated, providers.Usage{InputTokens: 3, OutputTokens: 2, Estimated: true}},
		{"cut mid-event is truncated", []string{deltaChunk("Hel"), `data: {"choices":[{"delta":{"content":"lo`},
			"Hel", providers.KindTruncated, providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true}},
		{"error chunk mid-stream", []string{deltaChunk("Hel"), `data: {"error":{"message":"The server had an error while processing your request. ` + fakeKey + `","type":"server_error","param":null,"code":null}}` + "\n\n"},
			"Hel", providers.KindProtocol, providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true}},
		{"malformed chunk", []string{deltaChunk("a"), "data: {\"choices\":[\n\n"},
			"a", providers.KindProtocol, providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true}},
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
			if c.wantErr == 0 && err != io.EOF || c.wantErr != 0 && kindOf(err) != c.wantErr {
				t.Fatalf("err = %v, want kind %v", err, c.wantErr)
			}
			if err != io.EOF && strings.Contains(err.Error(), fakeKey) {
				t.Fatalf("error leaks upstream text: %v", err)
			}
			if _, again := s.Next(); again != err {
				t.Errorf("error not sticky: %v then %v", err, again)
			}
			if got := s.Usage(); got != c.wantUsage {
				t.Errorf("usage = %+v, want %+v", got, c.wantUsage)
			}
			b := u.lastBody()
			if b["stream"] != true || fmt.Sprint(b["stream_options"]) != "map[include_usage:true]" {
				t.Errorf("stream body = %v", b)
			}
			if h := u.lastHeader(); h.Get("Accept") != "text/event-stream" {
				t.Errorf("Accept = %q", h.Get("Accept"))
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	now := time.Now().UTC().Add(30 * time.Second).Format(http.TimeFormat)
	cases := []struct {
		name      string
		status    int
		headers   map[string]string
		body      string
		wantRetry time.Duration
		slack     time.Duration
	}{
		{"429 retry-after-ms wins", 429, map[string]string{"retry-after-ms": "1500", "retry-after": "9"}, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, 1500 * time.Millisecond, 0},
		{"429 retry-after seconds", 429, map[string]string{"retry-after": "7"}, `{}`, 7 * time.Second, 0},
		{"503 retry-after date", 503, map[string]string{"retry-after": now}, ``, 30 * time.Second, 2 * time.Second},
		{"500 no hint", 500, nil, `{"error":{"message":"The server had an error","type":"server_error"}}`, 0, 0},
		{"401 quoting the key", 401, nil, `{"error":{"message":"Incorrect API key provided: ` + fakeKey + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, 0, 0},
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
					var s providers.Stream
					s, err = p.Stream(context.Background(), &baseReq)
					if s != nil {
						t.Fatal("stream returned with an error status")
					}
				}
				var ue *providers.UpstreamError
				if !errors.As(err, &ue) || ue.Kind != providers.KindStatus || ue.Status != c.status {
					t.Fatalf("err = %v", err)
				}
				if d := ue.RetryAfter - c.wantRetry; d < -c.slack || d > c.slack {
					t.Errorf("RetryAfter = %v, want %v", ue.RetryAfter, c.wantRetry)
				}
				if strings.Contains(err.Error(), fakeKey) || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "message") {
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
		deltas  int // deltas expected before the timeout
	}{
		{"complete total timeout", func(u *upstream, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			send(w, `{"choices":[`)
			u.waitGone(r)
		}, false, 0},
		{"no headers within first-token timeout", func(u *upstream, _ http.ResponseWriter, r *http.Request) {
			u.waitGone(r)
		}, true, 0},
		{"headers but no first token", func(u *upstream, w http.ResponseWriter, r *http.Request) {
			startSSE(w)
			send(w, roleChunk) // not a token: the first-token deadline still runs
			u.waitGone(r)
		}, true, 0},
		{"idle after first token", func(u *upstream, w http.ResponseWriter, r *http.Request) {
			startSSE(w)
			send(w, deltaChunk("a"))
			u.waitGone(r)
		}, true, 1},
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
				s, err = p.Stream(context.Background(), &baseReq)
				if err == nil {
					var text string
					text, err = testkit.Drain(s)
					if len(text) != c.deltas {
						t.Errorf("got %q before the timeout", text)
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

// A stream may last far longer than its first-token timeout as long as
// chunks keep coming within the idle timeout.
func TestStreamOutlivesFirstTokenTimeout(t *testing.T) {
	u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
		startSSE(w)
		for range 12 {
			send(w, deltaChunk("x"))
			time.Sleep(50 * time.Millisecond)
		}
		send(w, usageEmpty)
		send(w, done)
	})
	cfg := testConfig(u.URL)
	// The stream lasts 600ms, twice the first-token timeout; the gaps are
	// 50ms, well within the idle timeout even on a loaded machine.
	cfg.FirstTokenTimeout, cfg.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	s, err := newProvider(t, cfg).Stream(context.Background(), &baseReq)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if text, err := testkit.Drain(s); err != io.EOF || text != "xxxxxxxxxxxx" {
		t.Fatalf("got %q, %v", text, err)
	}
}

func TestAbort(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		send(w, deltaChunk("first"))
		u.waitGone(r)
	})
	req := providers.Request{Model: "m", System: "abcd", UserText: "abcdefgh", MaxOutputTokens: 5}
	s, err := newProvider(t, testConfig(u.URL)).Stream(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Next(); err != nil || string(d) != "first" {
		t.Fatalf("first delta: %q, %v", d, err)
	}
	timer := time.AfterFunc(50*time.Millisecond, s.Abort)
	defer timer.Stop()
	start := time.Now()
	_, err = s.Next()
	if !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("err = %v, want ErrAborted", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("abort took %v", el)
	}
	s.Abort() // twice is fine
	if got, want := s.Usage(), (providers.Usage{InputTokens: 3, OutputTokens: 1, Estimated: true}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	s.Close()
	s.Abort() // after Close too
	select {
	case <-u.gone:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream never saw the connection close")
	}
}

func TestConnectionReuseAfterDone(t *testing.T) {
	u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
		startSSE(w)
		send(w, deltaChunk("a"))
		send(w, usageEmpty)
		send(w, done)
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

// TestSaturatedQueues: with every connection busy a request waits for
// one, up to its deadline, then fails as saturated (never a breaker
// failure); a connection freed meanwhile serves it.
func TestSaturatedQueues(t *testing.T) {
	release := make(chan struct{})
	u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		send(w, deltaChunk("a"))
		select {
		case <-release:
			send(w, "[DONE]")
		case <-r.Context().Done():
		}
	})
	cfg := testConfig(u.URL)
	cfg.MaxConns = 1
	cfg.FirstTokenTimeout = 300 * time.Millisecond
	p := newProvider(t, cfg)
	s, err := p.Stream(context.Background(), &baseReq)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stream(context.Background(), &baseReq); kindOf(err) != providers.KindSaturated {
		t.Fatalf("second stream while the only connection is busy: %v, want saturated after waiting", err)
	}
	// Queued again, and served once the first stream ends and frees the
	// connection.
	got := make(chan error, 1)
	go func() {
		s2, err := p.Stream(context.Background(), &baseReq)
		if err == nil {
			_, err = s2.Next()
			s2.Close()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it queue
	close(release)
	for {
		if _, err := s.Next(); err != nil {
			break
		}
	}
	s.Close()
	if err := <-got; err != nil {
		t.Fatalf("queued stream: %v, want served by the freed connection", err)
	}
}

func TestNotAnEventStream(t *testing.T) {
	u := newUpstream(t, func(_ *upstream, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[]}`)
	})
	if _, err := newProvider(t, testConfig(u.URL)).Stream(context.Background(), &baseReq); kindOf(err) != providers.KindProtocol {
		t.Fatalf("err = %v, want protocol", err)
	}
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
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults valid", Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://api.openai.com/v1", APIKey: "k"}}, nil},
		{"missing", Config{}, []string{"baseURL: required", "apiKey: required"}},
		{"bad url and field", Config{HTTPConfig: providers.HTTPConfig{BaseURL: "api.openai.com/v1", APIKey: "k", MaxConns: -1, IdleTimeout: -time.Second}, MaxTokensField: "tokens"},
			[]string{"baseURL: must be an absolute http(s) URL", "maxTokensField: must be one of", "maxConns: must be at least 1", "idleTimeout: must be positive"}},
		{"credentials in url", Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://u:p@x/v1", APIKey: "k"}}, []string{"baseURL:"}},
		{"bad promptCacheKey", Config{HTTPConfig: providers.HTTPConfig{BaseURL: "https://x/v1", APIKey: "k"}, PromptCacheKey: "yes"}, []string{"promptCacheKey: must be one of auto, on, off"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.SetDefaults()
			err := c.cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.cfg.Timeout != 120*time.Second || c.cfg.ConnectTimeout != 5*time.Second || c.cfg.FirstTokenTimeout != time.Minute ||
					c.cfg.IdleTimeout != time.Minute || c.cfg.MaxConns != 512 || c.cfg.MaxTokensField != "max_tokens" {
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
