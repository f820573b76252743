package gateway

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// serveOpenAIChat handles POST /v1/chat/completions: the same pipeline as
// the persona route (credentials, body, persona, model, limits, pool,
// relay, usage), answered in OpenAI's shapes.
func (s *Server) serveOpenAIChat(ctx *fasthttp.RequestCtx) {
	s.serveSDK(ctx, apiOpenAI, routeOpenAIChat, decodeOpenAIRequest)
}

func (a *sdkAPI) appendOpenAIHead(dst []byte, object, model string) []byte {
	dst = append(dst, `{"id":"chatcmpl-`...)
	dst = append(dst, a.id...) // request ids are [A-Za-z0-9._:-]: no escaping
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, a.created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonx.AppendString(dst, model)
	return append(dst, `,"system_fingerprint":null,"choices":`...)
}

// appendOpenAIUsage writes u in OpenAI's terms: prompt_tokens is the
// whole input, cached_tokens its part read from the cache (OpenAI has no
// field for cache writes: they count as ordinary prompt tokens there).
func appendOpenAIUsage(dst []byte, u providers.Usage) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, u.InputTokens, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, u.OutputTokens, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, u.InputTokens+u.OutputTokens, 10)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheReadTokens, 10)
	dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
	dst = strconv.AppendInt(dst, u.ReasoningTokens, 10)
	return append(dst, "}}"...)
}

func appendOpenAIToolCalls(dst []byte, calls []providers.ToolCall, indexed bool) []byte {
	dst = append(dst, `"tool_calls":[`...)
	for i := range calls {
		c := &calls[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if indexed {
			dst = append(dst, `"index":`...)
			dst = strconv.AppendInt(dst, int64(i), 10)
			dst = append(dst, ',')
		}
		dst = append(dst, `"id":`...)
		dst = jsonx.AppendString(dst, c.ID)
		dst = append(dst, `,"type":"function","function":{"name":`...)
		dst = jsonx.AppendString(dst, c.Name)
		dst = append(dst, `,"arguments":`...)
		dst = jsonx.AppendString(dst, c.Arguments)
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}

func finishReasonOf(reason string, calls []providers.ToolCall) string {
	switch {
	case len(calls) > 0:
		return providers.FinishToolCalls
	case reason == "":
		return providers.FinishStop
	}
	return reason
}

func (a *sdkAPI) appendOpenAICompletion(dst []byte, x *exchange, res *providers.Result) []byte {
	dst = a.appendOpenAIHead(dst, "chat.completion", x.model.ID)
	dst = append(dst, `[{"index":0,"message":{"role":"assistant","content":`...)
	if res.Content == "" && len(res.ToolCalls) > 0 {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, res.Content)
	}
	if len(res.ToolCalls) > 0 {
		dst = append(dst, ',')
		dst = appendOpenAIToolCalls(dst, res.ToolCalls, false)
	}
	dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, finishReasonOf(res.FinishReason, res.ToolCalls)...)
	dst = append(dst, `"}],"usage":`...)
	dst = appendOpenAIUsage(dst, res.Usage)
	return append(dst, '}')
}

// openAIChunkTail closes a content chunk after its string value.
const openAIChunkTail = `},"finish_reason":null}]}` + "\n\n"

// appendOpenAIDelta appends one content chunk, preceded by the role chunk
// on the first. The prefix is built once per stream.
func (a *sdkAPI) appendOpenAIDelta(dst []byte, x *exchange, d []byte) []byte {
	if !a.started {
		dst = a.appendOpenAIStart(dst, x)
	}
	dst = append(dst, a.prefix...)
	dst = jsonx.AppendString(dst, d)
	return append(dst, openAIChunkTail...)
}

func (a *sdkAPI) appendOpenAIStart(dst []byte, x *exchange) []byte {
	a.started = true
	a.prefix = append(a.appendOpenAIHead(append(a.prefix[:0], "data: "...), "chat.completion.chunk", x.model.ID),
		`[{"index":0,"delta":{"content":`...)
	dst = append(dst, "data: "...)
	dst = a.appendOpenAIHead(dst, "chat.completion.chunk", x.model.ID)
	return append(dst, `[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
}

// appendOpenAIEnd appends the tool-call chunk (calls are collected while
// streaming and sent whole, which SDKs accumulate like any split), the
// finish chunk, the usage chunk when asked for, and [DONE].
func (a *sdkAPI) appendOpenAIEnd(dst []byte, x *exchange, st providers.Stream, u providers.Usage) []byte {
	if !a.started {
		dst = a.appendOpenAIStart(dst, x)
	}
	var calls []providers.ToolCall
	var reason string
	if ts, ok := st.(providers.ToolCallStream); ok {
		calls, reason = ts.ToolCalls(), ts.FinishReason()
	}
	head := func(dst []byte) []byte {
		return a.appendOpenAIHead(append(dst, "data: "...), "chat.completion.chunk", x.model.ID)
	}
	if len(calls) > 0 {
		dst = append(head(dst), `[{"index":0,"delta":{`...)
		dst = appendOpenAIToolCalls(dst, calls, true)
		dst = append(dst, `},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
	}
	dst = append(head(dst), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, finishReasonOf(reason, calls)...)
	dst = append(dst, `"}]}`+"\n\n"...)
	if a.includeUsage {
		dst = append(head(dst), `[],"usage":`...)
		dst = appendOpenAIUsage(dst, u)
		dst = append(dst, "}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}
