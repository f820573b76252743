package mock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

// startServer runs a Server on a loopback port until the test ends.
func startServer(t *testing.T, cfg ServerConfig) (*Server, string) {
	t.Helper()
	s := NewServer(cfg)
	return s, serveLoopback(t, s)
}

// serveLoopback serves s on a loopback port until the test ends, then
// checks that it shut down cleanly; it returns the address.
func serveLoopback(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
	return ln.Addr().String()
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}

const anthropicVersion = "2023-06-01"

type reply struct {
	status  int
	header  http.Header
	body    []byte
	readErr error
	length  int64
}

// call sends a request with net/http and reads the whole body, keeping a
// read error (a cut body) rather than failing.
func call(t *testing.T, method, addr, path, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b, readErr: rerr, length: resp.ContentLength}
}

func openAIBody(stream, usage bool, extra string) string {
	s := `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a pirate."},{"role":"user","content":"Where is the treasure, matey?"}]`
	if stream {
		s += `,"stream":true`
	}
	if usage {
		s += `,"stream_options":{"include_usage":true}`
	}
	return s + extra + "}"
}

func anthropicBody(stream bool, maxTokens int) string {
	s := `{"model":"claude-sonnet","max_tokens":` + strconv.Itoa(maxTokens) + `,"system":"You are a pirate.","messages":[{"role":"user","content":[{"type":"text","text":"Where is the treasure, matey?"}]}]`
	if stream {
		s += `,"stream":true`
	}
	return s + "}"
}

var pirateInput = CountTokens("You are a pirate.") + CountTokens("Where is the treasure, matey?")

// The mirrors of the real response schemas; decoding is strict so a field
// we send that the real API does not is caught.

type oaUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
		AudioTokens  int64 `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int64 `json:"reasoning_tokens"`
		AudioTokens              int64 `json:"audio_tokens"`
		AcceptedPredictionTokens int64 `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int64 `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

// oaEnvelope is what every OpenAI object carries, a completion and a
// chunk alike.
type oaEnvelope struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	ServiceTier       string `json:"service_tier"`
	SystemFingerprint string `json:"system_fingerprint"`
}

type oaCompletion struct {
	oaEnvelope
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role        string  `json:"role"`
			Content     string  `json:"content"`
			Refusal     *string `json:"refusal"`
			Annotations []any   `json:"annotations"`
		} `json:"message"`
		Logprobs     any    `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage oaUsage `json:"usage"`
}

type oaChunk struct {
	oaEnvelope
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"delta"`
		Logprobs     any     `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaUsage `json:"usage"`
}

type oaError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// anDeltaUsage is message_delta's cumulative usage.
type anDeltaUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// anUsage is a message's usage: message_delta's counts, the cache
// writes by TTL and the service tier.
type anUsage struct {
	anDeltaUsage
	CacheCreation struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	ServiceTier string `json:"service_tier"`
}

type anMessage struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        anUsage `json:"usage"`
}

type anError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
}

type sseEvent struct {
	name string
	data string
}

// parseSSE splits a complete event-stream body into events (test-side,
// independent of any parser in the code under test).
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	var evs []sseEvent
	for _, block := range strings.Split(string(body), "\n\n") {
		if block == "" {
			continue
		}
		var ev sseEvent
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			default:
				t.Fatalf("unexpected SSE line %q", line)
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestOpenAINonStream(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	tests := []struct {
		name       string
		extra      string
		wantTokens int64
		wantFinish string
	}{
		{"complete", "", DefaultOutputTokens, "stop"},
		{"max_tokens cuts", `,"max_tokens":5`, 5, "length"},
		{"max_completion_tokens wins", `,"max_tokens":3,"max_completion_tokens":4`, 4, "length"},
		{"cap above length", `,"max_tokens":500,"temperature":0.2`, DefaultOutputTokens, "stop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(false, false, tc.extra))
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			var c oaCompletion
			strict(t, r.body, &c)
			if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Model != "gpt-4o-mini" || c.Created == 0 {
				t.Fatalf("header fields: %+v", c)
			}
			if len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" || c.Choices[0].Message.Refusal != nil {
				t.Fatalf("choices: %+v", c.Choices)
			}
			ch := c.Choices[0]
			if ch.FinishReason != tc.wantFinish {
				t.Errorf("finish_reason %q, want %q", ch.FinishReason, tc.wantFinish)
			}
			if got := CountTokens(ch.Message.Content); got != tc.wantTokens || c.Usage.CompletionTokens != tc.wantTokens {
				t.Errorf("content %q: %d tokens, usage %d, want %d", ch.Message.Content, got, c.Usage.CompletionTokens, tc.wantTokens)
			}
			if c.Usage.PromptTokens != pirateInput || c.Usage.TotalTokens != pirateInput+tc.wantTokens {
				t.Errorf("usage %+v, want prompt %d", c.Usage, pirateInput)
			}
		})
	}
}

