package mock

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/valyala/fasthttp"
)

// This file holds the bytes of both protocols: replies, stream events and
// error bodies, as documented by OpenAI (chat completions, chat completion
// chunks) and Anthropic (messages, streaming messages, errors).

func appendID(dst []byte, prefix string, id uint64) []byte {
	dst = append(dst, prefix...)
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(id>>uint(shift))&0xf])
	}
	return dst
}

func openAIFinish(p *plan) string {
	if p.stop {
		return "stop"
	}
	return "length"
}

func anthropicStop(p *plan) string {
	if p.stop {
		return "end_turn"
	}
	return "max_tokens"
}

func appendOpenAIUsage(dst []byte, a *answer) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, a.in, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(a.plan.n), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, a.in+int64(a.plan.n), 10)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.read, 10)
	return append(dst, `,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
}

// appendAnthropicUsage appends a message's usage object as the messages
// API reports it (non-streaming reply and message_start): input_tokens
// is the uncached rest, cache_creation splits the writes by TTL.
func appendAnthropicUsage(dst []byte, a *answer, output int64) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, a.uncached(), 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.written(), 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.read, 10)
	dst = append(dst, `,"cache_creation":{"ephemeral_5m_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.write5m, 10)
	dst = append(dst, `,"ephemeral_1h_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.write1h, 10)
	dst = append(dst, `},"output_tokens":`...)
	dst = strconv.AppendInt(dst, output, 10)
	return append(dst, `,"service_tier":"standard"}`...)
}

// appendAnthropicDeltaUsage appends message_delta's usage: cumulative,
// repeating the input and cache counts beside the final output.
func appendAnthropicDeltaUsage(dst []byte, a *answer, output int64) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, a.uncached(), 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.written(), 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.read, 10)
	dst = append(dst, `,"output_tokens":`...)
	dst = strconv.AppendInt(dst, output, 10)
	return append(dst, '}')
}

// appendOpenAIHead appends a chat completion (chunk) object's fields up to
// and including `"choices":`.
func appendOpenAIHead(dst []byte, object string, id uint64, created int64, model []byte) []byte {
	dst = appendID(append(dst, `{"id":`...), `"chatcmpl-mock`, id)
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonx.AppendString(dst, model)
	return append(dst, `,"service_tier":"default","system_fingerprint":"fp_mock","choices":`...)
}

// appendOpenAICompletion appends a non-streaming chat.completion body.
func appendOpenAICompletion(dst []byte, a *answer, model []byte, created int64) []byte {
	dst = appendOpenAIHead(dst, "chat.completion", a.id, created, model)
	dst = append(dst, `[{"index":0,"message":{"role":"assistant","content":"`...)
	dst = a.plan.appendContent(dst) // vocabulary words need no escaping
	dst = append(dst, `","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, openAIFinish(&a.plan)...)
	dst = append(dst, `"}],"usage":`...)
	dst = appendOpenAIUsage(dst, a)
	return append(dst, '}')
}

// appendAnthropicMessage appends a non-streaming message body.
func appendAnthropicMessage(dst []byte, a *answer, model []byte) []byte {
	dst = appendID(append(dst, `{"id":`...), `"msg_mock`, a.id)
	dst = append(dst, `","type":"message","role":"assistant","model":`...)
	dst = jsonx.AppendString(dst, model)
	dst = append(dst, `,"content":[{"type":"text","text":"`...)
	dst = a.plan.appendContent(dst)
	dst = append(dst, `"}],"stop_reason":"`...)
	dst = append(dst, anthropicStop(&a.plan)...)
	dst = append(dst, `","stop_sequence":null,"usage":`...)
	dst = appendAnthropicUsage(dst, a, int64(a.plan.n))
	return append(dst, '}')
}

// runOpenAI writes the chat.completion.chunk stream: a role chunk, one
// chunk per delta, a finish chunk, the usage chunk when asked for, and
// [DONE].
func (j *streamJob) runOpenAI(w eventWriter) streamEnd {
	j.prefix = appendOpenAIHead(append(j.prefix[:0], "data: "...), "chat.completion.chunk", j.a.id, j.created, j.model)
	tail := `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
	if j.includeUsage {
		tail = `,"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"
	}
	j.buf = append(append(j.buf[:0], j.prefix...), `[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}`...)
	j.buf = append(j.buf, tail...)
	if !j.emit(w) {
		return endGone
	}
	for i := 0; i < j.a.plan.n; i++ {
		if cut, errEvent := j.knob(i); cut {
			return endKnob
		} else if errEvent {
			j.buf = append(j.buf[:0], `data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`+"\n\n"...)
			if !j.emit(w) {
				return endGone
			}
			return endKnob
		}
		if i > 0 && !j.s.wait(&j.timer, j.delay) {
			return endGone
		}
		j.buf = append(append(j.buf[:0], j.prefix...), `[{"index":0,"delta":{"content":"`...)
		j.buf = append(j.buf, j.a.plan.token(i)...)
		j.buf = append(append(j.buf, `"}`...), tail...)
		if !j.emit(w) {
			return endGone
		}
	}
	j.buf = append(append(j.buf[:0], j.prefix...), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
	j.buf = append(j.buf, openAIFinish(&j.a.plan)...)
	if j.includeUsage {
		j.buf = append(j.buf, `"}],"usage":null}`+"\n\n"...)
	} else {
		j.buf = append(j.buf, `"}]}`+"\n\n"...)
	}
	if !j.emit(w) {
		return endGone
	}
	if j.includeUsage {
		j.buf = append(j.buf[:0], j.prefix...)
		if j.choicesNull {
			j.buf = append(j.buf, `null,"usage":`...)
		} else {
			j.buf = append(j.buf, `[],"usage":`...)
		}
		j.buf = appendOpenAIUsage(j.buf, &j.a)
		j.buf = append(j.buf, "}\n\n"...)
		if !j.emit(w) {
			return endGone
		}
	}
	j.buf = append(j.buf[:0], "data: [DONE]\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	return endDone
}

// runAnthropic writes the messages event stream: message_start,
// content_block_start, ping, one content_block_delta per delta,
// content_block_stop, message_delta, message_stop.
func (j *streamJob) runAnthropic(w eventWriter) streamEnd {
	j.buf = append(j.buf[:0], "event: message_start\ndata: "...)
	j.buf = appendID(append(j.buf, `{"type":"message_start","message":{"id":`...), `"msg_mock`, j.a.id)
	j.buf = append(j.buf, `","type":"message","role":"assistant","model":`...)
	j.buf = jsonx.AppendString(j.buf, j.model)
	j.buf = append(j.buf, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	j.buf = appendAnthropicUsage(j.buf, &j.a, 1)
	j.buf = append(j.buf, "}}\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	j.buf = append(j.buf[:0], "event: content_block_start\ndata: "+`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`+"\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	j.buf = append(j.buf[:0], "event: ping\ndata: "+`{"type": "ping"}`+"\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	for i := 0; i < j.a.plan.n; i++ {
		if cut, errEvent := j.knob(i); cut {
			return endKnob
		} else if errEvent {
			j.buf = append(j.buf[:0], "event: error\ndata: "+`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`+"\n\n"...)
			if !j.emit(w) {
				return endGone
			}
			return endKnob
		}
		if i > 0 && !j.s.wait(&j.timer, j.delay) {
			return endGone
		}
		j.buf = append(j.buf[:0], "event: content_block_delta\ndata: "+`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`...)
		j.buf = append(j.buf, j.a.plan.token(i)...)
		j.buf = append(j.buf, `"}}`+"\n\n"...)
		if !j.emit(w) {
			return endGone
		}
	}
	j.buf = append(j.buf[:0], "event: content_block_stop\ndata: "+`{"type":"content_block_stop","index":0}`+"\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	j.buf = append(j.buf[:0], "event: message_delta\ndata: "+`{"type":"message_delta","delta":{"stop_reason":"`...)
	j.buf = append(j.buf, anthropicStop(&j.a.plan)...)
	j.buf = append(j.buf, `","stop_sequence":null},"usage":`...)
	j.buf = appendAnthropicDeltaUsage(j.buf, &j.a, int64(j.a.plan.n))
	j.buf = append(j.buf, "}\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	j.buf = append(j.buf[:0], "event: message_stop\ndata: "+`{"type":"message_stop"}`+"\n\n"...)
	if !j.emit(w) {
		return endGone
	}
	return endDone
}

// writeOpenAIError writes {"error":{"message","type","param","code"}};
// empty param or code are null.
func writeOpenAIError(ctx *fasthttp.RequestCtx, status int, typ, param, code, msg string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"message":`...)
	b = jsonx.AppendString(b, msg)
	b = append(b, `,"type":`...)
	b = jsonx.AppendString(b, typ)
	b = append(b, `,"param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = jsonx.AppendString(b, param)
	}
	b = append(b, `,"code":`...)
	if code == "" {
		b = append(b, "null"...)
	} else {
		b = jsonx.AppendString(b, code)
	}
	b = append(b, "}}"...)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(b)
}

// writeAnthropicError writes {"type":"error","error":{"type","message"}}.
func writeAnthropicError(ctx *fasthttp.RequestCtx, status int, typ, msg string) {
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"type":"error","error":{"type":`...)
	b = jsonx.AppendString(b, typ)
	b = append(b, `,"message":`...)
	b = jsonx.AppendString(b, msg)
	b = append(b, "}}"...)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(b)
}

// openAIErrorFor is the error OpenAI sends with status.
func openAIErrorFor(status int) (typ, code, msg string) {
	switch status {
	case 400:
		return "invalid_request_error", "", "Invalid request."
	case 401:
		return "invalid_request_error", "invalid_api_key", "Incorrect API key provided."
	case 403:
		return "invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"
	case 404:
		return "invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."
	case 429:
		return "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."
	case 500:
		return "server_error", "", "The server had an error while processing your request. Sorry about that!"
	case 503:
		return "server_error", "", "The engine is currently overloaded, please try again later"
	}
	if status < 500 {
		return "invalid_request_error", "", "Invalid request."
	}
	return "server_error", "", "The server had an error while processing your request. Sorry about that!"
}

// anthropicErrorFor is the error Anthropic sends with status.
func anthropicErrorFor(status int) (typ, msg string) {
	switch status {
	case 400:
		return "invalid_request_error", "Invalid request."
	case 401:
		return "authentication_error", "invalid x-api-key"
	case 403:
		return "permission_error", "Your API key does not have permission to use the specified resource."
	case 404:
		return "not_found_error", "Not found."
	case 413:
		return "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case 429:
		return "rate_limit_error", "Number of requests has exceeded your rate limit."
	case 500:
		return "api_error", "Internal server error"
	case 504:
		return "timeout_error", "Request timed out"
	case 529:
		return "overloaded_error", "Overloaded"
	}
	if status < 500 {
		return "invalid_request_error", "Invalid request."
	}
	return "api_error", "Internal server error"
}

// writeInjectedError answers with cfg.FailStatus.
func writeInjectedError(ctx *fasthttp.RequestCtx, cfg *ServerConfig, p protocol) {
	st := cfg.FailStatus
	if cfg.RetryAfter > 0 && (st == 429 || st == 503 || st == 529) {
		ctx.Response.Header.Set("retry-after", strconv.FormatFloat(cfg.RetryAfter.Seconds(), 'f', -1, 64))
	}
	if p == protoOpenAI {
		typ, code, msg := openAIErrorFor(st)
		writeOpenAIError(ctx, st, typ, "", code, msg)
		return
	}
	typ, msg := anthropicErrorFor(st)
	writeAnthropicError(ctx, st, typ, msg)
}

// writeAuthError answers a missing or wrong credential. Like OpenAI, the
// 401 quotes a masked form of a wrong key (first three and last four
// characters), which lets gateway tests check that upstream error bodies
// never reach clients.
func writeAuthError(ctx *fasthttp.RequestCtx, p protocol, present bool) {
	if p == protoAnthropic {
		msg := "invalid x-api-key"
		if !present {
			msg = "x-api-key header is required"
		}
		writeAnthropicError(ctx, 401, "authentication_error", msg)
		return
	}
	if !present {
		writeOpenAIError(ctx, 401, "invalid_request_error", "", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
		return
	}
	h := ctx.Request.Header.Peek("Authorization")
	key := ""
	if len(h) > 7 {
		key = string(h[7:])
	}
	writeOpenAIError(ctx, 401, "invalid_request_error", "", "invalid_api_key",
		"Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.")
}

func maskKey(k string) string {
	if len(k) < 12 {
		return "********"
	}
	return k[:3] + "****************" + k[len(k)-4:]
}

func writeDecodeError(ctx *fasthttp.RequestCtx, p protocol, err error) {
	param := "body"
	if te, ok := err.(*typeError); ok {
		param = te.Param
	} else {
		if p == protoOpenAI {
			writeOpenAIError(ctx, 400, "invalid_request_error", "", "",
				"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
		} else {
			writeAnthropicError(ctx, 400, "invalid_request_error", "There was an error parsing the body of your request: invalid JSON")
		}
		return
	}
	if p == protoOpenAI {
		writeOpenAIError(ctx, 400, "invalid_request_error", param, "invalid_type", "Invalid type for '"+param+"'.")
		return
	}
	writeAnthropicError(ctx, 400, "invalid_request_error", param+": Input has an invalid type")
}

func writeShuttingDown(ctx *fasthttp.RequestCtx, p protocol) {
	ctx.SetConnectionClose()
	if p == protoOpenAI {
		writeOpenAIError(ctx, 503, "server_error", "", "", "The server is shutting down.")
		return
	}
	writeAnthropicError(ctx, 503, "api_error", "The server is shutting down.")
}
