package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// wantCost is API.md's formula evaluated with exact rationals.
func wantCost(in, out int64, inPrice, outPrice string) int64 {
	pi, _ := new(big.Rat).SetString(inPrice)
	po, _ := new(big.Rat).SetString(outPrice)
	total := new(big.Rat).Add(new(big.Rat).Mul(big.NewRat(in, 1), pi), new(big.Rat).Mul(big.NewRat(out, 1), po))
	total.Add(total, big.NewRat(1, 2))
	q := new(big.Int).Quo(total.Num(), total.Denom()) // floor of x + 1/2 for x ≥ 0
	return q.Int64()
}

func TestChatMockDefaultPersona(t *testing.T) {
	g := newWorld(t, nil).start()
	r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"Hello there, how are you?"}`)
	ok := testkit.DecodeOK(t, r)
	if ok.Model != "mock-1" || ok.Content == "" {
		t.Fatalf("reply %+v", ok)
	}
	// psn_demo caps output at 64 and the mock makes 20 tokens.
	if ok.OutputTokens != 20 {
		t.Fatalf("outputTokens %d, want 20", ok.OutputTokens)
	}
	wantIn := mock.CountTokens("You are terse.") + mock.CountTokens("Hello there, how are you?")
	if ok.InputTokens != wantIn {
		t.Fatalf("inputTokens %d, want %d", ok.InputTokens, wantIn)
	}
	if want := wantCost(ok.InputTokens, ok.OutputTokens, "0.15", "0.60"); ok.CostUsdMicros != want {
		t.Fatalf("cost %d, want %d", ok.CostUsdMicros, want)
	}
	if id := r.Header.Get("X-Request-Id"); !strings.HasPrefix(id, "req_") {
		t.Fatalf("generated request id %q", id)
	}
}

func TestChatHonoursMaxOutputTokensAndDigest(t *testing.T) {
	g := newWorld(t, nil).start()
	ok := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"Hi","maxOutputTokens":3}`))
	if ok.OutputTokens != 3 {
		t.Fatalf("outputTokens %d, want 3", ok.OutputTokens)
	}
	plain := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"Hi"}`))
	digest := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"Hi","memoryDigest":"User likes tea."}`))
	if digest.InputTokens <= plain.InputTokens {
		t.Fatalf("memoryDigest not counted as input: %d vs %d", digest.InputTokens, plain.InputTokens)
	}
}

func TestRequestIDEcho(t *testing.T) {
	g := newWorld(t, nil).start()
	cases := []struct {
		name, sent string
		echoed     bool
	}{
		{"sane", "abc-123_x.y:z", true},
		{"too long", strings.Repeat("a", 129), false},
		{"bad chars", "a b", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, tok := range []string{mocktest.KeyDemo, ""} { // success and error replies alike
				r := g.Post("/v1/personas/psn_demo/chat", tok, `{"userText":"hi"}`, "X-Request-Id", c.sent)
				got := r.Header.Get("X-Request-Id")
				if c.echoed != (got == c.sent) || got == "" {
					t.Fatalf("sent %q, got %q", c.sent, got)
				}
			}
		})
	}
}