func TestAnthropicNonStream(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	tests := []struct {
		name       string
		max        int
		wantTokens int64
		wantStop   string
	}{
		{"complete", 100, DefaultOutputTokens, "end_turn"},
		{"max_tokens cuts", 6, 6, "max_tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "POST", addr, "/v1/messages", anthropicBody(false, tc.max), "anthropic-version", anthropicVersion)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var m anMessage
			strict(t, r.body, &m)
			if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != "claude-sonnet" {
				t.Fatalf("fields: %+v", m)
			}
			if len(m.Content) != 1 || m.Content[0].Type != "text" || m.StopSequence != nil || m.StopReason == nil {
				t.Fatalf("content: %+v", m)
			}
			if *m.StopReason != tc.wantStop {
				t.Errorf("stop_reason %q, want %q", *m.StopReason, tc.wantStop)
			}
			if got := CountTokens(m.Content[0].Text); got != tc.wantTokens || m.Usage.OutputTokens != tc.wantTokens {
				t.Errorf("text %q: %d tokens, usage %d, want %d", m.Content[0].Text, got, m.Usage.OutputTokens, tc.wantTokens)
			}
			if m.Usage.InputTokens != pirateInput {
				t.Errorf("input_tokens %d, want %d", m.Usage.InputTokens, pirateInput)
			}
		})
	}
}

// openAIStream reads a whole OpenAI stream and checks its shape.
func openAIStream(t *testing.T, body []byte, includeUsage bool) (content string, finish string, usage *oaUsage) {
	t.Helper()
	evs := parseSSE(t, body)
	if len(evs) < 3 || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", body)
	}
	evs = evs[:len(evs)-1]
	var id string
	for i, ev := range evs {
		if ev.name != "" {
			t.Fatalf("event %d has a name %q", i, ev.name)
		}
		var c oaChunk
		strict(t, []byte(ev.data), &c)
		if c.Object != "chat.completion.chunk" || (id != "" && c.ID != id) {
			t.Fatalf("chunk %d: %+v", i, c)
		}
		id = c.ID
		hasUsageField := strings.Contains(ev.data, `"usage":`)
		if hasUsageField != includeUsage {
			t.Fatalf("chunk %d: usage field present=%v with include_usage=%v", i, hasUsageField, includeUsage)
		}
		switch {
		case i == 0:
			if len(c.Choices) != 1 || c.Choices[0].Delta.Role == nil || *c.Choices[0].Delta.Role != "assistant" ||
				c.Choices[0].Delta.Content == nil || *c.Choices[0].Delta.Content != "" {
				t.Fatalf("first chunk is not the role chunk: %s", ev.data)
			}
		case len(c.Choices) == 0:
			if !includeUsage || i != len(evs)-1 || c.Usage == nil {
				t.Fatalf("unexpected usage chunk %d: %s", i, ev.data)
			}
			if !strings.Contains(ev.data, `"choices":[]`) {
				t.Fatalf("usage chunk choices not []: %s", ev.data)
			}
			usage = c.Usage
		case c.Choices[0].FinishReason != nil:
			finish = *c.Choices[0].FinishReason
			if c.Choices[0].Delta.Content != nil || c.Usage != nil {
				t.Fatalf("finish chunk carries content or usage: %s", ev.data)
			}
		default:
			if finish != "" || c.Choices[0].Delta.Content == nil || *c.Choices[0].Delta.Content == "" || c.Usage != nil {
				t.Fatalf("bad delta chunk %d: %s", i, ev.data)
			}
			if CountTokens(*c.Choices[0].Delta.Content) != 1 {
				t.Fatalf("delta %q is not one token", *c.Choices[0].Delta.Content)
			}
			content += *c.Choices[0].Delta.Content
		}
	}
	if finish == "" || (includeUsage && usage == nil) {
		t.Fatalf("missing finish or usage chunk: %q", body)
	}
	return content, finish, usage
}

