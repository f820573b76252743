package anthropic

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// Check implements providers.Checker: what the Messages API cannot carry.
func (p *Provider) Check(r *providers.Request) *providers.FieldError {
	if r.HasSeed {
		return &providers.FieldError{Field: "seed", Rule: "is not supported"}
	}
	if len(r.ResponseFormat) > 0 {
		return &providers.FieldError{Field: "response_format", Rule: "JSON modes are not supported by this model's upstream"}
	}
	if r.HasTemperature && r.Temperature > 1 {
		return &providers.FieldError{Field: "temperature", Rule: "must be at most 1"}
	}
	for i := range r.Messages {
		if r.Messages[i].Role == providers.RoleSystem {
			return &providers.FieldError{Field: "messages[" + strconv.Itoa(i) + "].role",
				Rule: "system messages after the first user or assistant message are not supported"}
		}
		for j := range r.Messages[i].Parts {
			if im := r.Messages[i].Parts[j].Image; im != nil && im.Detail != "" {
				return &providers.FieldError{Field: "messages[" + strconv.Itoa(i) + "].content[" + strconv.Itoa(j) + "].image_url.detail",
					Rule: "is not supported by this model's upstream"}
			}
		}
	}
	return nil
}

// appendMessages writes "messages":[…] for a conversation: tool results
// travel as tool_result blocks of a user turn, tool calls as tool_use
// blocks of the assistant's.
func appendMessages(dst []byte, r *providers.Request) []byte {
	dst = append(dst, `,"messages":[`...)
	inResults := false // a user turn of tool results is open
	for i := range r.Messages {
		m := &r.Messages[i]
		if m.Role == providers.RoleTool {
			if !inResults {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, `{"role":"user","content":[`...)
				inResults = true
			} else {
				dst = append(dst, ',')
			}
			dst = appendToolResult(dst, m)
			continue
		}
		if inResults {
			dst = append(dst, "]}"...)
			inResults = false
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		if m.Role == providers.RoleAssistant {
			dst = appendAssistantTurn(dst, m)
		} else {
			dst = appendUserTurn(dst, m)
		}
	}
	if inResults {
		dst = append(dst, "]}"...)
	}
	return append(dst, ']')
}

// appendToolResult writes a tool message as a tool_result block.
func appendToolResult(dst []byte, m *providers.Message) []byte {
	dst = append(dst, `{"type":"tool_result","tool_use_id":`...)
	dst = jsonx.AppendString(dst, m.ToolCallID)
	dst = append(dst, `,"content":`...)
	dst = jsonx.AppendString(dst, m.Text)
	if m.IsError {
		dst = append(dst, `,"is_error":true`...)
	}
	dst = append(dst, '}')
	return markLast(dst, m.Cache)
}

// appendAssistantTurn writes an assistant turn: its text, then its tool
// calls as tool_use blocks.
func appendAssistantTurn(dst []byte, m *providers.Message) []byte {
	dst = append(dst, `{"role":"assistant","content":[`...)
	n := 0
	if m.Text != "" {
		dst = providers.AppendTextPart(dst, m.Text)
		n++
	}
	for j := range m.ToolCalls {
		c := &m.ToolCalls[j]
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, `{"type":"tool_use","id":`...)
		dst = jsonx.AppendString(dst, c.ID)
		dst = append(dst, `,"name":`...)
		dst = jsonx.AppendString(dst, c.Name)
		dst = append(dst, `,"input":`...)
		if jsonx.IsObject([]byte(c.Arguments)) {
			dst = append(dst, c.Arguments...)
		} else {
			dst = append(dst, "{}"...)
		}
		dst = append(dst, '}')
	}
	return append(markLast(dst, m.Cache), "]}"...)
}

// appendUserTurn writes a user turn: a string, or blocks when it has
// images or a cache breakpoint.
func appendUserTurn(dst []byte, m *providers.Message) []byte {
	dst = append(dst, `{"role":"user","content":`...)
	if len(m.Parts) > 0 {
		dst = appendParts(dst, m.Parts)
		return append(markLast(dst[:len(dst)-1], m.Cache), "]}"...)
	}
	if m.Cache != providers.CacheNone && m.Text != "" {
		// A breakpoint needs a block to sit on.
		dst = providers.AppendTextPart(append(dst, '['), m.Text)
		return append(markLast(dst, m.Cache), "]}"...)
	}
	dst = jsonx.AppendString(dst, m.Text)
	return append(dst, '}')
}