// TestProtocols runs both wire protocols, streaming and not, through real
// upstream servers and checks usage, cost and what the upstream received.
func TestProtocols(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 12, APIKey: ""})
	g := newWorld(t, up).start()
	prices := map[string][2]string{"oa-1": {"2.5", "10"}, "an-1": {"3", "15"}}
	for _, model := range []string{"oa-1", "an-1"} {
		var nonStream testkit.ChatOK
		t.Run(model+"/plain", func(t *testing.T) {
			nonStream = testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"Tell me a story","modelId":"`+model+`","temperature":0.3}`))
			if nonStream.Model != model || nonStream.OutputTokens != 12 || nonStream.InputTokens == 0 {
				t.Fatalf("reply %+v", nonStream)
			}
			p := prices[model]
			if want := wantCost(nonStream.InputTokens, nonStream.OutputTokens, p[0], p[1]); nonStream.CostUsdMicros != want {
				t.Fatalf("cost %d, want %d", nonStream.CostUsdMicros, want)
			}
			last, _ := up.Srv.LastRequest()
			var sent map[string]any
			if err := json.Unmarshal(last.Body, &sent); err != nil {
				t.Fatal(err)
			}
			if sent["temperature"] != 0.3 || sent["stream"] == true {
				t.Fatalf("upstream got %s", last.Body)
			}
		})
		t.Run(model+"/stream", func(t *testing.T) {
			resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"Tell me a story","modelId":"`+model+`","temperature":0.3,"stream":true}`)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var content strings.Builder
			var done testkit.SSEEvent
			for {
				ev, err := sr.Next()
				if err != nil {
					t.Fatalf("after %q: %v", content.String(), err)
				}
				if ev.Name == "delta" {
					content.WriteString(ev.Data["content"].(string))
					continue
				}
				if ev.Name != "done" {
					t.Fatalf("event %q", ev.Raw)
				}
				done = ev
				break
			}
			if content.String() != nonStream.Content {
				t.Fatalf("stream content %q != non-stream %q", content.String(), nonStream.Content)
			}
			for _, f := range []string{"inputTokens", "outputTokens", "costUsdMicros", "latencyMs"} {
				if _, ok := done.Data[f].(float64); !ok {
					t.Fatalf("done lacks %s: %s", f, done.Raw)
				}
			}
			if _, has := done.Data["content"]; has || done.Data["model"] != model ||
				int64(done.Data["outputTokens"].(float64)) != nonStream.OutputTokens ||
				int64(done.Data["inputTokens"].(float64)) != nonStream.InputTokens ||
				int64(done.Data["costUsdMicros"].(float64)) != nonStream.CostUsdMicros {
				t.Fatalf("done %s vs non-stream %+v", done.Raw, nonStream)
			}
			if last, _ := up.Srv.LastRequest(); model == "oa-1" && !strings.Contains(string(last.Body), `"include_usage":true`) {
				t.Fatalf("openai stream without include_usage: %s", last.Body)
			}
		})
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	g := newWorld(t, nil).start()
	absent := testkit.DecodeErr(t, g.Chat(mocktest.KeyOther, "psn_nope", `{"userText":"hi"}`))
	r := g.Chat(mocktest.KeyOther, "psn_demo", `{"userText":"hi"}`)
	other := testkit.DecodeErr(t, r)
	if r.Status != 404 || other.Error.Code != "persona_not_found" || other.Error.Message != "persona psn_demo not found" {
		t.Fatalf("foreign persona: %d %+v", r.Status, other)
	}
	if strings.Replace(absent.Error.Message, "psn_nope", "psn_demo", 1) != other.Error.Message {
		t.Fatalf("foreign and absent personas answer differently: %q vs %q", other.Error.Message, absent.Error.Message)
	}
	testkit.DecodeOK(t, g.Chat(mocktest.KeyOther, "psn_other", `{"userText":"hi"}`))
}

