package gateway

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

func decodeOpenAIToolCalls(v []byte, field string, dst *[]providers.ToolCall) *apiError {
	els := openAIArray(v, field, "must be an array")
	for obj, ok := els.nextObject(field); ok; obj, ok = els.nextObject(field) {
		f := els.name(field)
		var tc providers.ToolCall
		var ae *apiError
		for k, cv, ok := obj.Member(); ok && ae == nil; k, cv, ok = obj.Member() {
			switch {
			case jsonx.KeyIs(k, "id"):
				tc.ID, ae = jsonStr(cv, f+".id")
			case jsonx.KeyIs(k, "type"):
				if string(cv) != `"function"` {
					ae = badRequest(f+".type", `must be "function"`)
				}
			case jsonx.KeyIs(k, "function"):
				fo, err := jsonx.NewObject(cv)
				if err != nil {
					ae = badRequest(f+".function", "must be an object")
					continue
				}
				for fk, fv, ok := fo.Member(); ok && ae == nil; fk, fv, ok = fo.Member() {
					switch {
					case jsonx.KeyIs(fk, "name"):
						tc.Name, ae = jsonStr(fv, f+".function.name")
					case jsonx.KeyIs(fk, "arguments"):
						tc.Arguments, ae = jsonStr(fv, f+".function.arguments")
					}
				}
			}
		}
		if ae != nil {
			return ae
		}
		if tc.ID == "" || tc.Name == "" {
			return badRequest(f, "needs an id and a function name")
		}
		if tc.Arguments == "" {
			tc.Arguments = "{}"
		}
		if !jsonx.IsObject([]byte(tc.Arguments)) || !jsonx.Valid([]byte(tc.Arguments)) {
			return badRequest(f+".function.arguments", "must be a JSON object")
		}
		*dst = append(*dst, tc)
	}
	return els.err
}

func decodeOpenAITools(v []byte, dst *[]providers.Tool) *apiError {
	els := openAIArray(v, "tools", "must be an array")
	for obj, ok := els.nextObject("tools"); ok; obj, ok = els.nextObject("tools") {
		f := els.name("tools")
		var t providers.Tool
		var ae *apiError
		for k, tv, ok := obj.Member(); ok && ae == nil; k, tv, ok = obj.Member() {
			switch {
			case jsonx.KeyIs(k, "type"):
				if string(tv) != `"function"` {
					ae = badRequest(f+".type", `only "function" tools are supported`)
				}
			case jsonx.KeyIs(k, "function"):
				ae = decodeFunction(tv, f+".function", &t)
			}
		}
		if ae != nil {
			return ae
		}
		if t.Name == "" {
			return badRequest(f+".function.name", "is required")
		}
		*dst = append(*dst, t)
	}
	return els.err
}

func decodeFunction(v []byte, f string, t *providers.Tool) *apiError {
	fo, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest(f, "must be an object")
	}
	var ae *apiError
	for k, fv, ok := fo.Member(); ok && ae == nil; k, fv, ok = fo.Member() {
		if jsonx.IsNull(fv) {
			continue
		}
		var known bool
		if known, ae = decodeToolMember(k, fv, f, "parameters", t); !known && jsonx.KeyIs(k, "strict") && string(fv) == "true" {
			ae = badRequest(f+".strict", "is not supported")
		}
	}
	return ae
}

func decodeOpenAIToolChoice(v []byte, tc *providers.ToolChoice) *apiError {
	switch string(v) {
	case `"auto"`:
		tc.Mode = providers.ToolChoiceAuto
		return nil
	case `"none"`:
		tc.Mode = providers.ToolChoiceNone
		return nil
	case `"required"`:
		tc.Mode = providers.ToolChoiceRequired
		return nil
	}
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest("tool_choice", `must be "auto", "none", "required" or a function`)
	}
	for k, cv, ok := obj.Member(); ok; k, cv, ok = obj.Member() {
		if !jsonx.KeyIs(k, "function") {
			continue
		}
		var t providers.Tool
		if ae := decodeFunction(cv, "tool_choice.function", &t); ae != nil {
			return ae
		}
		tc.Mode, tc.Name = providers.ToolChoiceNamed, t.Name
	}
	if tc.Mode != providers.ToolChoiceNamed || tc.Name == "" {
		return badRequest("tool_choice.function.name", "is required")
	}
	return nil
}

// decodeToolMember reads the members a tool definition has on both
// protocols (field f): its name, its description and, under schemaKey
// (input_schema, parameters), the JSON Schema of its input, kept
// verbatim. known is false for any other member, left to the caller.
func decodeToolMember(k, v []byte, f, schemaKey string, t *providers.Tool) (known bool, ae *apiError) {
	switch {
	case jsonx.KeyIs(k, "name"):
		t.Name, ae = jsonStr(v, f+".name")
	case jsonx.KeyIs(k, "description"):
		t.Description, ae = jsonStr(v, f+".description")
	case jsonx.KeyIs(k, schemaKey):
		if !jsonx.IsObject(v) {
			ae = badRequest(f+"."+schemaKey, "must be a JSON Schema object")
		}
		t.Parameters = append([]byte(nil), v...)
	default:
		return false, nil
	}
	return true, ae
}

// checkToolChoice refuses a choice that names no offered tool.
func checkToolChoice(r *providers.Request, field string) *apiError {
	tc := &r.ToolChoice
	if (tc.Mode == providers.ToolChoiceRequired || tc.Mode == providers.ToolChoiceNamed) && len(r.Tools) == 0 {
		return badRequest(field, "requires tools")
	}
	if tc.Mode == providers.ToolChoiceNamed {
		for i := range r.Tools {
			if r.Tools[i].Name == tc.Name {
				return nil
			}
		}
		return badRequest(field, "names no tool in tools: "+strconv.Quote(tc.Name))
	}
	return nil
}
