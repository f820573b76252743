package mock

import (
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// The mock's tool behaviour, shared by the in-process provider and the
// wire server: when a request offers tools (and does not forbid them) and
// its last turn is not a tool result, the answer is one call of the named
// tool, else of the first, with arguments made up from the tool's schema;
// after a tool result it answers in text. That is enough for a client to
// round-trip a tool call through either protocol.

// toolCallFor returns the call the mock makes for r, if any.
func toolCallFor(r *providers.Request, seed uint64) (providers.ToolCall, bool) {
	if len(r.Tools) == 0 || r.ToolChoice.Mode == providers.ToolChoiceNone || r.LastIsToolResult() {
		return providers.ToolCall{}, false
	}
	t := &r.Tools[0]
	if r.ToolChoice.Mode == providers.ToolChoiceNamed {
		for i := range r.Tools {
			if r.Tools[i].Name == r.ToolChoice.Name {
				t = &r.Tools[i]
			}
		}
	}
	id := appendID(nil, "call_mock", seed)
	return providers.ToolCall{ID: string(id), Name: t.Name, Arguments: string(appendArguments(nil, t.Parameters))}, true
}

// appendArguments makes a JSON object with one value per property of the
// schema: "mock" for strings, 1 for numbers, true for booleans, [] and {}
// for arrays and objects, null otherwise. A schema it cannot read gives {}.
func appendArguments(dst []byte, schema []byte) []byte {
	start := len(dst)
	dst = append(dst, '{')
	if len(schema) == 0 || !jsonx.IsObject(schema) {
		return append(dst, '}')
	}
	obj, err := jsonx.NewObject(schema)
	if err != nil {
		return append(dst[:start], "{}"...)
	}
	n := 0
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if !jsonx.KeyIs(k, "properties") || !jsonx.IsObject(v) {
			continue
		}
		props, err := jsonx.NewObject(v)
		if err != nil {
			return append(dst[:start], "{}"...)
		}
		for name, pv, ok := props.Member(); ok; name, pv, ok = props.Member() {
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, name...) // the raw key literal, already JSON
			dst = append(dst, ':')
			dst = append(dst, exampleValue(pv)...)
		}
		if props.Err() != nil {
			return append(dst[:start], "{}"...)
		}
	}
	if obj.Err() != nil {
		return append(dst[:start], "{}"...)
	}
	return append(dst, '}')
}

func exampleValue(schema []byte) string {
	if !jsonx.IsObject(schema) {
		return "null"
	}
	obj, err := jsonx.NewObject(schema)
	if err != nil {
		return "null"
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if !jsonx.KeyIs(k, "type") {
			continue
		}
		switch string(v) {
		case `"string"`:
			return `"mock"`
		case `"integer"`, `"number"`:
			return "1"
		case `"boolean"`:
			return "true"
		case `"array"`:
			return "[]"
		case `"object"`:
			return "{}"
		}
	}
	return "null"
}

// seedOfRequest is seedOfStrings for a conversation: the system text
// (System and system turns) and everything else as the user part.
func seedOfRequest(r *providers.Request) (seed uint64, inputTokens int64) {
	if !r.Conversation() {
		return seedOfStrings(r.Model, r.System, r.UserText)
	}
	sys, usr := newTextHash(), newTextHash()
	if r.System != "" {
		sys.addString(r.System)
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		h := &usr
		if m.Role == providers.RoleSystem {
			h = &sys
		}
		h.addString(m.Text)
		for _, c := range m.ToolCalls {
			h.addString(c.Name)
			h.addString(c.Arguments)
		}
	}
	for i := range r.Tools {
		usr.addString(r.Tools[i].Name)
	}
	m := newTextHash()
	m.addString(r.Model)
	return combineSeed(m.h, sys.h, usr.h), sys.tokens + usr.tokens
}

// toolCallTokens is what a tool call counts as output.
func toolCallTokens(c *providers.ToolCall) int64 {
	return providers.EstimateTokens(c.Name) + providers.EstimateTokens(c.Arguments) + 1
}
