package gateway_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// pngPixel is a 1×1 PNG, base64: a real image both protocols accept.
var pngPixel = base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"))

// TestSDKImagesCrossProtocol: an image in a user turn reaches the upstream
// in the upstream's own form, whichever SDK sent it: OpenAI image_url data
// URLs become Anthropic base64 image blocks and back, URLs stay URLs, and
// what cannot be carried (OpenAI's detail to Anthropic, a non-image data
// URL) is a 400 naming the field.
func TestSDKImagesCrossProtocol(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := newWorld(t, up).start()
	oc := g.OpenAISDK(mocktest.KeyDemo)
	ac := g.AnthropicSDK(mocktest.KeyDemo)
	dataURL := "data:image/png;base64," + pngPixel
	userWithImage := func(url, detail string) openai.ChatCompletionMessageParamUnion {
		return openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("What is in this picture?"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url, Detail: detail}),
		})
	}
	upstreamBody := func() string {
		last, _ := up.Srv.LastRequest()
		return string(last.Body)
	}

	for _, tc := range []struct {
		name, model, url, want string
	}{
		{"openai sdk to anthropic upstream", "an-1", dataURL,
			`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + pngPixel + `"}}`},
		{"openai sdk to openai upstream", "oa-1", dataURL, `{"type":"image_url","image_url":{"url":"` + dataURL + `"}}`},
		{"openai sdk url to anthropic upstream", "an-1", "https://example.test/cat.png",
			`{"type":"image","source":{"type":"url","url":"https://example.test/cat.png"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := oc.Chat.Completions.New(testkit.SDKContext(t), openai.ChatCompletionNewParams{
				Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{userWithImage(tc.url, "")}})
			if err != nil || res.Choices[0].Message.Content == "" {
				t.Fatalf("completion %+v: %v", res, err)
			}
			body := upstreamBody()
			if !strings.Contains(body, tc.want) || !strings.Contains(body, "What is in this picture?") {
				t.Fatalf("upstream got %s, want the image as %s", body, tc.want)
			}
		})
	}

	t.Run("anthropic sdk to openai upstream", func(t *testing.T) {
		_, err := ac.Messages.New(testkit.SDKContext(t), anthropic.MessageNewParams{
			Model: "oa-1", MaxTokens: 50,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(
				anthropic.NewTextBlock("Describe it."), anthropic.NewImageBlockBase64("image/png", pngPixel))},
		})
		if err != nil {
			t.Fatal(err)
		}
		if body := upstreamBody(); !strings.Contains(body, `{"type":"image_url","image_url":{"url":"`+dataURL+`"}}`) {
			t.Fatalf("upstream got %s", body)
		}
	})

	for _, tc := range []struct {
		name, model, url, detail, param string
	}{
		{"detail to anthropic", "an-1", dataURL, "high", "messages[0].content[1].image_url.detail"},
		{"not an image", "oa-1", "data:text/plain;base64,aGk=", "", "messages[0].content[1].image_url.url"},
		{"ftp url", "oa-1", "ftp://example.test/x.png", "", "messages[0].content[1].image_url.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oc.Chat.Completions.New(testkit.SDKContext(t), openai.ChatCompletionNewParams{
				Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{userWithImage(tc.url, tc.detail)}})
			var ae *openai.Error
			if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != tc.param {
				t.Fatalf("err %v, want 400 naming %s", err, tc.param)
			}
		})
	}
}

// TestSDKResponseFormat: JSON modes reach OpenAI-compatible upstreams
// verbatim and are refused, by name, for Anthropic ones.
func TestSDKResponseFormat(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5})
	g := newWorld(t, up).start()
	oc := g.OpenAISDK(mocktest.KeyDemo)
	params := func(model string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Answer in JSON.")},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{
				OfJSONObject: &openai.ResponseFormatJSONObjectParam{},
			},
		}
	}
	if _, err := oc.Chat.Completions.New(testkit.SDKContext(t), params("oa-1")); err != nil {
		t.Fatal(err)
	}
	if last, _ := up.Srv.LastRequest(); !strings.Contains(string(last.Body), `"response_format":{"type":"json_object"}`) {
		t.Fatalf("upstream got %s", last.Body)
	}
	_, err := oc.Chat.Completions.New(testkit.SDKContext(t), params("an-1"))
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "response_format" {
		t.Fatalf("json mode to an Anthropic deployment: %v, want 400 naming response_format", err)
	}
}