// appendParts writes a user turn's text and image blocks; empty text
// parts are left out, as the Messages API refuses empty text blocks.
func appendParts(dst []byte, parts []providers.Part) []byte {
	dst = append(dst, '[')
	n := 0
	for i := range parts {
		p := &parts[i]
		if p.Image == nil && p.Text == "" {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		if p.Image == nil {
			dst = providers.AppendTextPart(dst, p.Text)
			continue
		}
		if im := p.Image; im.URL != "" {
			dst = append(dst, `{"type":"image","source":{"type":"url","url":`...)
			dst = jsonx.AppendString(dst, im.URL)
		} else {
			dst = append(dst, `{"type":"image","source":{"type":"base64","media_type":`...)
			dst = jsonx.AppendString(dst, im.MediaType)
			dst = append(dst, `,"data":"`...)
			dst = append(dst, im.Data...) // base64: nothing to escape
			dst = append(dst, '"')
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}

// appendOptions writes tools, tool_choice, stop_sequences, top_p, top_k
// and metadata.
func appendOptions(dst []byte, r *providers.Request) []byte {
	dst = providers.AppendTools(dst, r, appendTool)
	tc := &r.ToolChoice
	mode := tc.Mode
	if mode == providers.ToolChoiceDefault && tc.NoParallel && len(r.Tools) > 0 {
		mode = providers.ToolChoiceAuto
	}
	switch mode {
	case providers.ToolChoiceAuto:
		dst = append(dst, `,"tool_choice":{"type":"auto"`...)
	case providers.ToolChoiceNone:
		dst = append(dst, `,"tool_choice":{"type":"none"`...)
	case providers.ToolChoiceRequired:
		dst = append(dst, `,"tool_choice":{"type":"any"`...)
	case providers.ToolChoiceNamed:
		dst = append(dst, `,"tool_choice":{"type":"tool","name":`...)
		dst = jsonx.AppendString(dst, tc.Name)
	}
	if mode != providers.ToolChoiceDefault {
		if tc.NoParallel && mode != providers.ToolChoiceNone {
			dst = append(dst, `,"disable_parallel_tool_use":true`...)
		}
		dst = append(dst, '}')
	}
	dst = providers.AppendStop(dst, "stop_sequences", r)
	dst = providers.AppendTopP(dst, r)
	if r.TopK > 0 {
		dst = append(dst, `,"top_k":`...)
		dst = strconv.AppendInt(dst, int64(r.TopK), 10)
	}
	if r.User != "" {
		dst = append(dst, `,"metadata":{"user_id":`...)
		dst = jsonx.AppendString(dst, r.User)
		dst = append(dst, '}')
	}
	return dst
}

// appendTool writes one tool definition: its input_schema is required.
func appendTool(dst []byte, t *providers.Tool) []byte {
	dst = providers.AppendToolName(append(dst, '{'), t)
	dst = append(dst, `,"input_schema":`...)
	if len(t.Parameters) > 0 {
		dst = append(dst, t.Parameters...)
	} else {
		dst = append(dst, `{"type":"object","properties":{}}`...)
	}
	dst = providers.AppendCacheControl(dst, t.Cache)
	return append(dst, '}')
}

func stopReason(raw []byte) string {
	switch string(raw) {
	case `"max_tokens"`:
		return providers.FinishLength
	case `"tool_use"`:
		return providers.FinishToolCalls
	}
	return providers.FinishStop
}

// str decodes a string literal leniently ("" when it is not one).
func str(raw []byte) string {
	if len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	s, err := jsonx.AppendUnquoted(nil, raw)
	if err != nil {
		return ""
	}
	return string(s)
}

// toolUse reads a tool_use block leniently; ok is false for other blocks.
func toolUse(raw []byte) (providers.ToolCall, bool) {
	var c providers.ToolCall
	obj, err := jsonx.NewObject(raw)
	if err != nil {
		return c, false
	}
	isTool := false
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			isTool = string(v) == `"tool_use"`
		case jsonx.KeyIs(k, "id"):
			c.ID = str(v)
		case jsonx.KeyIs(k, "name"):
			c.Name = str(v)
		case jsonx.KeyIs(k, "input"):
			if jsonx.IsObject(v) {
				c.Arguments = string(v)
			}
		}
	}
	return c, isTool
}

// parseToolUses reads a message's tool_use blocks and stop_reason, for a
// body parseMessage already accepted.
func parseToolUses(body []byte, res *providers.Result) {
	obj, err := jsonx.NewObject(body)
	if err != nil {
		return
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "stop_reason"):
			res.FinishReason = stopReason(v)
		case jsonx.KeyIs(k, "content"):
			arr, err := jsonx.NewArray(v)
			if err != nil {
				continue
			}
			for el, ok := arr.Element(); ok; el, ok = arr.Element() {
				if c, ok := toolUse(el); ok {
					res.ToolCalls = append(res.ToolCalls, c)
				}
			}
		}
	}
}

// toolEvents collects a stream's tool_use blocks: content_block_start
// opens one with its id and name, input_json_delta events carry its
// input in pieces, and message_delta's stop_reason ends the message.
type toolEvents struct {
	calls  []providers.ToolCall
	index  []int64
	finish string
}

// onEvent folds in one raw event of the kinds above, leniently.
func (t *toolEvents) onEvent(data []byte) {
	obj, err := jsonx.NewObject(data)
	if err != nil {
		return
	}
	idx := int64(-1)
	var block, delta []byte
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "index"):
			if n, err := jsonx.Int(v); err == nil {
				idx = n
			}
		case jsonx.KeyIs(k, "content_block"):
			block = v
		case jsonx.KeyIs(k, "delta"):
			delta = v
		}
	}
	if len(block) > 0 {
		if c, ok := toolUse(block); ok {
			c.Arguments = "" // streamed input arrives in deltas
			t.calls = append(t.calls, c)
			t.index = append(t.index, idx)
		}
		return
	}
	if len(delta) == 0 {
		return
	}
	d, err := jsonx.NewObject(delta)
	if err != nil {
		return
	}
	for k, v, ok := d.Member(); ok; k, v, ok = d.Member() {
		switch {
		case jsonx.KeyIs(k, "partial_json"):
			for i, x := range t.index {
				if x == idx {
					t.calls[i].Arguments += str(v)
				}
			}
		case jsonx.KeyIs(k, "stop_reason"):
			if len(v) > 0 && v[0] == '"' {
				t.finish = stopReason(v)
			}
		}
	}
}
