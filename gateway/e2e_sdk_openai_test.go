package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// The OpenAI route driven by the official Go SDK, against a gateway of
// real parts and mockllm upstreams of both protocols.

var weatherTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("The weather in a city"),
	Parameters: openai.FunctionParameters{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required":   []string{"city"},
	},
})

func TestOpenAISDKChat(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 7})
	g := newWorld(t, up).start()
	c := g.OpenAISDK(mocktest.KeyDemo)
	for _, model := range sdkModels {
		t.Run(model, func(t *testing.T) {
			ctx := testkit.SDKContext(t)
			params := openai.ChatCompletionNewParams{
				Model: model,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("Be brief."),
					openai.UserMessage("Hello"),
					openai.AssistantMessage("Hi there."),
					openai.UserMessage("How are you?"),
				},
				MaxTokens: openai.Int(50),
			}
			res, err := c.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if res.Object != "chat.completion" || len(res.Choices) != 1 || res.Choices[0].Message.Content == "" {
				t.Fatalf("completion %+v", res)
			}
			if res.Choices[0].FinishReason != "stop" && res.Choices[0].FinishReason != "length" {
				t.Fatalf("finish_reason %q", res.Choices[0].FinishReason)
			}
			if res.Usage.PromptTokens <= 0 || res.Usage.CompletionTokens <= 0 ||
				res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens {
				t.Fatalf("usage %+v", res.Usage)
			}
			if model != "mock-1" && res.Usage.CompletionTokens != 7 {
				t.Fatalf("completion tokens %d, upstream said 7", res.Usage.CompletionTokens)
			}

			params.StreamOptions.IncludeUsage = openai.Bool(true)
			st := c.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for st.Next() {
				acc.AddChunk(st.Current())
				chunks++
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if chunks < 3 || acc.Choices[0].Message.Content == "" {
				t.Fatalf("%d chunks, content %q", chunks, acc.Choices[0].Message.Content)
			}
			if acc.Usage.CompletionTokens != res.Usage.CompletionTokens || acc.Usage.PromptTokens != res.Usage.PromptTokens {
				t.Fatalf("stream usage %+v, non-stream %+v", acc.Usage, res.Usage)
			}
			if model != "mock-1" {
				if acc.Choices[0].Message.Content != res.Choices[0].Message.Content {
					t.Fatalf("stream %q, non-stream %q", acc.Choices[0].Message.Content, res.Choices[0].Message.Content)
				}
			}
		})
	}
}

func TestOpenAISDKToolCalls(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{})
	g := newWorld(t, up).start()
	c := g.OpenAISDK(mocktest.KeyDemo)
	eachModelAndMode(t, func(t *testing.T, model string, stream bool) {
		ctx := testkit.SDKContext(t)
		params := openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
		}
		msg, finish := openAIRun(t, ctx, c, params, stream)
		if finish != "tool_calls" || len(msg.ToolCalls) != 1 {
			t.Fatalf("finish %q, message %+v", finish, msg)
		}
		call := msg.ToolCalls[0]
		if call.Function.Name != "get_weather" || call.ID == "" {
			t.Fatalf("tool call %+v", call)
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil || args["city"] == nil {
			t.Fatalf("arguments %q: %v", call.Function.Arguments, err)
		}
		// Round trip: the call and its result go back; the model answers in text.
		params.Messages = append(params.Messages, msg.ToParam(),
			openai.ToolMessage(`{"temp_c": 21}`, call.ID))
		msg, finish = openAIRun(t, ctx, c, params, stream)
		if finish == "tool_calls" || msg.Content == "" || len(msg.ToolCalls) != 0 {
			t.Fatalf("after the tool result: finish %q, message %+v", finish, msg)
		}
	})
}

func openAIRun(t *testing.T, ctx context.Context, c openai.Client, params openai.ChatCompletionNewParams, stream bool) (openai.ChatCompletionMessage, string) {
	t.Helper()
	if !stream {
		res, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		return res.Choices[0].Message, res.Choices[0].FinishReason
	}
	st := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return acc.Choices[0].Message, acc.Choices[0].FinishReason
}

