package openai

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// Check implements providers.Checker: what chat completions cannot carry.
func (p *Provider) Check(r *providers.Request) *providers.FieldError {
	if r.TopK > 0 {
		return &providers.FieldError{Field: "top_k", Rule: "is not supported"}
	}
	for i := range r.Messages {
		if r.Messages[i].IsError {
			return &providers.FieldError{Field: "messages." + strconv.Itoa(i) + ".is_error", Rule: "is not supported"}
		}
	}
	return nil
}

// appendMessages writes the messages array's members for a conversation.
func appendMessages(dst []byte, r *providers.Request) []byte {
	if r.System != "" {
		dst = append(dst, `{"role":"system","content":`...)
		dst = jsonx.AppendString(dst, r.System)
		dst = append(dst, `},`...)
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		switch m.Role {
		case providers.RoleSystem:
			dst = append(dst, `{"role":"system","content":`...)
		case providers.RoleUser:
			dst = append(dst, `{"role":"user","content":`...)
			if len(m.Parts) > 0 {
				dst = append(appendParts(dst, m.Parts), '}')
				continue
			}
		case providers.RoleTool:
			dst = append(dst, `{"role":"tool","tool_call_id":`...)
			dst = jsonx.AppendString(dst, m.ToolCallID)
			dst = append(dst, `,"content":`...)
		case providers.RoleAssistant:
			dst = append(dst, `{"role":"assistant","content":`...)
			if m.Text == "" && len(m.ToolCalls) > 0 {
				dst = append(dst, "null"...)
			} else {
				dst = jsonx.AppendString(dst, m.Text)
			}
			if len(m.ToolCalls) > 0 {
				dst = append(dst, `,"tool_calls":[`...)
				for j := range m.ToolCalls {
					c := &m.ToolCalls[j]
					if j > 0 {
						dst = append(dst, ',')
					}
					dst = append(dst, `{"id":`...)
					dst = jsonx.AppendString(dst, c.ID)
					dst = append(dst, `,"type":"function","function":{"name":`...)
					dst = jsonx.AppendString(dst, c.Name)
					dst = append(dst, `,"arguments":`...)
					dst = jsonx.AppendString(dst, c.Arguments)
					dst = append(dst, "}}"...)
				}
				dst = append(dst, ']')
			}
			dst = append(dst, '}')
			continue
		}
		dst = jsonx.AppendString(dst, m.Text)
		dst = append(dst, '}')
	}
	return dst
}