func TestJWTAuth(t *testing.T) {
	g := newWorld(t, nil).start()
	now := time.Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "user_1", "wsp": "wsp_demo", "iss": "https://auth.test", "aud": "moonborn-test",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := base(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := base(); delete(c, k); return c }
	hs := []byte(mocktest.JWTSecret)
	good := testkit.SignJWT(t, base(), jwt.SigningMethodHS256, hs, "hs")
	noneTok := testkit.SignJWT(t, base(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "hs")
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	cases := []struct {
		name   string
		token  string
		status int
	}{
		{"valid", good, 200},
		{"expired", testkit.SignJWT(t, with("exp", now.Add(-time.Hour).Unix()), jwt.SigningMethodHS256, hs, "hs"), 401},
		{"not yet valid", testkit.SignJWT(t, with("nbf", now.Add(time.Hour).Unix()), jwt.SigningMethodHS256, hs, "hs"), 401},
		{"wrong audience", testkit.SignJWT(t, with("aud", "someone-else"), jwt.SigningMethodHS256, hs, "hs"), 401},
		{"wrong issuer", testkit.SignJWT(t, with("iss", "https://evil.test"), jwt.SigningMethodHS256, hs, "hs"), 401},
		{"wrong algorithm", testkit.SignJWT(t, base(), jwt.SigningMethodHS384, hs, "hs"), 401},
		{"alg none", noneTok, 401},
		{"tampered signature", tampered, 401},
		{"wrong secret", testkit.SignJWT(t, base(), jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!!"), "hs"), 401},
		{"no workspace", testkit.SignJWT(t, without("wsp"), jwt.SigningMethodHS256, hs, "hs"), 401},
		{"unknown kid", testkit.SignJWT(t, base(), jwt.SigningMethodHS256, hs, "nope"), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := g.Chat(c.token, "psn_demo", `{"userText":"hi"}`)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if c.status == 401 {
				e := testkit.DecodeErr(t, r)
				if e.Error.Code != "unauthenticated" || strings.Contains(string(r.Body), c.token[:20]) {
					t.Fatalf("body %s", r.Body)
				}
			}
		})
	}
	// A valid token of another workspace sees only that workspace.
	other := testkit.SignJWT(t, with("wsp", "wsp_other"), jwt.SigningMethodHS256, hs, "hs")
	if r := g.Chat(other, "psn_demo", `{"userText":"hi"}`); r.Status != 404 {
		t.Fatalf("cross-workspace JWT got %d", r.Status)
	}
}

// TestErrorReplies covers every status and error code the endpoint can
// produce before a stream starts, with their headers.
func TestErrorReplies(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{})
	g := newWorld(t, up).start()
	type tc struct {
		name, method, path, token, body string
		setup                           func()
		status                          int
		code, msgPart                   string
		header                          [2]string
	}
	chat := "/v1/personas/psn_demo/chat"
	cases := []tc{
		{name: "no credentials", path: chat, body: `{"userText":"hi"}`, status: 401, code: "unauthenticated"},
		{name: "unknown key", path: chat, token: "mb_nope", body: `{"userText":"hi"}`, status: 401, code: "unauthenticated"},
		{name: "revoked key", path: chat, token: mocktest.KeyRevoked, body: `{"userText":"hi"}`, status: 401, code: "unauthenticated"},
		{name: "unknown persona", path: "/v1/personas/psn_missing/chat", token: mocktest.KeyDemo, body: `{"userText":"hi"}`, status: 404, code: "persona_not_found", msgPart: "psn_missing"},
		{name: "malformed persona id", path: "/v1/personas/nope/chat", token: mocktest.KeyDemo, body: `{"userText":"hi"}`, status: 404, code: "persona_not_found"},
		{name: "unknown route", path: "/v1/nothing", token: mocktest.KeyDemo, body: `{}`, status: 404, code: "not_found"},
		{name: "wrong method", method: "GET", path: chat, token: mocktest.KeyDemo, status: 405, code: "method_not_allowed", header: [2]string{"Allow", "POST"}},
		{name: "wrong method put", method: "PUT", path: chat, token: mocktest.KeyDemo, body: `{}`, status: 405, code: "method_not_allowed", header: [2]string{"Allow", "POST"}},
		{name: "bad json", path: chat, token: mocktest.KeyDemo, body: `{"userText":`, status: 422, code: "validation_error", msgPart: "body"},
		{name: "invalid utf8", path: chat, token: mocktest.KeyDemo, body: "{\"userText\":\"\xc3\x28\"}", status: 422, code: "validation_error", msgPart: "UTF-8"},
		{name: "wrong type", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","stream":"yes"}`, status: 422, code: "validation_error", msgPart: "stream: must be a boolean"},
		{name: "missing userText", path: chat, token: mocktest.KeyDemo, body: `{"modelId":"mock-1"}`, status: 422, code: "validation_error", msgPart: "userText"},
		{name: "temperature", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","temperature":3}`, status: 422, code: "validation_error", msgPart: "temperature: must be between 0 and 2"},
		{name: "tokens over model limit", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","maxOutputTokens":1001}`, status: 422, code: "validation_error", msgPart: "maxOutputTokens"},
		{name: "unknown model", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"gpt-9"}`, status: 422, code: "validation_error", msgPart: "modelId"},
		{name: "model not allowed", path: "/v1/personas/psn_locked/chat", token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"oa-1"}`, status: 422, code: "validation_error", msgPart: "not allowed"},
		{name: "too large", path: chat, token: mocktest.KeyDemo, body: `{"userText":"` + strings.Repeat("x", 5000) + `"}`, status: 413, code: "payload_too_large"},
		{name: "upstream 429", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"oa-1"}`, status: 429, code: "rate_limited",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{FailStatus: 429, RetryAfter: 7 * time.Second}) }, header: [2]string{"Retry-After", "7"}},
		{name: "upstream 500", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"an-1"}`, status: 502, code: "upstream_error",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{FailStatus: 500}) }},
		{name: "upstream 401 hides key", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"oa-1"}`, status: 502, code: "upstream_error",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{APIKey: "a-different-key"}) }},
		{name: "upstream refused", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"dead-1"}`, status: 503, code: "upstream_unavailable", header: [2]string{"Retry-After", "1"}},
		{name: "upstream stalls", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"oa-1"}`, status: 504, code: "upstream_timeout",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{StallFor: 5 * time.Second}) }},
		{name: "stream upstream stalls", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"an-1","stream":true}`, status: 504, code: "upstream_timeout",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{StallFor: 5 * time.Second}) }},
		{name: "stream upstream 500", path: chat, token: mocktest.KeyDemo, body: `{"userText":"hi","modelId":"oa-1","stream":true}`, status: 502, code: "upstream_error",
			setup: func() { up.Srv.SetConfig(mock.ServerConfig{FailStatus: 503}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := g
			if c.setup != nil {
				// Upstream failures open breakers and hold retry-after
				// windows: each such case gets its own gateway.
				up.Srv.SetConfig(mock.ServerConfig{})
				g = newWorld(t, up).start()
				c.setup()
			}
			method := c.method
			if method == "" {
				method = "POST"
			}
			req, _ := http.NewRequest(method, g.Base+c.path, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			r := g.Do(req)
			e := testkit.DecodeErr(t, r)
			if r.Status != c.status || e.Error.Code != c.code {
				t.Fatalf("got %d %s (%s), want %d %s", r.Status, e.Error.Code, e.Error.Message, c.status, c.code)
			}
			if c.msgPart != "" && !strings.Contains(e.Error.Message, c.msgPart) {
				t.Fatalf("message %q lacks %q", e.Error.Message, c.msgPart)
			}
			if c.header[0] != "" && r.Header.Get(c.header[0]) != c.header[1] {
				t.Fatalf("header %s = %q, want %q", c.header[0], r.Header.Get(c.header[0]), c.header[1])
			}
			if r.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id")
			}
			for _, secret := range []string{"sk-test-upstream", "sk-ant-test-upstream", "a-different-key", mocktest.KeyDemo} {
				if strings.Contains(string(r.Body), secret) {
					t.Fatalf("reply leaks %q: %s", secret, r.Body)
				}
			}
		})
	}
}

// TestBodyRefusedOnContentLength sends only headers announcing a huge body:
// the gateway must answer 413 without waiting for it.
func TestBodyRefusedOnContentLength(t *testing.T) {
	g := newWorld(t, nil).start()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{", mocktest.KeyDemo)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no reply before the body was sent: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e testkit.APIError
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error.Code != "payload_too_large" {
		t.Fatalf("body: %v %+v", err, e)
	}
}

// TestConcurrentRequests runs many requests at once to shake out races.
func TestConcurrentRequests(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := newWorld(t, up).start()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			model := []string{"mock-1", "oa-1", "an-1"}[i%3]
			stream := i%2 == 0
			body := fmt.Sprintf(`{"userText":"hi %d","modelId":%q,"stream":%v}`, i, model, stream)
			req, _ := http.NewRequest("POST", g.Base+"/v1/personas/psn_demo/chat", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+mocktest.KeyDemo)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
