package mock

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
)

// This file holds the bytes of both protocols' replies and stream events,
// as documented by OpenAI (chat completions, chat completion chunks) and
// Anthropic (messages, streaming messages); their error bodies are in
// wire_errors.go.

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
	dst = appendAnthropicInput(dst, a)
	dst = append(dst, `,"cache_creation":{"ephemeral_5m_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.write5m, 10)
	dst = append(dst, `,"ephemeral_1h_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.write1h, 10)
	dst = append(dst, `},"output_tokens":`...)
	dst = strconv.AppendInt(dst, output, 10)
	return append(dst, `,"service_tier":"standard"}`...)
}

// appendAnthropicInput opens a usage object with the input counts every
// Anthropic usage repeats: the uncached rest, the cache writes, the
// cache reads.
func appendAnthropicInput(dst []byte, a *answer) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, a.uncached(), 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.written(), 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, a.cache.read, 10)
	return dst
}

// appendAnthropicDeltaUsage appends message_delta's usage: cumulative,
// repeating the input and cache counts beside the final output.
func appendAnthropicDeltaUsage(dst []byte, a *answer, output int64) []byte {
	dst = appendAnthropicInput(dst, a)
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