// anthropicStream reads a whole Anthropic stream and checks its event
// sequence.
func anthropicStream(t *testing.T, body []byte) (content, stop string, in, out int64) {
	t.Helper()
	evs := parseSSE(t, body)
	var names []string
	for _, ev := range evs {
		var typed struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(ev.data), &typed); err != nil || typed.Type != ev.name {
			t.Fatalf("event %q data type %q (%v)", ev.name, typed.Type, err)
		}
		if ev.name == "content_block_delta" {
			if len(names) == 0 || names[len(names)-1] != "content_block_delta" {
				names = append(names, ev.name)
			}
		} else {
			names = append(names, ev.name)
		}
		switch ev.name {
		case "message_start":
			var v struct {
				Type    string
				Message struct {
					anMessage
				} `json:"message"`
			}
			strict(t, []byte(ev.data), &v)
			m := v.Message
			if !strings.HasPrefix(m.ID, "msg_") || m.Role != "assistant" || len(m.Content) != 0 || m.StopReason != nil || m.Usage.OutputTokens != 1 {
				t.Fatalf("message_start: %s", ev.data)
			}
			in = m.Usage.InputTokens
		case "content_block_delta":
			var v struct {
				Type  string `json:"type"`
				Index int    `json:"index"`
				Delta struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"delta"`
			}
			strict(t, []byte(ev.data), &v)
			if v.Delta.Type != "text_delta" || CountTokens(v.Delta.Text) != 1 {
				t.Fatalf("delta: %s", ev.data)
			}
			content += v.Delta.Text
		case "message_delta":
			var v struct {
				Type  string `json:"type"`
				Delta struct {
					StopReason   string  `json:"stop_reason"`
					StopSequence *string `json:"stop_sequence"`
				} `json:"delta"`
				Usage anDeltaUsage `json:"usage"`
			}
			strict(t, []byte(ev.data), &v)
			stop, out = v.Delta.StopReason, v.Usage.OutputTokens
			if v.Usage.InputTokens != in {
				t.Fatalf("message_delta input_tokens %d, message_start %d", v.Usage.InputTokens, in)
			}
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("event sequence\n got %s\nwant %s", got, want)
	}
	return content, stop, in, out
}

func TestStreamsMatchNonStream(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	t.Run("openai", func(t *testing.T) {
		for _, extra := range []string{"", `,"max_tokens":4`} {
			var whole oaCompletion
			strict(t, call(t, "POST", addr, "/v1/chat/completions", openAIBody(false, false, extra)).body, &whole)
			for _, usage := range []bool{false, true} {
				r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(true, usage, extra))
				if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream; charset=utf-8" || r.readErr != nil {
					t.Fatalf("status %d type %q err %v", r.status, r.header.Get("Content-Type"), r.readErr)
				}
				content, finish, u := openAIStream(t, r.body, usage)
				if content != whole.Choices[0].Message.Content || finish != whole.Choices[0].FinishReason {
					t.Fatalf("stream %q/%s != non-stream %q/%s", content, finish, whole.Choices[0].Message.Content, whole.Choices[0].FinishReason)
				}
				if usage && (u.PromptTokens != whole.Usage.PromptTokens || u.CompletionTokens != CountTokens(content) || u.TotalTokens != whole.Usage.TotalTokens) {
					t.Fatalf("stream usage %+v, non-stream %+v", u, whole.Usage)
				}
			}
		}
	})
	t.Run("anthropic", func(t *testing.T) {
		for _, max := range []int{100, 3} {
			var whole anMessage
			strict(t, call(t, "POST", addr, "/v1/messages", anthropicBody(false, max), "anthropic-version", anthropicVersion).body, &whole)
			r := call(t, "POST", addr, "/v1/messages", anthropicBody(true, max), "anthropic-version", anthropicVersion)
			if r.status != 200 || r.readErr != nil {
				t.Fatalf("status %d err %v", r.status, r.readErr)
			}
			content, stop, in, out := anthropicStream(t, r.body)
			if content != whole.Content[0].Text || stop != *whole.StopReason || in != whole.Usage.InputTokens || out != whole.Usage.OutputTokens {
				t.Fatalf("stream %q %s %d/%d != non-stream %+v", content, stop, in, out, whole)
			}
		}
	})
}

func TestWireMatchesInProcessProvider(t *testing.T) {
	_, addr := startServer(t, ServerConfig{OutputTokens: 12})
	req := &providers.Request{Model: "same-model", System: "Be kind.", UserText: "Tell me a story.", MaxOutputTokens: 100}
	want, _ := New("p", Config{OutputTokens: 12}).Complete(context.Background(), req)

	var oa oaCompletion
	strict(t, call(t, "POST", addr, "/v1/chat/completions",
		`{"model":"same-model","messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Tell me a story."}],"max_tokens":100}`).body, &oa)
	var an anMessage
	strict(t, call(t, "POST", addr, "/v1/messages",
		`{"model":"same-model","max_tokens":100,"system":"Be kind.","messages":[{"role":"user","content":"Tell me a story."}]}`,
		"anthropic-version", anthropicVersion).body, &an)
	if oa.Choices[0].Message.Content != want.Content || an.Content[0].Text != want.Content {
		t.Fatalf("openai %q, anthropic %q, in-process %q", oa.Choices[0].Message.Content, an.Content[0].Text, want.Content)
	}
	if oa.Usage.PromptTokens != want.Usage.InputTokens || an.Usage.InputTokens != want.Usage.InputTokens {
		t.Fatalf("input tokens openai %d anthropic %d in-process %d", oa.Usage.PromptTokens, an.Usage.InputTokens, want.Usage.InputTokens)
	}
}

func TestRequestErrors(t *testing.T) {
	_, addr := startServer(t, ServerConfig{})
	ver := []string{"anthropic-version", anthropicVersion}
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		hdr        []string
		wantStatus int
		wantType   string // error.type
		wantText   string // in error.message
	}{
		{"openai bad JSON", "POST", "/v1/chat/completions", `{"model":`, nil, 400, "invalid_request_error", "could not parse the JSON"},
		{"openai wrong type", "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":7}]}`, nil, 400, "invalid_request_error", "messages[0].content"},
		{"openai no model", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, nil, 400, "invalid_request_error", "model"},
		{"openai no messages", "POST", "/v1/chat/completions", `{"model":"m"}`, nil, 400, "invalid_request_error", "'messages'"},
		{"openai empty messages", "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, nil, 400, "invalid_request_error", "empty array"},
		{"openai max_tokens 0", "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, nil, 400, "invalid_request_error", "max_tokens"},
		{"openai temperature 3", "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}`, nil, 400, "invalid_request_error", "temperature"},
		{"openai GET", "GET", "/v1/chat/completions", ``, nil, 405, "invalid_request_error", "Invalid method"},
		{"unknown route", "POST", "/v1/embeddings", `{}`, nil, 404, "invalid_request_error", "Invalid URL (POST /v1/embeddings)"},
		{"anthropic no version", "POST", "/v1/messages", anthropicBody(false, 5), nil, 400, "invalid_request_error", "anthropic-version: header is required"},
		{"anthropic no max_tokens", "POST", "/v1/messages", `{"model":"c","messages":[{"role":"user","content":"x"}]}`, ver, 400, "invalid_request_error", "max_tokens: Field required"},
		{"anthropic bad JSON", "POST", "/v1/messages", `{`, ver, 400, "invalid_request_error", "parsing the body"},
		{"anthropic no messages", "POST", "/v1/messages", `{"model":"c","max_tokens":3}`, ver, 400, "invalid_request_error", "messages: Field required"},
		{"anthropic temperature 1.5", "POST", "/v1/messages", `{"model":"c","max_tokens":3,"temperature":1.5,"messages":[{"role":"user","content":"x"}]}`, ver, 400, "invalid_request_error", "temperature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, addr, tc.path, tc.body, tc.hdr...)
			if r.status != tc.wantStatus || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d type %q, want %d: %s", r.status, r.header.Get("Content-Type"), tc.wantStatus, r.body)
			}
			typ, msg := decodeError(t, tc.path, r.body)
			if typ != tc.wantType || !strings.Contains(msg, tc.wantText) {
				t.Fatalf("error %q %q, want %q containing %q", typ, msg, tc.wantType, tc.wantText)
			}
		})
	}
}

