package gateway

import (
	"unicode/utf8"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

func utf8Valid(b []byte) bool { return utf8.Valid(b) }

// decodeOpenAIRequest parses a chat completions body into c. Every
// failure is a 400 naming the field in OpenAI's spelling. Fields that
// cannot be served faithfully on every protocol (n > 1, logprobs,
// penalties, logit_bias, audio and file parts) are refused by name rather than dropped; unknown fields are
// ignored, as on the persona route, so newer SDKs keep working.
func decodeOpenAIRequest(body []byte, c *conversation) *apiError {
	return decodeSDKBody(body, c, &openAIBody)
}

// openAIBody is chat completions' part of the SDK body walk.
var openAIBody = sdkBody{
	messages:   decodeOpenAIMessages,
	member:     decodeOpenAIMember,
	required:   "is required",
	noMessages: "must hold at least one non-system message",
}

// decodeOpenAIMember decodes one non-null member of the body other than
// model and messages into c.
func decodeOpenAIMember(key, v []byte, c *conversation) *apiError {
	r := &c.req
	var ae *apiError
	switch {
	case jsonx.KeyIs(key, "stream"):
		c.stream, ae = jsonBool(v, "stream")
	case jsonx.KeyIs(key, "stream_options"):
		ae = decodeStreamOptions(v, c)
	case jsonx.KeyIs(key, "max_completion_tokens"):
		c.maxTokens, ae = jsonWhole(v, "max_completion_tokens", 1)
		c.hasMaxTokens, c.maxTokensField = true, "max_completion_tokens"
	case jsonx.KeyIs(key, "max_tokens"):
		if c.maxTokensField == "max_completion_tokens" {
			return nil // the newer field wins, as OpenAI documents
		}
		c.maxTokens, ae = jsonWhole(v, "max_tokens", 1)
		c.hasMaxTokens = true
	case jsonx.KeyIs(key, "temperature"):
		r.Temperature, ae = jsonRange(v, "temperature", 0, 2)
		r.HasTemperature = true
	case jsonx.KeyIs(key, "top_p"):
		r.TopP, ae = jsonRange(v, "top_p", 0, 1)
		r.HasTopP = true
	case jsonx.KeyIs(key, "seed"):
		var f float64
		f, ae = jsonRange(v, "seed", -(1 << 53), 1<<53)
		r.Seed, r.HasSeed = int64(f), true
	case jsonx.KeyIs(key, "user"):
		r.User, ae = jsonStr(v, "user")
	case jsonx.KeyIs(key, "prompt_cache_key"):
		// The caller's own key wins over a persona's (see cachePersona).
		r.CacheKey, ae = jsonStr(v, "prompt_cache_key")
	case jsonx.KeyIs(key, "stop"):
		r.Stop, ae = jsonStop(v, "stop", 4)
	case jsonx.KeyIs(key, "n"):
		var n int64
		if n, ae = jsonWhole(v, "n", 1); ae == nil && n != 1 {
			ae = badRequest("n", "only 1 choice is supported")
		}
	case jsonx.KeyIs(key, "tools"):
		ae = decodeOpenAITools(v, &r.Tools)
	case jsonx.KeyIs(key, "tool_choice"):
		ae = decodeOpenAIToolChoice(v, &r.ToolChoice)
	case jsonx.KeyIs(key, "parallel_tool_calls"):
		var par bool
		par, ae = jsonBool(v, "parallel_tool_calls")
		r.ToolChoice.NoParallel = !par
	case jsonx.KeyIs(key, "response_format"):
		ae = decodeResponseFormat(v, r)
	default:
		ae = refuseOpenAIField(key, v)
	}
	return ae
}

// refuseOpenAIField refuses, by name, the fields that cannot be served
// faithfully on every protocol unless they hold their neutral value.
func refuseOpenAIField(key, v []byte) *apiError {
	switch {
	case jsonx.KeyIs(key, "logprobs"):
		if string(v) != "false" {
			return badRequest("logprobs", "is not supported")
		}
	case jsonx.KeyIs(key, "presence_penalty"), jsonx.KeyIs(key, "frequency_penalty"):
		if f, err := jsonx.Float(v); err != nil || f != 0 {
			return badRequest(string(key[1:len(key)-1]), "is not supported")
		}
	case jsonx.KeyIs(key, "logit_bias"), jsonx.KeyIs(key, "top_logprobs"),
		jsonx.KeyIs(key, "audio"), jsonx.KeyIs(key, "modalities"),
		jsonx.KeyIs(key, "prediction"), jsonx.KeyIs(key, "functions"),
		jsonx.KeyIs(key, "function_call"):
		if string(v) != "{}" && string(v) != "[]" {
			return badRequest(string(key[1:len(key)-1]), "is not supported")
		}
	}
	return nil
}

func decodeStreamOptions(v []byte, c *conversation) *apiError {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest("stream_options", "must be an object")
	}
	var ae *apiError
	for k, ov, ok := obj.Member(); ok && ae == nil; k, ov, ok = obj.Member() {
		if jsonx.KeyIs(k, "include_usage") && !jsonx.IsNull(ov) {
			c.includeUsage, ae = jsonBool(ov, "stream_options.include_usage")
		}
	}
	return ae
}

