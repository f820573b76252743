package openai

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

// benchReply is a typical non-streaming reply (mock-sized), with escapes
// in the content as real replies have.
const benchReply = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?\nI am \"Moon\".","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}`

// BenchmarkComplete runs a whole non-streaming exchange against a
// loopback upstream per op: allocs/op is the client's per-request cost.
func BenchmarkComplete(b *testing.B) {
	p := newProvider(b, testConfig(testkit.RawUpstream(b, testkit.JSONResponse(benchReply))))
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.Complete(context.Background(), &baseReq)
		if err != nil || res.Usage.OutputTokens != 10 {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkDecodeCompletion(b *testing.B) {
	p := newProvider(b, testConfig("http://127.0.0.1:1"))
	body := []byte(benchReply)
	b.ReportAllocs()
	for b.Loop() {
		var res providers.Result
		if err := p.decodeCompletion(body, &baseReq, &res); err != nil {
			b.Fatal(err)
		}
	}
}

// refCompletion is the encoding/json decoding the walk replaced, kept as
// the fuzz oracle.
type refCompletion struct {
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int64 `json:"prompt_tokens"`
		CompletionTokens    int64 `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails *struct {
			ReasoningTokens int64 `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	} `json:"usage"`
}

func refDecodeCompletion(name string, body []byte, r *providers.Request) (providers.Result, error) {
	var res providers.Result
	var c refCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		return res, providers.Errorf(name, providers.KindProtocol, "reply is not a chat completion")
	}
	if len(c.Choices) == 0 {
		return res, providers.Errorf(name, providers.KindProtocol, "reply has no choices")
	}
	if c.Choices[0].Message.Content != nil {
		res.Content = *c.Choices[0].Message.Content
	}
	if c.Usage != nil {
		u := c.Usage
		res.Usage = providers.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
		if u.PromptTokensDetails != nil {
			res.Usage.CacheReadTokens = min(max(u.PromptTokensDetails.CachedTokens, 0), max(u.PromptTokens, 0))
		}
		if u.CompletionTokensDetails != nil {
			res.Usage.ReasoningTokens = min(max(u.CompletionTokensDetails.ReasoningTokens, 0), max(u.CompletionTokens, 0))
		}
	} else {
		res.Usage = providers.Usage{InputTokens: providers.EstimateInputTokens(r), OutputTokens: providers.EstimateTokens(res.Content), Estimated: true}
	}
	return res, nil
}

var decodeCases = []struct {
	name, body string
	want       providers.Result
	wantErr    string // error detail; empty for success
}{
	{name: "typical", body: benchReply, want: providers.Result{Content: "Hello! How can I assist you today?\nI am \"Moon\".", Usage: providers.Usage{InputTokens: 19, OutputTokens: 10}}},
	{name: "cached and reasoning tokens", body: `{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256}}}`, want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 256}}},
	{name: "details merge, null clears, cached bounded by prompt", body: `{"choices":[{}],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":3},"completion_tokens_details":null}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheReadTokens: 10}}},
	{name: "details ill-typed", body: `{"choices":[{}],"usage":{"prompt_tokens_details":{"cached_tokens":"1"}}}`, wantErr: "reply is not a chat completion"},
	{name: "null content, no usage", body: `{"choices":[{"message":{"content":null}}]}`, want: providers.Result{Usage: providers.Usage{InputTokens: 2, OutputTokens: 0, Estimated: true}}},
	{name: "keys fold case", body: `{"CHOICES":[{"Message":{"Content":"a"}}],"Usage":{"PROMPT_TOKENS":1,"completion_to` + "\u212a" + `ens":2}}`, want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 1, OutputTokens: 2}}},
	{name: "duplicate choices merge", body: `{"choices":[{"message":{"content":"a"}}],"choices":[{}]}`, want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 2, OutputTokens: 1, Estimated: true}}},
	{name: "empty choices resets", body: `{"choices":[{"message":{"content":"a"}}],"choices":[],"choices":[{}]}`, want: providers.Result{Usage: providers.Usage{InputTokens: 2, Estimated: true}}},
	{name: "null usage field keeps value", body: `{"choices":[null],"usage":{"prompt_tokens":3},"usage":{"prompt_tokens":null}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 3}}},
	{name: "null usage clears", body: `{"choices":[{}],"usage":{"prompt_tokens":3},"usage":null}`, want: providers.Result{Usage: providers.Usage{InputTokens: 2, Estimated: true}}},
	{name: "escaped invalid utf8 content", body: "{\"choices\":[{\"message\":{\"content\":\"\\ud800x\xff\"}}],\"usage\":{}}", want: providers.Result{Content: "\uFFFDx\uFFFD"}},
	{name: "no choices", body: `{"usage":{"prompt_tokens":1}}`, wantErr: "reply has no choices"},
	{name: "null body", body: ` null `, wantErr: "reply has no choices"},
	{name: "second choice ill-typed", body: `{"choices":[{},{"message":5}]}`, wantErr: "reply is not a chat completion"},
	{name: "content not a string", body: `{"choices":[{"message":{"content":1}}]}`, wantErr: "reply is not a chat completion"},
	{name: "float tokens", body: `{"choices":[{}],"usage":{"prompt_tokens":1.0}}`, wantErr: "reply is not a chat completion"},
	{name: "syntax error after choices", body: `{"choices":[{}],"x":tru}`, wantErr: "reply is not a chat completion"},
	{name: "array body", body: `[]`, wantErr: "reply is not a chat completion"},
	{name: "trailing bytes", body: `{"choices":[{}]} x`, wantErr: "reply is not a chat completion"},
}

func TestDecodeCompletion(t *testing.T) {
	p := newProvider(t, testConfig("http://127.0.0.1:1"))
	r := &providers.Request{Model: "m", UserText: "12345678"}
	for _, c := range decodeCases {
		t.Run(c.name, func(t *testing.T) {
			var res providers.Result
			err := p.decodeCompletion([]byte(c.body), r, &res)
			if c.wantErr != "" {
				var ue *providers.UpstreamError
				if !errors.As(err, &ue) || ue.Kind != providers.KindProtocol || ue.Detail != c.wantErr {
					t.Fatalf("err = %v, want protocol %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(res, c.want) {
				t.Fatalf("got %+v %v, want %+v", res, err, c.want)
			}
			if ref, err := refDecodeCompletion(p.name, []byte(c.body), r); err != nil || !reflect.DeepEqual(ref, res) {
				t.Fatalf("encoding/json gives %+v %v", ref, err)
			}
		})
	}
}

// FuzzDecodeCompletion holds the JSON walk to the encoding/json decoding
// it replaced: same result, same error.
func FuzzDecodeCompletion(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c.body))
	}
	p := newProvider(f, testConfig("http://127.0.0.1:1"))
	r := &providers.Request{Model: "m", System: "s", UserText: "12345678"}
	f.Fuzz(func(t *testing.T, body []byte) {
		var res providers.Result
		err := p.decodeCompletion(body, r, &res)
		want, wantErr := refDecodeCompletion(p.name, body, r)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) || !reflect.DeepEqual(res, want) {
			t.Fatalf("decodeCompletion = %+v, %v; encoding/json = %+v, %v", res, err, want, wantErr)
		}
	})
}
