package gateway_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// The Anthropic route driven by the official Go SDK, which authenticates
// with x-api-key and sends anthropic-version.

var weatherToolA = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:        "get_weather",
	Description: anthropic.String("The weather in a city"),
	InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}},
		Required:   []string{"city"},
	},
}}

func TestAnthropicSDKMessages(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 7})
	g := newWorld(t, up).start()
	c := g.AnthropicSDK(mocktest.KeyDemo)
	for _, model := range sdkModels {
		t.Run(model, func(t *testing.T) {
			ctx := testkit.SDKContext(t)
			params := anthropic.MessageNewParams{
				Model:     anthropic.Model(model),
				MaxTokens: 50,
				System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
				Messages: []anthropic.MessageParam{
					anthropic.NewUserMessage(anthropic.NewTextBlock("Hello")),
					anthropic.NewAssistantMessage(anthropic.NewTextBlock("Hi there.")),
					anthropic.NewUserMessage(anthropic.NewTextBlock("How are you?")),
				},
			}
			res, err := c.Messages.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if res.Role != "assistant" || len(res.Content) != 1 || res.Content[0].Type != "text" || res.Content[0].Text == "" {
				t.Fatalf("message %+v", res)
			}
			if res.StopReason != "end_turn" && res.StopReason != "max_tokens" {
				t.Fatalf("stop_reason %q", res.StopReason)
			}
			if res.Usage.InputTokens <= 0 || res.Usage.OutputTokens <= 0 {
				t.Fatalf("usage %+v", res.Usage)
			}
			if model != "mock-1" && res.Usage.OutputTokens != 7 {
				t.Fatalf("output tokens %d, upstream said 7", res.Usage.OutputTokens)
			}
			st := c.Messages.NewStreaming(ctx, params)
			var acc anthropic.Message
			events := 0
			for st.Next() {
				if err := acc.Accumulate(st.Current()); err != nil {
					t.Fatal(err)
				}
				events++
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if events < 5 || len(acc.Content) != 1 || acc.Content[0].Text == "" {
				t.Fatalf("%d events, content %+v", events, acc.Content)
			}
			if acc.Usage.OutputTokens != res.Usage.OutputTokens {
				t.Fatalf("stream usage %+v, non-stream %+v", acc.Usage, res.Usage)
			}
			if model != "mock-1" && acc.Content[0].Text != res.Content[0].Text {
				t.Fatalf("stream %q, non-stream %q", acc.Content[0].Text, res.Content[0].Text)
			}
		})
	}
}

func TestAnthropicSDKToolUse(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{})
	g := newWorld(t, up).start()
	c := g.AnthropicSDK(mocktest.KeyDemo)
	eachModelAndMode(t, func(t *testing.T, model string, stream bool) {
		params := anthropic.MessageNewParams{
			Model:     anthropic.Model(model),
			MaxTokens: 100,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			Tools:     []anthropic.ToolUnionParam{weatherToolA},
		}
		msg := anthropicRun(t, c, params, stream)
		if msg.StopReason != "tool_use" {
			t.Fatalf("stop_reason %q, content %+v", msg.StopReason, msg.Content)
		}
		var use *anthropic.ContentBlockUnion
		for i := range msg.Content {
			if msg.Content[i].Type == "tool_use" {
				use = &msg.Content[i]
			}
		}
		if use == nil || use.Name != "get_weather" || use.ID == "" {
			t.Fatalf("content %+v", msg.Content)
		}
		var input map[string]any
		if err := json.Unmarshal(use.Input, &input); err != nil || input["city"] == nil {
			t.Fatalf("input %s: %v", use.Input, err)
		}
		params.Messages = append(params.Messages, msg.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, `{"temp_c": 21}`, false)))
		msg = anthropicRun(t, c, params, stream)
		if msg.StopReason == "tool_use" || len(msg.Content) == 0 || msg.Content[0].Text == "" {
			t.Fatalf("after the tool result: %+v", msg)
		}
	})
}

func anthropicRun(t *testing.T, c anthropic.Client, params anthropic.MessageNewParams, stream bool) anthropic.Message {
	t.Helper()
	ctx := testkit.SDKContext(t)
	if !stream {
		res, err := c.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		return *res
	}
	st := c.Messages.NewStreaming(ctx, params)
	var acc anthropic.Message
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return acc
}