func TestOpenAISDKErrors(t *testing.T) {
	g := newWorld(t, nil).start()
	ctx := testkit.SDKContext(t)
	ok := openai.ChatCompletionNewParams{Model: "mock-1", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	cases := []struct {
		name   string
		key    string
		params openai.ChatCompletionNewParams
		status int
		param  string
	}{
		{"bad key", "mb_wrong", ok, 401, ""},
		{"unknown model", mocktest.KeyDemo, openai.ChatCompletionNewParams{Model: "nope", Messages: ok.Messages}, 404, ""},
		{"unknown persona", mocktest.KeyDemo, openai.ChatCompletionNewParams{Model: "persona/psn_nope", Messages: ok.Messages}, 404, ""},
		{"bad temperature", mocktest.KeyDemo, openai.ChatCompletionNewParams{Model: "mock-1", Messages: ok.Messages, Temperature: openai.Float(3)}, 400, "temperature"},
		{"n > 1", mocktest.KeyDemo, openai.ChatCompletionNewParams{Model: "mock-1", Messages: ok.Messages, N: openai.Int(2)}, 400, "n"},
		{"no messages", mocktest.KeyDemo, openai.ChatCompletionNewParams{Model: "mock-1", Messages: []openai.ChatCompletionMessageParamUnion{}}, 400, "messages"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oc := g.OpenAISDK(tc.key)
			_, err := oc.Chat.Completions.New(ctx, tc.params)
			var ae *openai.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err %v is not an *openai.Error", err)
			}
			if ae.StatusCode != tc.status || ae.Message == "" || ae.Type == "" || ae.Param != tc.param {
				t.Fatalf("status %d type %q param %q message %q; want %d param %q", ae.StatusCode, ae.Type, ae.Param, ae.Message, tc.status, tc.param)
			}
			if strings.Contains(ae.Message, tc.key) && tc.key != "" {
				t.Fatalf("message echoes the key: %q", ae.Message)
			}
		})
	}
}

// The SDK's own retry honours retry-after: a 429 from a 1 rps bucket is
// retried after the hinted second and then succeeds.
func TestOpenAISDKRateLimitRetry(t *testing.T) {
	g := startRateLimited(t)
	ctx := testkit.SDKContext(t)
	params := openai.ChatCompletionNewParams{Model: "mock-1", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	c := g.OpenAISDK(mocktest.KeyDemo)
	if _, err := c.Chat.Completions.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	// Without retries the next call is a RateLimit error with retry-after.
	var resp *http.Response
	_, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("want a 429 with retry-after, got %v", err)
	}
	// With the SDK's retries it waits the hinted time and succeeds.
	start := time.Now()
	rc := g.OpenAISDK(mocktest.KeyDemo, option.WithMaxRetries(3))
	res, err := rc.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatalf("with retries: %v", err)
	}
	if res.Choices[0].Message.Content == "" {
		t.Fatal("empty answer after retry")
	}
	checkWaitedForBucket(t, start)
}

// A failure after the first chunk is an error the SDK raises, never a
// clean end.
func TestOpenAISDKMidStreamCut(t *testing.T) {
	for _, model := range []string{"oa-1", "an-1"} {
		t.Run(model, func(t *testing.T) {
			up := mocktest.Start(t, mock.ServerConfig{CutAfterTokens: 3})
			g := newWorld(t, up).start()
			oc := g.OpenAISDK(mocktest.KeyDemo)
			st := oc.Chat.Completions.NewStreaming(testkit.SDKContext(t), openai.ChatCompletionNewParams{
				Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			checkCutAfterEvents(t, model, st)
		})
	}
}

func TestOpenAISDKPersonaAndModels(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{})
	g := newWorld(t, up).start()
	ctx := testkit.SDKContext(t)
	c := g.OpenAISDK(mocktest.KeyDemo)
	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "persona/psn_demo/oa-1",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Caller rules."), openai.UserMessage("hi"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := up.Srv.LastRequest()
	var body struct {
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		MaxTokens int `json:"max_tokens"`
	}
	if err := json.Unmarshal(last.Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Messages) != 2 || body.Messages[0].Role != "system" ||
		body.Messages[0].Content != "You are terse.\n\nCaller rules." || body.MaxTokens != 64 {
		t.Fatalf("upstream got %s", last.Body)
	}
	// A persona of another workspace is not found.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "persona/psn_other", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("other workspace's persona: %v", err)
	}

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "an-1,dead-1,mock-1,oa-1" {
		t.Fatalf("models %v", ids)
	}
	m, err := c.Models.Get(ctx, "mock-1")
	if err != nil || m.ID != "mock-1" || m.Object != "model" {
		t.Fatalf("model %+v %v", m, err)
	}
	if _, err := c.Models.Get(ctx, "nope"); !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("unknown model: %v", err)
	}
	// One ledger row per chat request, with the route and the persona.
	recs := g.readLedger()
	if len(recs) != 2 {
		t.Fatalf("%d ledger rows, want 2: %v", len(recs), recs)
	}
	if r := recs[0]; r["route"] != "/v1/chat/completions" || r["persona"] != "psn_demo" || r["model"] != "oa-1" || r["status"] != 200.0 {
		t.Fatalf("ledger row %v", r)
	}
	if r := recs[1]; r["route"] != "/v1/chat/completions" || r["status"] != 404.0 {
		t.Fatalf("ledger row %v", r)
	}
}