// decodeResponseFormat reads response_format: text is the default; the
// JSON modes are kept verbatim for upstreams that understand them.
func decodeResponseFormat(v []byte, r *providers.Request) *apiError {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest("response_format", "must be an object")
	}
	var typ []byte
	hasSchema := false
	for k, ov, ok := obj.Member(); ok; k, ov, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			typ = ov
		case jsonx.KeyIs(k, "json_schema"):
			hasSchema = jsonx.IsObject(ov)
		}
	}
	switch string(typ) {
	case `"text"`:
		return nil
	case `"json_object"`:
	case `"json_schema"`:
		if !hasSchema {
			return badRequest("response_format.json_schema", "is required for type json_schema")
		}
	default:
		return badRequest("response_format.type", "must be text, json_object or json_schema")
	}
	r.ResponseFormat = append([]byte(nil), v...)
	return nil
}

// decodeOpenAIMessages reads messages; leading system and developer
// messages go to c.system (they follow the persona's prompt), later ones
// stay in place.
func decodeOpenAIMessages(v []byte, c *conversation) *apiError {
	els := openAIArray(v, "messages", "must be an array")
	for el, ok := els.next(); ok; el, ok = els.next() {
		field := els.name("messages")
		var m providers.Message
		if ae := decodeOpenAIMessage(el, field, &m); ae != nil {
			return ae
		}
		if m.Role == providers.RoleSystem && len(c.req.Messages) == 0 {
			c.system = append(c.system, m.Text)
			continue
		}
		c.req.Messages = append(c.req.Messages, m)
	}
	return els.err
}

func decodeOpenAIMessage(v []byte, field string, m *providers.Message) *apiError {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return badRequest(field, "must be an object")
	}
	var ae *apiError
	hasContent := false
	for k, mv, ok := obj.Member(); ok && ae == nil; k, mv, ok = obj.Member() {
		if jsonx.IsNull(mv) {
			continue
		}
		switch {
		case jsonx.KeyIs(k, "role"):
			var role string
			role, ae = jsonStr(mv, field+".role")
			switch role {
			case "system", "developer":
				m.Role = providers.RoleSystem
			case "user":
				m.Role = providers.RoleUser
			case "assistant":
				m.Role = providers.RoleAssistant
			case "tool":
				m.Role = providers.RoleTool
			default:
				if ae == nil {
					ae = badRequest(field+".role", "must be system, developer, user, assistant or tool")
				}
			}
		case jsonx.KeyIs(k, "content"):
			hasContent = true
			m.Text, m.Parts, ae = decodeOpenAIContent(mv, field+".content")
		case jsonx.KeyIs(k, "tool_calls"):
			ae = decodeOpenAIToolCalls(mv, field+".tool_calls", &m.ToolCalls)
		case jsonx.KeyIs(k, "tool_call_id"):
			m.ToolCallID, ae = jsonStr(mv, field+".tool_call_id")
		case jsonx.KeyIs(k, "audio"), jsonx.KeyIs(k, "function_call"):
			ae = badRequest(field+"."+string(k[1:len(k)-1]), "is not supported")
		}
	}
	if ae != nil {
		return ae
	}
	switch {
	case m.Role == 0:
		return badRequest(field+".role", "is required")
	case m.Role == providers.RoleTool && m.ToolCallID == "":
		return badRequest(field+".tool_call_id", "is required for a tool message")
	case m.Role != providers.RoleAssistant && len(m.ToolCalls) > 0:
		return badRequest(field+".tool_calls", "only assistant messages carry tool calls")
	case len(m.Parts) > 0 && m.Role != providers.RoleUser:
		return badRequest(field+".content", "image parts belong to user messages")
	case m.Role != providers.RoleAssistant && !hasContent:
		return badRequest(field+".content", "is required")
	case m.Role == providers.RoleAssistant && m.Text == "" && len(m.ToolCalls) == 0:
		return badRequest(field+".content", "an assistant message needs content or tool_calls")
	}
	return nil
}

