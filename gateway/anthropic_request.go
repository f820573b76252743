package gateway

import (
	"strconv"
	"strings"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// decodeAnthropicRequest parses a Messages API body into c. Failures are
// 400s naming the field as Anthropic spells it. Document blocks,
// extended thinking and MCP servers are refused by name; unknown fields
// are ignored.
func decodeAnthropicRequest(body []byte, c *conversation) *apiError {
	if ae := decodeSDKBody(body, c, &anthropicBody); ae != nil {
		return ae
	}
	for _, b := range c.systemCache {
		c.req.SystemCache = append(c.req.SystemCache, providers.CacheBreak{At: b.at, TTL: b.ttl})
	}
	ae := checkCallerCache(&c.req)
	c.req.SystemCache = c.req.SystemCache[:0] // placed by resolveConversation
	return ae
}

// anthropicBody is the Messages API's part of the SDK body walk:
// max_tokens is required, and a missing field is worded as Anthropic
// words it.
var anthropicBody = sdkBody{
	messages:      decodeAnthropicMessages,
	member:        decodeAnthropicMember,
	required:      "Field required",
	noMessages:    "at least one message is required",
	needMaxTokens: true,
}

// decodeAnthropicMember decodes one non-null member of the body other
// than model and messages into c.
func decodeAnthropicMember(key, v []byte, c *conversation) *apiError {
	r := &c.req
	var ae *apiError
	switch {
	case jsonx.KeyIs(key, "system"):
		var sys string
		var breaks []providers.CacheBreak
		sys, breaks, ae = decodeAnthropicText(v, "system")
		for _, b := range breaks {
			c.systemCache = append(c.systemCache, systemBreak{part: len(c.system), at: b.At, ttl: b.TTL})
		}
		if sys != "" {
			c.system = append(c.system, sys)
		}
	case jsonx.KeyIs(key, "stream"):
		c.stream, ae = jsonBool(v, "stream")
	case jsonx.KeyIs(key, "max_tokens"):
		c.maxTokens, ae = jsonWhole(v, "max_tokens", 1)
		c.hasMaxTokens = true
	case jsonx.KeyIs(key, "temperature"):
		r.Temperature, ae = jsonRange(v, "temperature", 0, 1)
		r.HasTemperature = true
	case jsonx.KeyIs(key, "top_p"):
		r.TopP, ae = jsonRange(v, "top_p", 0, 1)
		r.HasTopP = true
	case jsonx.KeyIs(key, "top_k"):
		var k int64
		k, ae = jsonWhole(v, "top_k", 1)
		r.TopK = int(min(k, 1<<30))
	case jsonx.KeyIs(key, "stop_sequences"):
		r.Stop, ae = jsonStop(v, "stop_sequences", 0)
	case jsonx.KeyIs(key, "metadata"):
		ae = decodeAnthropicMetadata(v, r)
	case jsonx.KeyIs(key, "tools"):
		ae = decodeAnthropicTools(v, &r.Tools)
	case jsonx.KeyIs(key, "tool_choice"):
		ae = decodeAnthropicToolChoice(v, &r.ToolChoice)
	case jsonx.KeyIs(key, "thinking"), jsonx.KeyIs(key, "mcp_servers"),
		jsonx.KeyIs(key, "container"):
		ae = badRequest(string(key[1:len(key)-1]), "is not supported")
	}
	return ae
}

func decodeAnthropicMetadata(v []byte, r *providers.Request) *apiError {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest("metadata", "must be an object")
	}
	var ae *apiError
	for k, mv, ok := obj.Member(); ok && ae == nil; k, mv, ok = obj.Member() {
		if jsonx.KeyIs(k, "user_id") && !jsonx.IsNull(mv) {
			r.User, ae = jsonStr(mv, "metadata.user_id")
		}
	}
	return ae
}

