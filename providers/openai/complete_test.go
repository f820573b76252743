package openai

import (
	"encoding/json"
	"testing"

	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

// benchReply is a typical non-streaming reply (mock-sized), with escapes
// in the content as real replies have.
const benchReply = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?\nI am \"Moon\".","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}`

// BenchmarkComplete: allocs/op is the client's per-request cost.
func BenchmarkComplete(b *testing.B) { providertest.BenchComplete(b, proto, benchReply, 10) }

func BenchmarkDecodeCompletion(b *testing.B) {
	p := newProvider(b, testConfig("http://127.0.0.1:1"))
	providertest.BenchDecode(b, benchReply, func(body []byte, res *providers.Result) error { return p.decodeCompletion(body, &baseReq, res) })
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

var decodeCases = []providertest.DecodeCase{
	{Name: "typical", Body: benchReply, Want: providers.Result{Content: "Hello! How can I assist you today?\nI am \"Moon\".", Usage: providers.Usage{InputTokens: 19, OutputTokens: 10}}},
	{Name: "cached and reasoning tokens", Body: `{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256}}}`, Want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 256}}},
	{Name: "details merge, null clears, cached bounded by prompt", Body: `{"choices":[{}],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":3},"completion_tokens_details":null}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheReadTokens: 10}}},
	{Name: "details ill-typed", Body: `{"choices":[{}],"usage":{"prompt_tokens_details":{"cached_tokens":"1"}}}`, WantErr: "reply is not a chat completion"},
	{Name: "null content, no usage", Body: `{"choices":[{"message":{"content":null}}]}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 2, OutputTokens: 0, Estimated: true}}},
	{Name: "keys fold case", Body: `{"CHOICES":[{"Message":{"Content":"a"}}],"Usage":{"PROMPT_TOKENS":1,"completion_to` + "\u212a" + `ens":2}}`, Want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 1, OutputTokens: 2}}},
	{Name: "duplicate choices merge", Body: `{"choices":[{"message":{"content":"a"}}],"choices":[{}]}`, Want: providers.Result{Content: "a", Usage: providers.Usage{InputTokens: 2, OutputTokens: 1, Estimated: true}}},
	{Name: "empty choices resets", Body: `{"choices":[{"message":{"content":"a"}}],"choices":[],"choices":[{}]}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 2, Estimated: true}}},
	{Name: "null usage field keeps value", Body: `{"choices":[null],"usage":{"prompt_tokens":3},"usage":{"prompt_tokens":null}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 3}}},
	{Name: "null usage clears", Body: `{"choices":[{}],"usage":{"prompt_tokens":3},"usage":null}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 2, Estimated: true}}},
	{Name: "escaped invalid utf8 content", Body: "{\"choices\":[{\"message\":{\"content\":\"\\ud800x\xff\"}}],\"usage\":{}}", Want: providers.Result{Content: "\uFFFDx\uFFFD"}},
	{Name: "no choices", Body: `{"usage":{"prompt_tokens":1}}`, WantErr: "reply has no choices"},
	{Name: "null body", Body: ` null `, WantErr: "reply has no choices"},
	{Name: "second choice ill-typed", Body: `{"choices":[{},{"message":5}]}`, WantErr: "reply is not a chat completion"},
	{Name: "content not a string", Body: `{"choices":[{"message":{"content":1}}]}`, WantErr: "reply is not a chat completion"},
	{Name: "float tokens", Body: `{"choices":[{}],"usage":{"prompt_tokens":1.0}}`, WantErr: "reply is not a chat completion"},
	{Name: "syntax error after choices", Body: `{"choices":[{}],"x":tru}`, WantErr: "reply is not a chat completion"},
	{Name: "array body", Body: `[]`, WantErr: "reply is not a chat completion"},
	{Name: "trailing bytes", Body: `{"choices":[{}]} x`, WantErr: "reply is not a chat completion"},
}

// decoders are decodeCompletion and its oracle for the request r.
func decoders(p *Provider, r *providers.Request) (decode, ref providertest.Decoder) {
	decode = func(body []byte, res *providers.Result) error { return p.decodeCompletion(body, r, res) }
	ref = func(body []byte, res *providers.Result) (err error) {
		*res, err = refDecodeCompletion(p.name, body, r)
		return err
	}
	return decode, ref
}

func TestDecodeCompletion(t *testing.T) {
	decode, ref := decoders(newProvider(t, testConfig("http://127.0.0.1:1")), &providers.Request{Model: "m", UserText: "12345678"})
	providertest.Decode(t, decodeCases, decode, ref)
}

// FuzzDecodeCompletion holds the JSON walk to the encoding/json decoding
// it replaced: same result, same error.
func FuzzDecodeCompletion(f *testing.F) {
	decode, ref := decoders(newProvider(f, testConfig("http://127.0.0.1:1")), &providers.Request{Model: "m", System: "s", UserText: "12345678"})
	providertest.FuzzDecode(f, decodeCases, decode, ref)
}