// decodeOpenAIContent reads a string or an array of text and image_url
// parts; parts are returned only when there is an image among them.
func decodeOpenAIContent(v []byte, field string) (string, []providers.Part, *apiError) {
	if len(v) > 0 && v[0] == '"' {
		s, ae := jsonStr(v, field)
		return s, nil, ae
	}
	els := openAIArray(v, field, "must be a string or an array of content parts")
	var text []byte
	var parts []providers.Part
	images := false
	for obj, ok := els.nextObject(field); ok; obj, ok = els.nextObject(field) {
		pf := els.name(field)
		var typ, part, image []byte
		for k, pv, ok := obj.Member(); ok; k, pv, ok = obj.Member() {
			switch {
			case jsonx.KeyIs(k, "type"):
				typ = pv
			case jsonx.KeyIs(k, "text"):
				part = pv
			case jsonx.KeyIs(k, "image_url"):
				image = pv
			}
		}
		switch string(typ) {
		case `"text"`:
		case `"image_url"`:
			im, ae := decodeOpenAIImage(image, pf+".image_url")
			if ae != nil {
				return "", nil, ae
			}
			parts = append(parts, providers.Part{Image: &im})
			images = true
			continue
		case "":
			return "", nil, badRequest(pf+".type", "is required")
		default:
			return "", nil, badRequest(pf+".type", string(typ)+" parts are not supported; only text and image_url")
		}
		s, ok := jsonText(part)
		if !ok {
			return "", nil, badRequest(pf+".text", "must be a string")
		}
		text = append(text, s...)
		parts = append(parts, providers.Part{Text: string(s)})
	}
	if els.err != nil {
		return "", nil, els.err
	}
	if !images {
		parts = nil
	}
	return string(text), parts, nil
}

// decodeOpenAIImage reads an image_url part's {"url","detail"}.
func decodeOpenAIImage(v []byte, field string) (providers.Image, *apiError) {
	obj, err := jsonx.NewObject(v)
	if err != nil {
		return providers.Image{}, badRequest(field, "must be an object with a url")
	}
	var url, detail string
	var ae *apiError
	for k, iv, ok := obj.Member(); ok && ae == nil; k, iv, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "url"):
			url, ae = jsonStr(iv, field+".url")
		case jsonx.KeyIs(k, "detail"):
			detail, ae = jsonStr(iv, field+".detail")
		}
	}
	if ae != nil {
		return providers.Image{}, ae
	}
	switch detail {
	case "", "auto", "low", "high", "original":
	default:
		return providers.Image{}, badRequest(field+".detail", "must be auto, low, high or original")
	}
	im, err := providers.ParseImageURL(url)
	if err != nil {
		return providers.Image{}, badRequest(field+".url", err.Error())
	}
	if detail != "auto" {
		im.Detail = detail
	}
	return im, nil
}