func TestAnthropicSDKErrors(t *testing.T) {
	g := newWorld(t, nil).start()
	ok := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}
	cases := []struct {
		name   string
		key    string
		params anthropic.MessageNewParams
		status int
		word   string
	}{
		{"bad key", "mb_wrong", anthropic.MessageNewParams{Model: "mock-1", MaxTokens: 10, Messages: ok}, 401, ""},
		{"unknown model", mocktest.KeyDemo, anthropic.MessageNewParams{Model: "nope", MaxTokens: 10, Messages: ok}, 404, "model"},
		{"no messages", mocktest.KeyDemo, anthropic.MessageNewParams{Model: "mock-1", MaxTokens: 10, Messages: []anthropic.MessageParam{}}, 400, "messages"},
		{"tool_choice names no tool", mocktest.KeyDemo, anthropic.MessageNewParams{Model: "mock-1", MaxTokens: 10, Messages: ok,
			Tools: []anthropic.ToolUnionParam{weatherToolA}, ToolChoice: anthropic.ToolChoiceParamOfTool("nope")}, 400, "tool_choice"},
		{"no max_tokens", mocktest.KeyDemo, anthropic.MessageNewParams{Model: "mock-1", Messages: ok}, 400, "max_tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := g.AnthropicSDK(tc.key)
			_, err := c.Messages.New(testkit.SDKContext(t), tc.params)
			var ae *anthropic.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err %v is not an *anthropic.Error", err)
			}
			if ae.StatusCode != tc.status || !strings.Contains(ae.Error(), tc.word) {
				t.Fatalf("status %d %v; want %d naming %q", ae.StatusCode, ae, tc.status, tc.word)
			}
		})
	}
}

func TestAnthropicSDKMidStreamCutAndPersona(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{CutAfterTokens: 3})
	g := newWorld(t, up).start()
	c := g.AnthropicSDK(mocktest.KeyDemo)
	for _, model := range []string{"oa-1", "an-1"} {
		st := c.Messages.NewStreaming(testkit.SDKContext(t), anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 50, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
		checkCutAfterEvents(t, model, st)
	}
	up.Srv.SetConfig(mock.ServerConfig{})
	_, err := c.Messages.New(testkit.SDKContext(t), anthropic.MessageNewParams{
		Model: "persona/psn_demo/an-1", MaxTokens: 50,
		System:   []anthropic.TextBlockParam{{Text: "Caller rules."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := up.Srv.LastRequest()
	var body struct {
		System string `json:"system"`
	}
	if err := json.Unmarshal(last.Body, &body); err != nil || body.System != "You are terse.\n\nCaller rules." {
		t.Fatalf("upstream got %s (%v)", last.Body, err)
	}
	page, err := c.Models.List(testkit.SDKContext(t), anthropic.ModelListParams{})
	if err != nil || len(page.Data) != 4 || page.Data[2].ID != "mock-1" {
		t.Fatalf("models %+v %v", page, err)
	}
}

// Replies the router makes itself (405, 413, 404) are in the route's SDK
// shape too.
func TestSDKRouterErrorShapes(t *testing.T) {
	g := newWorld(t, nil).start()
	big := `{"model":"mock-1","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	r := g.Post("/v1/chat/completions", mocktest.KeyDemo, big)
	var oe struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &oe); r.Status != 413 || err != nil || oe.Error.Type != "invalid_request_error" || oe.Error.Code != "payload_too_large" {
		t.Fatalf("413: %d %s", r.Status, r.Body)
	}
	r = g.Post("/v1/messages", mocktest.KeyDemo, big, "anthropic-version", "2023-06-01")
	var ae struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal(r.Body, &ae); r.Status != 413 || err != nil || ae.Type != "error" || ae.Error.Type != "request_too_large" {
		t.Fatalf("413: %d %s", r.Status, r.Body)
	}
	r = g.Post("/v1/models", mocktest.KeyDemo, "{}")
	if err := json.Unmarshal(r.Body, &oe); r.Status != 405 || err != nil || oe.Error.Type == "" || r.Header.Get("Allow") != "GET" {
		t.Fatalf("405: %d %v %s", r.Status, r.Header, r.Body)
	}
	r = g.Post("/v1/messages", mocktest.KeyDemo, `{"model":`, "anthropic-version", "2023-06-01")
	if err := json.Unmarshal(r.Body, &ae); r.Status != 400 || err != nil || ae.Error.Type != "invalid_request_error" || !strings.Contains(ae.Error.Message, "body") {
		t.Fatalf("malformed: %d %s", r.Status, r.Body)
	}
}

// Anthropic's SDK raises RateLimitError on a 429, and its own retries
// wait for retry-after and then succeed.
func TestAnthropicSDKRateLimitRetry(t *testing.T) {
	g := startRateLimited(t)
	params := anthropic.MessageNewParams{Model: "mock-1", MaxTokens: 20,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	c := g.AnthropicSDK(mocktest.KeyDemo)
	if _, err := c.Messages.New(testkit.SDKContext(t), params); err != nil {
		t.Fatal(err)
	}
	_, err := c.Messages.New(testkit.SDKContext(t), params)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("want a 429 with retry-after, got %v", err)
	}
	rc := g.AnthropicSDK(mocktest.KeyDemo, option.WithMaxRetries(3))
	start := time.Now()
	res, err := rc.Messages.New(testkit.SDKContext(t), params)
	if err != nil || len(res.Content) == 0 {
		t.Fatalf("with retries: %v", err)
	}
	checkWaitedForBucket(t, start)
}