// decodeError decodes either protocol's error body strictly.
func decodeError(t *testing.T, path string, body []byte) (typ, msg string) {
	t.Helper()
	if path == "/v1/messages" {
		var e anError
		strict(t, body, &e)
		if e.Type != "error" {
			t.Fatalf("anthropic error body type %q", e.Type)
		}
		return e.Error.Type, e.Error.Message
	}
	var e oaError
	strict(t, body, &e)
	return e.Error.Type, e.Error.Message
}

func TestFailStatus(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		status     int
		retry      time.Duration
		wantType   string
		wantCode   string
		wantHeader string
	}{
		{"openai 429", "/v1/chat/completions", 429, 2 * time.Second, "requests", "rate_limit_exceeded", "2"},
		{"openai 503", "/v1/chat/completions", 503, 500 * time.Millisecond, "server_error", "", "0.5"},
		{"openai 500 no retry-after", "/v1/chat/completions", 500, time.Second, "server_error", "", ""},
		{"openai 401", "/v1/chat/completions", 401, 0, "invalid_request_error", "invalid_api_key", ""},
		{"anthropic 529", "/v1/messages", 529, 1500 * time.Millisecond, "overloaded_error", "", "1.5"},
		{"anthropic 429", "/v1/messages", 429, 3 * time.Second, "rate_limit_error", "", "3"},
		{"anthropic 503", "/v1/messages", 503, 0, "api_error", "", ""},
		{"anthropic 400", "/v1/messages", 400, time.Second, "invalid_request_error", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, ServerConfig{FailStatus: tc.status, RetryAfter: tc.retry})
			for _, stream := range []bool{false, true} {
				body := openAIBody(stream, false, "")
				if tc.path == "/v1/messages" {
					body = anthropicBody(stream, 10)
				}
				r := call(t, "POST", addr, tc.path, body, "anthropic-version", anthropicVersion)
				if r.status != tc.status || r.header.Get("Retry-After") != tc.wantHeader {
					t.Fatalf("status %d retry-after %q, want %d %q", r.status, r.header.Get("Retry-After"), tc.status, tc.wantHeader)
				}
				typ, _ := decodeError(t, tc.path, r.body)
				if typ != tc.wantType {
					t.Fatalf("error type %q, want %q", typ, tc.wantType)
				}
				if tc.path != "/v1/messages" {
					var e oaError
					strict(t, r.body, &e)
					if code := e.Error.Code; (code == nil) != (tc.wantCode == "") || (code != nil && *code != tc.wantCode) {
						t.Fatalf("code %v, want %q", code, tc.wantCode)
					}
				}
			}
			if st := s.Stats(); st.Failures != 2 || st.Requests != 2 || st.StreamsStarted != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFailCountRecovers(t *testing.T) {
	s, addr := startServer(t, ServerConfig{FailStatus: 503, FailCount: 2})
	want := []int{503, 503, 200, 200}
	for i, w := range want {
		if r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(false, false, "")); r.status != w {
			t.Fatalf("request %d: status %d, want %d", i, r.status, w)
		}
	}
	s.SetConfig(s.Config()) // a new config restarts the budget
	if r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(false, false, "")); r.status != 503 {
		t.Fatalf("after SetConfig: status %d, want 503", r.status)
	}
	if st := s.Stats(); st.Failures != 3 || st.Requests != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStall(t *testing.T) {
	const stall = 150 * time.Millisecond
	_, addr := startServer(t, ServerConfig{StallFor: stall, TimeToFirstToken: 50 * time.Millisecond})
	for _, stream := range []bool{false, true} {
		start := time.Now()
		r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(stream, false, ""))
		if el := time.Since(start); r.status != 200 || el < stall+50*time.Millisecond {
			t.Fatalf("stream=%v: status %d after %v, want 200 after ≥ %v", stream, r.status, el, stall+50*time.Millisecond)
		}
	}
}

