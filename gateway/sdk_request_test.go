package gateway

import (
	"testing"
)

func TestDecodeOpenAIRequest(t *testing.T) {
	cases := []struct {
		name, body, err string
	}{
		{"ok", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, ""},
		{"parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`, ""},
		{"tools", `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`, ""},
		{"tool round trip", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"x"}]}`, ""},
		{"not an object", `[]`, "body: must be a JSON object"},
		{"malformed", `{"model":`, "body: malformed JSON"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, "model: is required"},
		{"only system", `{"model":"m","messages":[{"role":"system","content":"s"}]}`, "messages: must hold at least one non-system message"},
		{"bad role", `{"model":"m","messages":[{"role":"robot","content":"hi"}]}`, "messages[0].role: must be system, developer, user, assistant or tool"},
		{"image url not a url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, `messages[0].content[0].image_url.url: must be a base64 data URL (data:image/png;base64,…) or an http(s) URL`},
		{"image not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@"}}]}]}`, `messages[0].content[0].image_url.url: data must be base64`},
		{"image in an assistant turn", `{"model":"m","messages":[{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"https://x.test/a.png"}}]}]}`, `messages[0].content: image parts belong to user messages`},
		{"audio part", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, `messages[0].content[0].type: "input_audio" parts are not supported; only text and image_url`},
		{"n", `{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}`, "n: only 1 choice is supported"},
		{"temperature", `{"model":"m","temperature":2.5,"messages":[{"role":"user","content":"hi"}]}`, "temperature: must be between 0 and 2"},
		{"max_tokens", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens: must be a whole number of at least 1"},
		{"unknown response format", `{"model":"m","response_format":{"type":"xml"},"messages":[{"role":"user","content":"hi"}]}`, `response_format.type: must be text, json_object or json_schema`},
		{"schema missing", `{"model":"m","response_format":{"type":"json_schema"},"messages":[{"role":"user","content":"hi"}]}`, `response_format.json_schema: is required for type json_schema`},
		{"tool without id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id: is required for a tool message"},
		{"bad arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"nope"}}]}]}`, "messages[0].tool_calls[0].function.arguments: must be a JSON object"},
		{"choice without tools", `{"model":"m","tool_choice":"required","messages":[{"role":"user","content":"hi"}]}`, "tool_choice: requires tools"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var conv conversation
			ae := decodeOpenAIRequest([]byte(c.body), &conv)
			got := ""
			if ae != nil {
				got = ae.message
				if ae.status != 422 || ae.code != codeValidation { // 400 on the wire (sdkStatus)
					t.Fatalf("status %d code %s", ae.status, ae.code)
				}
			}
			if got != c.err {
				t.Fatalf("got %q, want %q", got, c.err)
			}
		})
	}
}

func TestDecodeAnthropicRequest(t *testing.T) {
	cases := []struct {
		name, body, err string
	}{
		{"ok", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, ""},
		{"system blocks", `{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, ""},
		{"tool round trip", `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"x"}]}]}`, ""},
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Field required"},
		{"image without a source type", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}`, `messages.0.content.0.source.type: must be "base64" or "url"`},
		{"image of an unknown type", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/tiff","data":"AA=="}}]}]}`, `messages.0.content.0.source: media type must be image/jpeg, image/png, image/gif or image/webp`},
		{"document block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, `messages.0.content.0.type: "document" blocks are not supported; only text, image, tool_use and tool_result`},
		{"temperature", `{"model":"m","max_tokens":5,"temperature":1.5,"messages":[{"role":"user","content":"hi"}]}`, "temperature: must be between 0 and 1"},
		{"thinking", `{"model":"m","max_tokens":5,"thinking":{"type":"enabled"},"messages":[{"role":"user","content":"hi"}]}`, "thinking: is not supported"},
		{"tool_use in user turn", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]}`, "messages.0.content.0.type: tool_use blocks belong to assistant turns"},
		{"bad role", `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"hi"}]}`, `messages.0.role: must be "user" or "assistant"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var conv conversation
			ae := decodeAnthropicRequest([]byte(c.body), &conv)
			got := ""
			if ae != nil {
				got = ae.message
			}
			if got != c.err {
				t.Fatalf("got %q, want %q", got, c.err)
			}
		})
	}
}

// The decoders never panic, and what they accept is a request with a
// model and at least one message.
func FuzzDecodeOpenAIRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}],"stop":["a"]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"\u00e9"}]}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var c conversation
		if ae := decodeOpenAIRequest(body, &c); ae == nil && (c.model == "" || len(c.req.Messages) == 0) {
			t.Fatalf("accepted %q without model or messages", body)
		}
	})
}

func FuzzDecodeAnthropicRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","max_tokens":5,"system":"s","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{}}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"x"}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var c conversation
		if ae := decodeAnthropicRequest(body, &c); ae == nil && (c.model == "" || !c.hasMaxTokens || len(c.req.Messages) == 0) {
			t.Fatalf("accepted %q without model, max_tokens or messages", body)
		}
	})
}