// decodeAnthropicText reads a string or an array of text blocks, and the
// cache breakpoints on those blocks (each at the end of its block's text).
func decodeAnthropicText(v []byte, field string) (string, []providers.CacheBreak, *apiError) {
	if len(v) > 0 && v[0] == '"' {
		s, ae := jsonStr(v, field)
		return s, nil, ae
	}
	els := anthropicArray(v, field, "must be a string or an array of text blocks")
	var text []byte
	var breaks []providers.CacheBreak
	for el, ok := els.next(); ok; el, ok = els.next() {
		f := els.name(field)
		b, ae := readBlock(el, f)
		if ae != nil {
			return "", nil, ae
		}
		if string(b.typ) != `"text"` {
			return "", nil, badRequest(f+".type", "only text blocks are supported here")
		}
		text = append(text, b.text...)
		if b.cache != providers.CacheNone {
			breaks = append(breaks, providers.CacheBreak{At: len(text), TTL: b.cache})
		}
	}
	if els.err != nil {
		return "", nil, els.err
	}
	return string(text), breaks, nil
}

// block is one content block's members, raw.
type block struct {
	typ, id, name, input, toolUseID, content, source []byte
	text                                             string
	isError                                          bool
	hasText                                          bool
	cache                                            providers.CacheTTL
}

func readBlock(v []byte, f string) (block, *apiError) {
	var b block
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return b, badRequest(f, "must be an object")
	}
	var ae *apiError
	for k, bv, ok := obj.Member(); ok && ae == nil; k, bv, ok = obj.Member() {
		if jsonx.IsNull(bv) {
			continue
		}
		switch {
		case jsonx.KeyIs(k, "type"):
			b.typ = bv
		case jsonx.KeyIs(k, "text"):
			b.text, ae = jsonStr(bv, f+".text")
			b.hasText = true
		case jsonx.KeyIs(k, "id"):
			b.id = bv
		case jsonx.KeyIs(k, "name"):
			b.name = bv
		case jsonx.KeyIs(k, "input"):
			b.input = bv
		case jsonx.KeyIs(k, "tool_use_id"):
			b.toolUseID = bv
		case jsonx.KeyIs(k, "content"):
			b.content = bv
		case jsonx.KeyIs(k, "source"):
			b.source = bv
		case jsonx.KeyIs(k, "is_error"):
			b.isError, ae = jsonBool(bv, f+".is_error")
		case jsonx.KeyIs(k, "cache_control"):
			b.cache, ae = decodeCacheControl(bv, f+".cache_control")
		case jsonx.KeyIs(k, "citations"):
			// A hint the answer does not depend on; accepted, not sent on.
		}
	}
	if ae == nil && len(b.typ) == 0 {
		ae = badRequest(f+".type", "Field required")
	}
	return b, ae
}

// decodeAnthropicMessages maps turns onto canonical messages: a user
// turn's tool_result blocks become tool messages (in order, before the
// turn's text), an assistant turn's tool_use blocks its tool calls.
func decodeAnthropicMessages(v []byte, c *conversation) *apiError {
	els := anthropicArray(v, "messages", "must be an array")
	for el, ok := els.next(); ok; el, ok = els.next() {
		f := els.name("messages")
		if ae := decodeAnthropicTurn(el, f, c); ae != nil {
			return ae
		}
	}
	return els.err
}

// decodeAnthropicTurn appends one turn (field f) to c's messages.
func decodeAnthropicTurn(el []byte, f string, c *conversation) *apiError {
	obj, err := jsonx.NewObject(el)
	if err != nil {
		return badRequest(f, "must be an object")
	}
	var role, content []byte
	for k, mv, ok := obj.Member(); ok; k, mv, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "role"):
			role = mv
		case jsonx.KeyIs(k, "content"):
			content = mv
		}
	}
	var m providers.Message
	switch string(role) {
	case `"user"`:
		m.Role = providers.RoleUser
	case `"assistant"`:
		m.Role = providers.RoleAssistant
	case "":
		return badRequest(f+".role", "Field required")
	default:
		return badRequest(f+".role", `must be "user" or "assistant"`)
	}
	if len(content) == 0 || jsonx.IsNull(content) {
		return badRequest(f+".content", "Field required")
	}
	if content[0] == '"' {
		s, ae := jsonStr(content, f+".content")
		if ae != nil {
			return ae
		}
		m.Text = s
		c.req.Messages = append(c.req.Messages, m)
		return nil
	}
	return decodeAnthropicBlocks(content, f, m, c)
}