// rawRequest writes an HTTP/1.1 request on a fresh connection.
func rawRequest(t *testing.T, addr, path, body string, hdr ...string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n")
	for i := 0; i+1 < len(hdr); i += 2 {
		b.WriteString(hdr[i] + ": " + hdr[i+1] + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return c
}
func TestStallUntilClientLeaves(t *testing.T) {
	s, addr := startServer(t, ServerConfig{StallFor: -1})
	for _, stream := range []bool{false, true} {
		c := rawRequest(t, addr, "/v1/chat/completions", openAIBody(stream, false, ""))
		testkit.Eventually(t, 5*time.Second, "the stall to begin", func() bool { return s.Stats().OpenStalls == 1 })
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		if n, err := c.Read(b[:]); n != 0 || !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
			t.Fatalf("stalled server sent %d bytes, err %v", n, err)
		}
		c.Close()
		testkit.Eventually(t, 5*time.Second, "the stall to end after the client left", func() bool { return s.Stats().OpenStalls == 0 })
	}
	// A stall in progress does not hold up Shutdown (Cleanup checks it).
	rawRequest(t, addr, "/v1/messages", anthropicBody(true, 5), "anthropic-version", anthropicVersion)
	testkit.Eventually(t, 5*time.Second, "the stall to begin", func() bool { return s.Stats().OpenStalls == 1 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestCutAfterTokens(t *testing.T) {
	_, addr := startServer(t, ServerConfig{CutAfterTokens: 3})
	t.Run("openai stream", func(t *testing.T) {
		r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(true, true, ""))
		if r.status != 200 || !errors.Is(r.readErr, io.ErrUnexpectedEOF) {
			t.Fatalf("status %d read error %v, want 200 and an unexpected EOF", r.status, r.readErr)
		}
		if bytes.Contains(r.body, []byte("[DONE]")) || bytes.Count(r.body, []byte(`"delta":{"content"`)) != 3 {
			t.Fatalf("cut stream body: %s", r.body)
		}
	})
	t.Run("anthropic stream", func(t *testing.T) {
		r := call(t, "POST", addr, "/v1/messages", anthropicBody(true, 50), "anthropic-version", anthropicVersion)
		if r.status != 200 || !errors.Is(r.readErr, io.ErrUnexpectedEOF) {
			t.Fatalf("status %d read error %v", r.status, r.readErr)
		}
		if bytes.Contains(r.body, []byte("message_stop")) || bytes.Count(r.body, []byte("event: content_block_delta")) != 3 {
			t.Fatalf("cut stream body: %s", r.body)
		}
	})
	t.Run("shorter answer completes", func(t *testing.T) {
		r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(true, false, `,"max_tokens":2`))
		if r.readErr != nil {
			t.Fatalf("read error %v", r.readErr)
		}
		openAIStream(t, r.body, false)
	})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		t.Run("non-stream "+path, func(t *testing.T) {
			body := openAIBody(false, false, "")
			if path == "/v1/messages" {
				body = anthropicBody(false, 50)
			}
			r := call(t, "POST", addr, path, body, "anthropic-version", anthropicVersion)
			if r.status != 200 || !errors.Is(r.readErr, io.ErrUnexpectedEOF) || int64(len(r.body)) >= r.length {
				t.Fatalf("status %d err %v: %d of %d bytes", r.status, r.readErr, len(r.body), r.length)
			}
		})
	}
}

func TestErrorEventAfterTokens(t *testing.T) {
	s, addr := startServer(t, ServerConfig{ErrorEventAfterTokens: 2})
	t.Run("openai", func(t *testing.T) {
		r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(true, true, ""))
		if r.status != 200 || r.readErr != nil {
			t.Fatalf("status %d err %v", r.status, r.readErr)
		}
		evs := parseSSE(t, r.body)
		last := evs[len(evs)-1]
		var e oaError
		strict(t, []byte(last.data), &e)
		if e.Error.Type != "server_error" || bytes.Contains(r.body, []byte("[DONE]")) ||
			bytes.Count(r.body, []byte(`"delta":{"content"`)) != 2 {
			t.Fatalf("body: %s", r.body)
		}
	})
	t.Run("anthropic", func(t *testing.T) {
		r := call(t, "POST", addr, "/v1/messages", anthropicBody(true, 50), "anthropic-version", anthropicVersion)
		if r.status != 200 || r.readErr != nil {
			t.Fatalf("status %d err %v", r.status, r.readErr)
		}
		evs := parseSSE(t, r.body)
		last := evs[len(evs)-1]
		var e anError
		strict(t, []byte(last.data), &e)
		if last.name != "error" || e.Error.Type != "overloaded_error" || bytes.Contains(r.body, []byte("message_stop")) ||
			bytes.Count(r.body, []byte("event: content_block_delta")) != 2 {
			t.Fatalf("body: %s", r.body)
		}
	})
	if st := s.Stats(); st.StreamsCompleted != 2 || st.StreamsAborted != 0 || st.OpenStreams != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestChoicesNull(t *testing.T) {
	tests := []struct {
		name string
		null bool
		want string
	}{
		{"empty array by default", false, `"choices":[],"usage":{`},
		{"null with the knob", true, `"choices":null,"usage":{`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startServer(t, ServerConfig{ChoicesNull: tc.null})
			r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(true, true, ""))
			evs := parseSSE(t, r.body)
			usageChunk := evs[len(evs)-2].data
			if !strings.Contains(usageChunk, tc.want) {
				t.Fatalf("usage chunk %s lacks %s", usageChunk, tc.want)
			}
			var c oaChunk
			strict(t, []byte(usageChunk), &c)
			if c.Usage == nil || c.Usage.CompletionTokens != DefaultOutputTokens || len(c.Choices) != 0 {
				t.Fatalf("usage chunk %+v", c)
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	const key = "sk-test-0123456789abcdef"
	const wrong = "sk-wrong-9876543210fedcba"
	s, addr := startServer(t, ServerConfig{APIKey: key})
	tests := []struct {
		name        string
		path        string
		hdr         []string
		wantStatus  int
		wantType    string
		wantPresent bool
	}{
		{"openai missing", "/v1/chat/completions", nil, 401, "invalid_request_error", false},
		{"openai wrong", "/v1/chat/completions", []string{"Authorization", "Bearer " + wrong}, 401, "invalid_request_error", true},
		{"openai x-api-key is not enough", "/v1/chat/completions", []string{"x-api-key", key}, 401, "invalid_request_error", false},
		{"openai right", "/v1/chat/completions", []string{"Authorization", "Bearer " + key}, 200, "", true},
		{"anthropic missing", "/v1/messages", []string{"anthropic-version", anthropicVersion}, 401, "authentication_error", false},
		{"anthropic wrong", "/v1/messages", []string{"anthropic-version", anthropicVersion, "x-api-key", wrong}, 401, "authentication_error", true},
		{"anthropic right", "/v1/messages", []string{"anthropic-version", anthropicVersion, "x-api-key", key}, 200, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := openAIBody(false, false, "")
			if tc.path == "/v1/messages" {
				body = anthropicBody(false, 10)
			}
			r := call(t, "POST", addr, tc.path, body, tc.hdr...)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantType != "" {
				if typ, _ := decodeError(t, tc.path, r.body); typ != tc.wantType {
					t.Fatalf("error type %q, want %q", typ, tc.wantType)
				}
			}
			if bytes.Contains(r.body, []byte(wrong)) || bytes.Contains(r.body, []byte(key)) {
				t.Fatalf("reply echoes a key: %s", r.body)
			}
			last, ok := s.LastRequest()
			if !ok || last.AuthPresent != tc.wantPresent || last.AuthMatched != (tc.wantStatus == 200) {
				t.Fatalf("LastRequest auth present %v matched %v", last.AuthPresent, last.AuthMatched)
			}
			if string(last.Body) != body || last.Path != tc.path || last.Method != "POST" {
				t.Fatalf("LastRequest %s %s body %q", last.Method, last.Path, last.Body)
			}
			for name, vals := range last.Header {
				for _, v := range vals {
					if strings.Contains(v, key) || strings.Contains(v, wrong) {
						t.Fatalf("LastRequest header %s holds a key", name)
					}
				}
			}
			if tc.wantPresent && tc.path == "/v1/messages" && last.Header.Get("X-Api-Key") != "[redacted]" {
				t.Fatalf("x-api-key recorded as %q", last.Header.Get("X-Api-Key"))
			}
		})
	}
	if last, _ := s.LastRequest(); last.Header.Get("Anthropic-Version") != anthropicVersion {
		t.Fatalf("anthropic-version not recorded: %v", last.Header)
	}
}

func TestClientGoneMidStream(t *testing.T) {
	tests := []struct {
		name string
		path string
		body string
		hdr  []string
	}{
		{"openai", "/v1/chat/completions", openAIBody(true, true, ""), nil},
		{"anthropic", "/v1/messages", anthropicBody(true, 1000), []string{"anthropic-version", anthropicVersion}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, ServerConfig{TokenDelay: 20 * time.Millisecond, OutputTokens: 1000})
			c := rawRequest(t, addr, tc.path, tc.body, tc.hdr...)
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
				t.Fatalf("status line %q: %v", status, err)
			}
			for seen := 0; seen < 2; {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) || strings.Contains(line, "text_delta") {
					seen++
				}
			}
			testkit.Eventually(t, 5*time.Second, "the stream to be open", func() bool { return s.Stats().OpenStreams == 1 })
			c.Close()
			testkit.Eventually(t, 5*time.Second, "the server to notice the client left", func() bool {
				st := s.Stats()
				return st.StreamsAborted == 1 && st.OpenStreams == 0
			})
			if st := s.Stats(); st.StreamsCompleted != 0 || st.StreamsStarted != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestShutdownEndsSlowStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{TokenDelay: time.Hour})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := rawRequest(t, ln.Addr().String(), "/v1/chat/completions", openAIBody(true, false, ""))
	testkit.Eventually(t, 5*time.Second, "the stream to start", func() bool { return s.Stats().OpenStreams == 1 })
	done := make(chan error, 1)
	go func() { done <- s.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown waits for a stream with an hour between tokens")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.StreamsAborted != 1 || st.OpenStreams != 0 {
		t.Fatalf("stats %+v", st)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if bytes.Contains(b, []byte("[DONE]")) {
		t.Fatal("a stream ended by Shutdown sent its end marker")
	}
}

func TestControlEndpoints(t *testing.T) {
	s, addr := startServer(t, ServerConfig{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"stats", "GET", "/_mock/stats", "", 200, `"requests":0`},
		{"get config", "GET", "/_mock/config", "", 200, `"outputTokens":20`},
		{"put unknown field", "PUT", "/_mock/config", `{"bogus":1}`, 400, "bogus"},
		{"put bad status", "PUT", "/_mock/config", `{"failStatus":700}`, 400, "failStatus:"},
		{"put bad duration", "PUT", "/_mock/config", `{"tokenDelay":5}`, 400, "duration"},
		{"put", "PUT", "/_mock/config", `{"failStatus":429,"retryAfter":"3s","tokenDelay":"1ms","apiKey":"sk-secret-key-value"}`, 200, `"apiKeySet":true`},
		{"get hides key", "GET", "/_mock/config", "", 200, `"retryAfter":"3s"`},
		{"wrong method", "POST", "/_mock/stats", "", 405, "method"},
		{"unknown", "GET", "/_mock/nope", "", 404, "no such"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, addr, tc.path, tc.body)
			if r.status != tc.wantStatus || !strings.Contains(string(r.body), tc.wantBody) {
				t.Fatalf("%d %s, want %d containing %s", r.status, r.body, tc.wantStatus, tc.wantBody)
			}
			if strings.Contains(string(r.body), "sk-secret") {
				t.Fatalf("control endpoint shows the key: %s", r.body)
			}
		})
	}
	cfg := s.Config()
	if cfg.FailStatus != 429 || cfg.RetryAfter != 3*time.Second || cfg.APIKey != "sk-secret-key-value" || cfg.OutputTokens != DefaultOutputTokens {
		t.Fatalf("config after PUT: %+v", cfg)
	}
	// The GET body PUT back keeps the key.
	r := call(t, "GET", addr, "/_mock/config", "")
	if r2 := call(t, "PUT", addr, "/_mock/config", string(r.body)); r2.status != 200 || s.Config().APIKey != "sk-secret-key-value" {
		t.Fatalf("round trip: %d %s, key kept %v", r2.status, r2.body, s.Config().APIKey != "")
	}
	if r := call(t, "POST", addr, "/v1/chat/completions", openAIBody(false, false, ""), "Authorization", "Bearer sk-secret-key-value"); r.status != 429 || r.header.Get("Retry-After") != "3" {
		t.Fatalf("after PUT: %d retry-after %q", r.status, r.header.Get("Retry-After"))
	}
	var st Stats
	strict(t, call(t, "GET", addr, "/_mock/stats", "").body, &st)
	if st.Requests != 1 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerConfigValidate(t *testing.T) {
	providertest.Configs(t, []providertest.ConfigCase[ServerConfig]{
		{Name: "zero ok", Cfg: ServerConfig{}},
		{Name: "stall forever ok", Cfg: ServerConfig{StallFor: -1}},
		{Name: "everything wrong", Cfg: ServerConfig{TimeToFirstToken: -1, TokenDelay: -1, OutputTokens: -1, FailStatus: 200, FailCount: -1, RetryAfter: -1, CutAfterTokens: -1, ErrorEventAfterTokens: -1},
			Want: []string{"timeToFirstToken:", "tokenDelay:", "outputTokens:", "failStatus:", "failCount:", "retryAfter:", "cutAfterTokens:", "errorEventAfterTokens:"}},
	}, nil)
}
