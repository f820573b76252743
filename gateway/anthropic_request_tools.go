package gateway

import (
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

func toolUseCall(b *block, f string) (providers.ToolCall, *apiError) {
	var tc providers.ToolCall
	id, ok1 := jsonText(b.id)
	name, ok2 := jsonText(b.name)
	if !ok1 || !ok2 || len(id) == 0 || len(name) == 0 {
		return tc, badRequest(f, "tool_use needs an id and a name")
	}
	if len(b.input) == 0 || !jsonx.IsObject(b.input) {
		return tc, badRequest(f+".input", "must be an object")
	}
	return providers.ToolCall{ID: string(id), Name: string(name), Arguments: string(b.input)}, nil
}

func toolResultMessage(b *block, f string) (providers.Message, *apiError) {
	m := providers.Message{Role: providers.RoleTool, IsError: b.isError}
	id, ok := jsonText(b.toolUseID)
	if !ok || len(id) == 0 {
		return m, badRequest(f+".tool_use_id", "Field required")
	}
	m.ToolCallID = string(id)
	if len(b.content) > 0 {
		s, breaks, ae := decodeAnthropicText(b.content, f+".content")
		if ae != nil {
			return m, ae
		}
		m.Text = s
		// A breakpoint on the result's last block marks the result.
		for i, br := range breaks {
			if i < len(breaks)-1 || br.At != len(s) {
				return m, badRequest(f+".content.cache_control", "is supported only on the result's last block")
			}
			m.Cache = br.TTL
		}
	}
	return m, nil
}

func decodeAnthropicTools(v []byte, dst *[]providers.Tool) *apiError {
	els := anthropicArray(v, "tools", "must be an array")
	for obj, ok := els.nextObject("tools"); ok; obj, ok = els.nextObject("tools") {
		f := els.name("tools")
		var t providers.Tool
		var ae *apiError
		for k, tv, ok := obj.Member(); ok && ae == nil; k, tv, ok = obj.Member() {
			if jsonx.IsNull(tv) {
				continue
			}
			var known bool
			if known, ae = decodeToolMember(k, tv, f, "input_schema", &t); known {
				continue
			}
			switch {
			case jsonx.KeyIs(k, "type"):
				if string(tv) != `"custom"` {
					ae = badRequest(f+".type", "server tools are not supported; only custom tools")
				}
			case jsonx.KeyIs(k, "cache_control"):
				t.Cache, ae = decodeCacheControl(tv, f+".cache_control")
			}
		}
		if ae != nil {
			return ae
		}
		if t.Name == "" {
			return badRequest(f+".name", "Field required")
		}
		if len(t.Parameters) == 0 {
			return badRequest(f+".input_schema", "Field required")
		}
		*dst = append(*dst, t)
	}
	return els.err
}

func decodeAnthropicToolChoice(v []byte, tc *providers.ToolChoice) *apiError {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest("tool_choice", "must be an object")
	}
	var typ []byte
	var ae *apiError
	for k, cv, ok := obj.Member(); ok && ae == nil; k, cv, ok = obj.Member() {
		if jsonx.IsNull(cv) {
			continue
		}
		switch {
		case jsonx.KeyIs(k, "type"):
			typ = cv
		case jsonx.KeyIs(k, "name"):
			tc.Name, ae = jsonStr(cv, "tool_choice.name")
		case jsonx.KeyIs(k, "disable_parallel_tool_use"):
			tc.NoParallel, ae = jsonBool(cv, "tool_choice.disable_parallel_tool_use")
		}
	}
	if ae != nil {
		return ae
	}
	switch string(typ) {
	case `"auto"`:
		tc.Mode = providers.ToolChoiceAuto
	case `"any"`:
		tc.Mode = providers.ToolChoiceRequired
	case `"none"`:
		tc.Mode = providers.ToolChoiceNone
	case `"tool"`:
		tc.Mode = providers.ToolChoiceNamed
		if tc.Name == "" {
			return badRequest("tool_choice.name", "Field required")
		}
	default:
		return badRequest("tool_choice.type", `must be "auto", "any", "tool" or "none"`)
	}
	return nil
}
