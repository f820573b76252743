package openai

import (
	"bytes"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// stream relays one streamed chat completion. Its chunk buffer is reused,
// so a delta costs no allocation.
type stream struct {
	providers.StreamBase
	chunk     chunk
	usage     providers.Usage
	haveUsage bool
	calls     toolCallAcc
	finish    string
}

// newStream is the stream read from the upstream's reply in base.
func newStream(base providers.StreamBase) providers.Stream { return &stream{StreamBase: base} }

// ToolCalls implements providers.ToolCallStream.
func (s *stream) ToolCalls() []providers.ToolCall { return s.calls.calls }

// FinishReason implements providers.ToolCallStream.
func (s *stream) FinishReason() string { return s.finish }

// Next returns the next non-empty content delta; see providers.Stream.
func (s *stream) Next() ([]byte, error) {
	for s.Err == nil {
		ev, ok := s.NextEvent("[DONE]")
		if !ok {
			break
		}
		if string(bytes.TrimSpace(ev.Data)) == "[DONE]" {
			s.Finish()
			break
		}
		if err := parseChunk(ev.Data, &s.chunk); err != nil {
			s.Err = providers.Errorf(s.Name, providers.KindProtocol, "malformed stream chunk")
			break
		}
		if s.chunk.hasError || string(ev.Name) == "error" {
			s.Err = s.ErrorEvent(s.chunk.errType)
			break
		}
		if len(s.chunk.toolCalls) > 0 {
			s.calls.addDeltas(s.chunk.toolCalls)
		}
		if f := s.chunk.finish; len(f) > 2 && f[0] == '"' {
			s.finish = finishReason(f)
		}
		if s.chunk.hasUsage {
			s.usage = usageOf(s.chunk.promptTokens, s.chunk.completionTokens, s.chunk.cachedTokens, s.chunk.reasoningTokens)
			s.haveUsage = true
		}
		if len(s.chunk.content) > 0 {
			s.Deltas++
			s.Body.Delivered() // here, not in a StreamBase method, which would not inline
			return s.chunk.content, nil
		}
	}
	return s.End()
}

// Usage is the upstream's count once its usage chunk arrived; before that
// (or when a cut stream never sent it) an estimate from the prompt size
// and the deltas seen, one token per delta.
func (s *stream) Usage() providers.Usage {
	if s.haveUsage {
		return s.usage
	}
	return providers.Usage{InputTokens: s.InputEstimate, OutputTokens: s.Deltas, Estimated: true}
}

// chunk is what one chat.completion.chunk carries for the gateway. Slices
// are valid until the next parse.
type chunk struct {
	content          []byte
	scratch          []byte // unescaped content, when it had escapes
	promptTokens     int64
	completionTokens int64
	cachedTokens     int64 // prompt_tokens_details.cached_tokens
	reasoningTokens  int64 // completion_tokens_details.reasoning_tokens
	hasUsage         bool
	hasError         bool
	errType          []byte
	// toolCalls and finish are choices[0]'s raw delta.tool_calls and
	// finish_reason, read leniently (never an error) by the stream.
	toolCalls []byte
	finish    []byte
}

// parseChunk reads choices[0].delta.content, usage and error from one
// chunk object. Null stands for absent at every level, so a usage chunk
// whose choices are [] or null both work; a later duplicate key wins, as
// in encoding/json.
func parseChunk(data []byte, c *chunk) error {
	*c = chunk{scratch: c.scratch[:0]}
	it, err := jsonx.NewStrictObject(data)
	if err != nil {
		return err
	}
	for key, val, ok := it.Member(); ok; key, val, ok = it.Member() {
		switch {
		case jsonx.KeyIs(key, "choices"):
			c.content = nil
			if err := c.parseChoices(val); err != nil {
				return err
			}
		case jsonx.KeyIs(key, "usage"):
			if err := c.parseUsage(val); err != nil {
				return err
			}
		case jsonx.KeyIs(key, "error"):
			c.hasError, c.errType = false, nil
			if jsonx.IsNull(val) {
				continue
			}
			c.hasError = true
			// Only the error's type goes further, and only as a short
			// identifier (see providers.SafeErrorType); an object is all
			// we require.
			if jsonx.IsObject(val) {
				e, err := jsonx.NewObject(val)
				if err != nil {
					return err
				}
				for k, v, ok := e.Member(); ok; k, v, ok = e.Member() {
					if jsonx.KeyIs(k, "type") && len(v) > 0 && v[0] == '"' {
						c.errType = v[1 : len(v)-1]
					}
				}
				if err := e.Err(); err != nil {
					return err
				}
			}
		}
	}
	return it.Err()
}

func (c *chunk) parseChoices(val []byte) error {
	arr, err := jsonx.NewArray(val)
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		el, ok := arr.Element()
		if !ok {
			return arr.Err()
		}
		if first {
			if err := c.parseChoice(el); err != nil {
				return err
			}
		}
	}
}

func (c *chunk) parseChoice(val []byte) error {
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if jsonx.KeyIs(key, "finish_reason") {
			c.finish = v
			continue
		}
		if !jsonx.KeyIs(key, "delta") {
			continue
		}
		c.content = nil
		delta, err := jsonx.NewObject(v)
		if err != nil {
			return err
		}
		for k, dv, ok := delta.Member(); ok; k, dv, ok = delta.Member() {
			if jsonx.KeyIs(k, "tool_calls") {
				c.toolCalls = dv
				continue
			}
			if !jsonx.KeyIs(k, "content") {
				continue
			}
			c.content = nil
			if jsonx.IsNull(dv) {
				continue
			}
			if c.content, err = jsonx.UnquoteScratch(&c.scratch, dv); err != nil {
				return err
			}
		}
		if err := delta.Err(); err != nil {
			return err
		}
	}
	return obj.Err()
}

func (c *chunk) parseUsage(val []byte) error {
	c.hasUsage = false
	c.promptTokens, c.completionTokens, c.cachedTokens, c.reasoningTokens = 0, 0, 0, 0
	if jsonx.IsNull(val) {
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	c.hasUsage = true
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		var dst *int64
		switch {
		case jsonx.KeyIs(key, "prompt_tokens"):
			dst = &c.promptTokens
		case jsonx.KeyIs(key, "completion_tokens"):
			dst = &c.completionTokens
		case jsonx.KeyIs(key, "prompt_tokens_details"):
			if err := detailInt(v, "cached_tokens", &c.cachedTokens); err != nil {
				return err
			}
			continue
		case jsonx.KeyIs(key, "completion_tokens_details"):
			if err := detailInt(v, "reasoning_tokens", &c.reasoningTokens); err != nil {
				return err
			}
			continue
		default:
			continue
		}
		n, _, err := jsonx.IntOrNull(v) // null reads as 0
		if err != nil {
			return err
		}
		*dst = n
	}
	return obj.Err()
}

// detailInt reads the member name of a usage details object (null: 0).
func detailInt(val []byte, name string, dst *int64) error {
	*dst = 0
	if jsonx.IsNull(val) {
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if jsonx.KeyIs(k, name) {
			n, null, err := jsonx.IntOrNull(v)
			if err != nil {
				return err
			}
			if !null {
				*dst = n
			}
		}
	}
	return obj.Err()
}