// decodeAnthropicBlocks appends a turn whose content is an array of
// blocks: its tool results as tool messages first, then m with the
// turn's text, images and tool calls.
func decodeAnthropicBlocks(content []byte, f string, m providers.Message, c *conversation) *apiError {
	blocks, err := jsonx.NewArray(content)
	if err != nil {
		return badRequest(f+".content", "must be a string or an array of blocks")
	}
	var text []byte
	var parts []providers.Part
	images := false
	j := 0
	marked := "" // the field of a text, image or tool_use block with a breakpoint
	for bel, ok := blocks.Element(); ok; bel, ok = blocks.Element() {
		bf := f + ".content." + strconv.Itoa(j)
		j++
		b, ae := readBlock(bel, bf)
		if ae != nil {
			return ae
		}
		if marked != "" && string(b.typ) != `"tool_result"` {
			// Canonical turns keep one breakpoint, on their last block.
			return badRequest(marked+".cache_control", "is supported only on a turn's last block (or a tool_result)")
		}
		if b.cache != providers.CacheNone && string(b.typ) != `"tool_result"` {
			marked, m.Cache = bf, b.cache
		}
		switch string(b.typ) {
		case `"text"`:
			text = append(text, b.text...)
			parts = append(parts, providers.Part{Text: b.text})
		case `"image"`:
			if m.Role != providers.RoleUser {
				return badRequest(bf+".type", "image blocks belong to user turns")
			}
			im, ae := decodeAnthropicImage(b.source, bf+".source")
			if ae != nil {
				return ae
			}
			parts = append(parts, providers.Part{Image: &im})
			images = true
		case `"tool_use"`:
			if m.Role != providers.RoleAssistant {
				return badRequest(bf+".type", "tool_use blocks belong to assistant turns")
			}
			tc, ae := toolUseCall(&b, bf)
			if ae != nil {
				return ae
			}
			m.ToolCalls = append(m.ToolCalls, tc)
		case `"tool_result"`:
			if m.Role != providers.RoleUser {
				return badRequest(bf+".type", "tool_result blocks belong to user turns")
			}
			tm, ae := toolResultMessage(&b, bf)
			if ae != nil {
				return ae
			}
			if b.cache != providers.CacheNone {
				tm.Cache = b.cache
			}
			c.req.Messages = append(c.req.Messages, tm)
		default:
			return badRequest(bf+".type", string(b.typ)+" blocks are not supported; only text, image, tool_use and tool_result")
		}
	}
	m.Text = string(text)
	if images {
		m.Parts = parts
	}
	if m.Text != "" || len(m.ToolCalls) > 0 || images || j == 0 {
		c.req.Messages = append(c.req.Messages, m)
	}
	return nil
}

// decodeAnthropicImage reads an image block's source: {"type":"base64",
// "media_type","data"} or {"type":"url","url"}.
func decodeAnthropicImage(v []byte, field string) (providers.Image, *apiError) {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return providers.Image{}, badRequest(field, "Field required")
	}
	var typ, mediaType, data, url string
	var ae *apiError
	for k, sv, ok := obj.Member(); ok && ae == nil; k, sv, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			typ, ae = jsonStr(sv, field+".type")
		case jsonx.KeyIs(k, "media_type"):
			mediaType, ae = jsonStr(sv, field+".media_type")
		case jsonx.KeyIs(k, "data"):
			data, ae = jsonStr(sv, field+".data")
		case jsonx.KeyIs(k, "url"):
			url, ae = jsonStr(sv, field+".url")
		}
	}
	if ae != nil {
		return providers.Image{}, ae
	}
	switch typ {
	case "base64":
		im, err := providers.NewInlineImage(mediaType, data)
		if err != nil {
			return providers.Image{}, badRequest(field, err.Error())
		}
		return im, nil
	case "url":
		if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
			return providers.Image{}, badRequest(field+".url", "must be an http(s) URL")
		}
		return providers.Image{URL: url}, nil
	}
	return providers.Image{}, badRequest(field+".type", `must be "base64" or "url"`)
}
