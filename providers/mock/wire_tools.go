package mock

import (
	"bufio"
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// wireToolCall reads the tool part of a request body of either protocol
// (tools, tool_choice, and whether the last turn is a tool result) and
// returns the call the mock answers with, as toolCallFor decides. Bodies
// without "tools" are not walked again, so text requests pay nothing.
func wireToolCall(body []byte, p protocol, seed uint64) (providers.ToolCall, bool) {
	if !bytes.Contains(body, []byte(`"tools"`)) {
		return providers.ToolCall{}, false
	}
	obj, err := jsonx.NewObject(body)
	if err != nil {
		return providers.ToolCall{}, false
	}
	var r providers.Request
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "tools"):
			r.Tools = wireTools(v)
		case jsonx.KeyIs(k, "tool_choice"):
			r.ToolChoice = wireToolChoice(v)
		case jsonx.KeyIs(k, "messages"):
			if lastIsToolResult(v, p) {
				r.Messages = []providers.Message{{Role: providers.RoleTool}}
			}
		}
	}
	return toolCallFor(&r, seed)
}

func member(obj []byte, name string) []byte {
	it, err := jsonx.NewObject(obj)
	if err != nil {
		return nil
	}
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		if jsonx.KeyIs(k, name) {
			return v
		}
	}
	return nil
}

func text(raw []byte) string {
	s, ok := jsonx.AppendUnquoted(nil, raw)
	if ok != nil || len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	return string(s)
}

func wireTools(v []byte) []providers.Tool {
	arr, err := jsonx.NewArray(v)
	if err != nil {
		return nil
	}
	var out []providers.Tool
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		var t providers.Tool
		if fn := member(el, "function"); fn != nil { // OpenAI
			t.Name, t.Parameters = text(member(fn, "name")), member(fn, "parameters")
		} else { // Anthropic
			t.Name, t.Parameters = text(member(el, "name")), member(el, "input_schema")
		}
		if t.Name != "" {
			out = append(out, t)
		}
	}
	return out
}

func wireToolChoice(v []byte) providers.ToolChoice {
	if string(v) == `"none"` || string(member(v, "type")) == `"none"` {
		return providers.ToolChoice{Mode: providers.ToolChoiceNone}
	}
	if fn := member(v, "function"); fn != nil {
		return providers.ToolChoice{Mode: providers.ToolChoiceNamed, Name: text(member(fn, "name"))}
	}
	if string(member(v, "type")) == `"tool"` {
		return providers.ToolChoice{Mode: providers.ToolChoiceNamed, Name: text(member(v, "name"))}
	}
	return providers.ToolChoice{}
}

// lastIsToolResult: OpenAI's last message has role "tool"; Anthropic's
// is a user turn holding a tool_result block.
func lastIsToolResult(v []byte, p protocol) bool {
	arr, err := jsonx.NewArray(v)
	if err != nil {
		return false
	}
	var last []byte
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		last = el
	}
	if last == nil {
		return false
	}
	if p == protoOpenAI {
		return string(member(last, "role")) == `"tool"`
	}
	c := member(last, "content")
	return len(c) > 0 && c[0] == '[' && bytes.Contains(c, []byte(`"tool_result"`))
}

// answerToolCall writes the tool-call answer in protocol p, streamed (all
// events at once) or not.
func (s *Server) answerToolCall(ctx *fasthttp.RequestCtx, p protocol, model []byte, stream, includeUsage bool, a *answer, c providers.ToolCall) {
	out := toolCallTokens(&c)
	id := a.id
	// Usage as for a text answer of out tokens.
	ua := *a
	ua.plan = plan{n: int(out)}
	created := time.Now().Unix()
	var b []byte
	if !stream {
		if p == protoOpenAI {
			b = appendOpenAIHead(b, "chat.completion", id, created, model)
			b = append(b, `[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[`...)
			b = appendOpenAICall(b, &c, false)
			b = append(b, `],"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":`...)
			b = appendOpenAIUsage(b, &ua)
			b = append(b, '}')
		} else {
			b = appendID(append(b, `{"id":`...), `"msg_mock`, id)
			b = append(b, `","type":"message","role":"assistant","model":`...)
			b = jsonx.AppendString(b, model)
			b = append(b, `,"content":[`...)
			b = appendAnthropicToolUse(b, &c, c.Arguments)
			b = append(b, `],"stop_reason":"tool_use","stop_sequence":null,"usage":`...)
			b = appendAnthropicUsage(b, &ua, out)
			b = append(b, '}')
		}
		ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
		ctx.SetBody(b)
		return
	}
	if p == protoOpenAI {
		head := appendOpenAIHead([]byte("data: "), "chat.completion.chunk", id, created, model)
		b = append(append(b, head...), `[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		// The call in two chunks, as OpenAI streams it: id and name with
		// empty arguments, then the arguments.
		first := c
		first.Arguments = ""
		b = append(append(b, head...), `[{"index":0,"delta":{"tool_calls":[`...)
		b = appendOpenAICall(b, &first, true)
		b = append(b, `]},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		b = append(append(b, head...), `[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`...)
		b = jsonx.AppendString(b, c.Arguments)
		b = append(b, `}}]},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		b = append(append(b, head...), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}`+"\n\n"...)
		if includeUsage {
			b = append(append(b, head...), `[],"usage":`...)
			b = appendOpenAIUsage(b, &ua)
			b = append(b, "}\n\n"...)
		}
		b = append(b, "data: [DONE]\n\n"...)
	} else {
		b = append(b, "event: message_start\ndata: "...)
		b = appendID(append(b, `{"type":"message_start","message":{"id":`...), `"msg_mock`, id)
		b = append(b, `","type":"message","role":"assistant","model":`...)
		b = jsonx.AppendString(b, model)
		b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
		b = appendAnthropicUsage(b, &ua, 1)
		b = append(b, "}}\n\n"...)
		b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"...)
		b = appendAnthropicToolUse(b, &c, "{}")
		b = append(b, "}\n\n"...)
		b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"...)
		b = jsonx.AppendString(b, c.Arguments)
		b = append(b, "}}\n\n"...)
		b = append(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"...)
		b = append(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":"...)
		b = appendAnthropicDeltaUsage(b, &ua, out)
		b = append(b, "}\n\n"...)
		b = append(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
	}
	s.streamsStarted.Add(1)
	ctx.Response.Header.SetContentTypeBytes(contentTypeSSE)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		_, err := w.Write(b)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			s.streamsAborted.Add(1)
			return
		}
		s.streamsCompleted.Add(1)
	})
}

func appendOpenAICall(b []byte, c *providers.ToolCall, indexed bool) []byte {
	b = append(b, '{')
	if indexed {
		b = append(b, `"index":0,`...)
	}
	b = append(b, `"id":`...)
	b = jsonx.AppendString(b, c.ID)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = jsonx.AppendString(b, c.Name)
	b = append(b, `,"arguments":`...)
	b = jsonx.AppendString(b, c.Arguments)
	return append(b, "}}"...)
}

func appendAnthropicToolUse(b []byte, c *providers.ToolCall, input string) []byte {
	b = append(b, `{"type":"tool_use","id":`...)
	b = jsonx.AppendString(b, c.ID)
	b = append(b, `,"name":`...)
	b = jsonx.AppendString(b, c.Name)
	b = append(b, `,"input":`...)
	b = append(b, input...)
	return append(b, '}')
}
