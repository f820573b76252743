package gateway

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// serveAnthropicMessages handles POST /v1/messages (Anthropic's Messages
// API): the persona route's pipeline, answered in Anthropic's shapes.
// anthropic-version is accepted whatever its value: the shapes served are
// those of 2023-06-01, the only version the SDKs send.
func (s *Server) serveAnthropicMessages(ctx *fasthttp.RequestCtx) {
	s.serveSDK(ctx, apiAnthropic, routeAnthropicMs, decodeAnthropicRequest)
}

func anthropicStopReason(reason string, calls []providers.ToolCall) string {
	switch {
	case len(calls) > 0:
		return "tool_use"
	case reason == providers.FinishLength:
		return "max_tokens"
	}
	return "end_turn"
}

// appendAnthropicUsage writes u in Anthropic's terms: input_tokens is the
// uncached input only, the cache's reads and writes beside it (and the
// writes split by TTL), whichever protocol the deployment spoke.
func appendAnthropicUsage(dst []byte, u providers.Usage) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, u.Uncached(), 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheWriteTokens(), 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheReadTokens, 10)
	dst = append(dst, `,"cache_creation":{"ephemeral_5m_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheWrite5mTokens, 10)
	dst = append(dst, `,"ephemeral_1h_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheWrite1hTokens, 10)
	dst = append(dst, `},"output_tokens":`...)
	dst = strconv.AppendInt(dst, u.OutputTokens, 10)
	return append(dst, '}')
}

func (a *sdkAPI) appendAnthropicHead(dst []byte, model string) []byte {
	dst = append(dst, `{"id":"msg_`...)
	dst = append(dst, a.id...)
	dst = append(dst, `","type":"message","role":"assistant","model":`...)
	return jsonx.AppendString(dst, model)
}

func appendToolUse(dst []byte, c *providers.ToolCall, input string) []byte {
	dst = append(dst, `{"type":"tool_use","id":`...)
	dst = jsonx.AppendString(dst, c.ID)
	dst = append(dst, `,"name":`...)
	dst = jsonx.AppendString(dst, c.Name)
	dst = append(dst, `,"input":`...)
	return append(append(dst, input...), '}')
}

// toolInput is a call's arguments as a JSON object value; arguments that
// are not one (a model's malformed output) travel as {}.
func toolInput(args string) string {
	if jsonx.IsObject([]byte(args)) && jsonx.Valid([]byte(args)) {
		return args
	}
	return "{}"
}

func (a *sdkAPI) appendAnthropicMessage(dst []byte, x *exchange, res *providers.Result) []byte {
	dst = a.appendAnthropicHead(dst, x.model.ID)
	dst = append(dst, `,"content":[`...)
	n := 0
	if res.Content != "" || len(res.ToolCalls) == 0 {
		dst = append(dst, `{"type":"text","text":`...)
		dst = jsonx.AppendString(dst, res.Content)
		dst = append(dst, '}')
		n++
	}
	for i := range res.ToolCalls {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = appendToolUse(dst, &res.ToolCalls[i], toolInput(res.ToolCalls[i].Arguments))
	}
	dst = append(dst, `],"stop_reason":"`...)
	dst = append(dst, anthropicStopReason(res.FinishReason, res.ToolCalls)...)
	dst = append(dst, `","stop_sequence":null,"usage":`...)
	dst = appendAnthropicUsage(dst, res.Usage)
	return append(dst, '}')
}

const (
	anthropicDeltaPrefix = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
	anthropicDeltaTail   = "}}\n\n"
)

func (a *sdkAPI) appendAnthropicStart(dst []byte, x *exchange, st providers.Stream) []byte {
	a.started = true
	dst = append(dst, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"...)
	dst = a.appendAnthropicHead(dst, x.model.ID)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	u := st.Usage()
	u.OutputTokens = min(u.OutputTokens, 1)
	dst = appendAnthropicUsage(dst, u)
	return append(dst, "}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"...)
}

func (a *sdkAPI) appendAnthropicDelta(dst []byte, x *exchange, st providers.Stream, d []byte) []byte {
	if !a.started {
		dst = a.appendAnthropicStart(dst, x, st)
		dst = append(dst, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"...)
		a.textOpen = true
	}
	dst = append(dst, anthropicDeltaPrefix...)
	dst = jsonx.AppendString(dst, d)
	return append(dst, anthropicDeltaTail...)
}

func (a *sdkAPI) appendAnthropicEnd(dst []byte, x *exchange, st providers.Stream, u providers.Usage) []byte {
	if !a.started {
		dst = a.appendAnthropicStart(dst, x, st)
	}
	idx := 0
	if a.textOpen {
		dst = append(dst, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"...)
		idx = 1
	}
	var calls []providers.ToolCall
	var reason string
	if ts, ok := st.(providers.ToolCallStream); ok {
		calls, reason = ts.ToolCalls(), ts.FinishReason()
	}
	for i := range calls {
		c := &calls[i]
		n := strconv.AppendInt(nil, int64(idx+i), 10)
		dst = append(dst, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
		dst = append(dst, n...)
		dst = append(dst, `,"content_block":`...)
		dst = appendToolUse(dst, c, "{}")
		dst = append(dst, "}\n\n"...)
		dst = append(dst, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
		dst = append(dst, n...)
		dst = append(dst, `,"delta":{"type":"input_json_delta","partial_json":`...)
		dst = jsonx.AppendString(dst, toolInput(c.Arguments))
		dst = append(dst, "}}\n\n"...)
		dst = append(dst, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
		dst = append(dst, n...)
		dst = append(dst, "}\n\n"...)
	}
	if idx == 0 && len(calls) == 0 {
		// An empty answer still has its one (empty) text block.
		dst = append(dst, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"...)
		dst = append(dst, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"...)
	}
	dst = append(dst, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\""...)
	dst = append(dst, anthropicStopReason(reason, calls)...)
	dst = append(dst, `","stop_sequence":null},"usage":`...)
	dst = appendAnthropicUsage(dst, u)
	dst = append(dst, "}\n\n"...)
	return append(dst, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}