// appendParts writes a user turn's text and image parts as a content
// array; inline images travel as data URLs.
func appendParts(dst []byte, parts []providers.Part) []byte {
	dst = append(dst, '[')
	for i := range parts {
		p := &parts[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		if p.Image == nil {
			dst = providers.AppendTextPart(dst, p.Text)
			continue
		}
		dst = append(dst, `{"type":"image_url","image_url":{"url":`...)
		if im := p.Image; im.URL != "" {
			dst = jsonx.AppendString(dst, im.URL)
		} else {
			dst = append(dst, `"data:`...)
			dst = append(dst, im.MediaType...)
			dst = append(dst, ";base64,"...)
			dst = append(dst, im.Data...) // base64: nothing to escape
			dst = append(dst, '"')
		}
		if p.Image.Detail != "" {
			dst = append(dst, `,"detail":`...)
			dst = jsonx.AppendString(dst, p.Image.Detail)
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}

// appendOptions writes the optional fields a conversation may carry.
func appendOptions(dst []byte, r *providers.Request) []byte {
	dst = providers.AppendTools(dst, r, appendTool)
	if len(r.Tools) > 0 && r.ToolChoice.NoParallel {
		dst = append(dst, `,"parallel_tool_calls":false`...)
	}
	switch r.ToolChoice.Mode {
	case providers.ToolChoiceAuto:
		dst = append(dst, `,"tool_choice":"auto"`...)
	case providers.ToolChoiceNone:
		dst = append(dst, `,"tool_choice":"none"`...)
	case providers.ToolChoiceRequired:
		dst = append(dst, `,"tool_choice":"required"`...)
	case providers.ToolChoiceNamed:
		dst = append(dst, `,"tool_choice":{"type":"function","function":{"name":`...)
		dst = jsonx.AppendString(dst, r.ToolChoice.Name)
		dst = append(dst, "}}"...)
	}
	dst = providers.AppendStop(dst, "stop", r)
	dst = providers.AppendTopP(dst, r)
	if r.HasSeed {
		dst = append(dst, `,"seed":`...)
		dst = strconv.AppendInt(dst, r.Seed, 10)
	}
	if len(r.ResponseFormat) > 0 {
		dst = append(dst, `,"response_format":`...)
		dst = append(dst, r.ResponseFormat...)
	}
	if r.User != "" {
		dst = append(dst, `,"user":`...)
		dst = jsonx.AppendString(dst, r.User)
	}
	return dst
}

// appendTool writes one tool definition as a function.
func appendTool(dst []byte, t *providers.Tool) []byte {
	dst = providers.AppendToolName(append(dst, `{"type":"function","function":{`...), t)
	if len(t.Parameters) > 0 {
		dst = append(dst, `,"parameters":`...)
		dst = append(dst, t.Parameters...)
	}
	return append(dst, "}}"...)
}

// toolCallAcc collects streamed tool-call deltas by index: the first
// delta of a call carries its id and name, later ones argument pieces.
type toolCallAcc struct {
	calls []providers.ToolCall
	index []int64
}

// addDeltas folds one chunk's raw delta.tool_calls array in. It is
// lenient: a malformed member is skipped (the chunk's own parse already
// checked the JSON).
func (a *toolCallAcc) addDeltas(raw []byte) {
	arr, err := jsonx.NewArray(raw)
	if err != nil {
		return
	}
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		obj, err := jsonx.NewObject(el)
		if err != nil {
			continue
		}
		idx := int64(len(a.calls))
		var id, name, args []byte
		for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
			switch {
			case jsonx.KeyIs(k, "index"):
				if n, err := jsonx.Int(v); err == nil {
					idx = n
				}
			case jsonx.KeyIs(k, "id"):
				id, _ = jsonx.AppendUnquoted(nil, v)
			case jsonx.KeyIs(k, "function"):
				fo, err := jsonx.NewObject(v)
				if err != nil {
					continue
				}
				for fk, fv, ok := fo.Member(); ok; fk, fv, ok = fo.Member() {
					switch {
					case jsonx.KeyIs(fk, "name"):
						name, _ = jsonx.AppendUnquoted(nil, fv)
					case jsonx.KeyIs(fk, "arguments"):
						args, _ = jsonx.Unquote(nil, fv)
					}
				}
			}
		}
		c := a.call(idx)
		if len(id) > 0 {
			c.ID = string(id)
		}
		if len(name) > 0 {
			c.Name += string(name)
		}
		c.Arguments += string(args)
	}
}

func (a *toolCallAcc) call(idx int64) *providers.ToolCall {
	for i, x := range a.index {
		if x == idx {
			return &a.calls[i]
		}
	}
	a.index = append(a.index, idx)
	a.calls = append(a.calls, providers.ToolCall{})
	return &a.calls[len(a.calls)-1]
}

// finishReason maps a raw finish_reason literal to the canonical value.
func finishReason(raw []byte) string {
	switch string(raw) {
	case `"stop"`:
		return providers.FinishStop
	case `"length"`:
		return providers.FinishLength
	case `"tool_calls"`, `"function_call"`:
		return providers.FinishToolCalls
	}
	return providers.FinishStop
}

// parseToolCalls reads choices[0].message.tool_calls and finish_reason of
// a completion already checked by parseCompletion, leniently.
func parseToolCalls(body []byte, res *providers.Result) {
	obj, err := jsonx.NewObject(body)
	if err != nil {
		return
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if !jsonx.KeyIs(k, "choices") {
			continue
		}
		arr, err := jsonx.NewArray(v)
		if err != nil {
			return
		}
		el, ok := arr.Element()
		if !ok {
			return
		}
		ch, err := jsonx.NewObject(el)
		if err != nil {
			return
		}
		for ck, cv, ok := ch.Member(); ok; ck, cv, ok = ch.Member() {
			switch {
			case jsonx.KeyIs(ck, "finish_reason"):
				if len(cv) > 0 && cv[0] == '"' {
					res.FinishReason = finishReason(cv)
				}
			case jsonx.KeyIs(ck, "message"):
				msg, err := jsonx.NewObject(cv)
				if err != nil {
					continue
				}
				for mk, mv, ok := msg.Member(); ok; mk, mv, ok = msg.Member() {
					if jsonx.KeyIs(mk, "tool_calls") {
						var acc toolCallAcc
						acc.addDeltas(mv)
						res.ToolCalls = acc.calls
					}
				}
			}
		}
	}
}
