package anthropic

import (
	"bytes"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// stream relays one streamed message. Its event buffer is reused, so a
// delta costs no allocation.
type stream struct {
	providers.StreamBase
	ev        event
	usage     usageFields // latest value of each field reported
	haveStart bool        // message_start's usage arrived
	final     bool        // message_delta's cumulative output arrived
	tools     toolEvents
}

// newStream is the stream read from the upstream's reply in base.
func newStream(base providers.StreamBase) providers.Stream { return &stream{StreamBase: base} }

// ToolCalls implements providers.ToolCallStream.
func (s *stream) ToolCalls() []providers.ToolCall {
	for i := range s.tools.calls {
		if s.tools.calls[i].Arguments == "" {
			s.tools.calls[i].Arguments = "{}"
		}
	}
	return s.tools.calls
}

// FinishReason implements providers.ToolCallStream.
func (s *stream) FinishReason() string { return s.tools.finish }

// Next returns the next non-empty text delta; see providers.Stream.
func (s *stream) Next() ([]byte, error) {
	for s.Err == nil {
		sev, ok := s.NextEvent("message_stop")
		if !ok {
			break
		}
		name := sev.Name
		parsed := false
		if len(name) == 0 {
			// Unnamed events still say what they are in their "type".
			if err := parseEvent(sev.Data, &s.ev); err != nil {
				s.Err = providers.Errorf(s.Name, providers.KindProtocol, "malformed stream event")
				break
			}
			name, parsed = s.ev.typ, true
		}
		switch string(name) {
		case "content_block_start", "message_delta":
			s.tools.onEvent(sev.Data)
		case "content_block_delta":
			if bytes.Contains(sev.Data, []byte("input_json_delta")) {
				s.tools.onEvent(sev.Data)
			}
		}
		switch string(name) {
		case "message_start", "content_block_delta", "message_delta", "error":
			if !parsed {
				if err := parseEvent(sev.Data, &s.ev); err != nil {
					s.Err = providers.Errorf(s.Name, providers.KindProtocol, "malformed %s event", name)
					break
				}
			}
		case "message_stop":
			s.Finish()
			continue
		default:
			// ping, content_block_start/stop and events added later.
			continue
		}
		if s.Err != nil {
			break
		}
		switch string(name) {
		case "message_start":
			s.usage.merge(&s.ev.usage)
			s.haveStart = true
		case "message_delta":
			s.usage.merge(&s.ev.usage)
			if s.ev.usage.has&hasOutput != 0 {
				s.final = true
			}
		case "error":
			e := s.ErrorEvent(s.ev.errType)
			if string(s.ev.errType) == "overloaded_error" {
				e.Status = 529 // Anthropic's overloaded status, so retries treat it as a 5xx
			}
			s.Err = e
		case "content_block_delta":
			if string(s.ev.deltaType) == "text_delta" && len(s.ev.text) > 0 {
				s.Deltas++
				s.Body.Delivered() // here, not in a StreamBase method, which would not inline
				return s.ev.text, nil
			}
		}
	}
	return s.End()
}

// Usage is the upstream's count once message_delta reported the final
// output; before that (or when a cut stream never sent it) it is marked
// Estimated: input from message_start if it came (else from the prompt
// size), output the larger of the last report and the deltas seen.
func (s *stream) Usage() providers.Usage {
	u := &s.usage
	if s.final {
		return cacheUsage(u.input, u.output, u.cacheCreation, u.cacheRead, u.has&hasSplit != 0, u.oneHour)
	}
	out := cacheUsage(u.input, max(u.output, s.Deltas), u.cacheCreation, u.cacheRead, u.has&hasSplit != 0, u.oneHour)
	if !s.haveStart {
		out = providers.Usage{InputTokens: s.InputEstimate, OutputTokens: out.OutputTokens}
	}
	out.Estimated = true
	return out
}

const (
	hasInput uint8 = 1 << iota
	hasCacheCreation
	hasCacheRead
	hasOutput
	hasSplit // cache_creation's TTL split
)

// usageFields are the token counts of a usage object; has marks the ones
// present and not null.
type usageFields struct {
	input, cacheCreation, cacheRead, output int64
	oneHour                                 int64 // cache_creation.ephemeral_1h_input_tokens
	has                                     uint8
}

func (u *usageFields) merge(v *usageFields) {
	if v.has&hasInput != 0 {
		u.input = v.input
	}
	if v.has&hasCacheCreation != 0 {
		u.cacheCreation = v.cacheCreation
	}
	if v.has&hasCacheRead != 0 {
		u.cacheRead = v.cacheRead
	}
	if v.has&hasOutput != 0 {
		u.output = v.output
	}
	if v.has&hasSplit != 0 {
		u.oneHour = v.oneHour
	}
	u.has |= v.has
}

// event is what one stream event's data carries for the gateway. Slices
// are valid until the next parse.
type event struct {
	typ       []byte
	deltaType []byte
	text      []byte
	scratch   []byte // unescaped text, when it had escapes
	usage     usageFields
	errType   []byte
}

// parseEvent reads type, delta.{type,text}, usage (top level, as in
// message_delta, or message.usage, as in message_start) and error.type
// from one event object. Null stands for absent; a later duplicate key
// wins, as in encoding/json.
func parseEvent(data []byte, e *event) error {
	*e = event{scratch: e.scratch[:0]}
	it, err := jsonx.NewStrictObject(data)
	if err != nil {
		return err
	}
	for key, val, ok := it.Member(); ok; key, val, ok = it.Member() {
		var err error
		switch {
		case jsonx.KeyIs(key, "type"):
			e.typ, err = rawString(val)
		case jsonx.KeyIs(key, "delta"):
			e.deltaType, e.text = nil, nil
			err = e.parseDelta(val)
		case jsonx.KeyIs(key, "usage"):
			err = e.usage.parse(val)
		case jsonx.KeyIs(key, "message"):
			err = e.parseMessage(val)
		case jsonx.KeyIs(key, "error"):
			e.errType = nil
			err = eachMember(val, func(k, v []byte) error {
				if jsonx.KeyIs(k, "type") {
					t, err := rawString(v)
					e.errType = t
					return err
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return it.Err()
}

func (e *event) parseDelta(val []byte) error {
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			if e.deltaType, err = rawString(v); err != nil {
				return err
			}
		case jsonx.KeyIs(k, "text"):
			e.text = nil
			if jsonx.IsNull(v) {
				continue
			}
			if e.text, err = jsonx.UnquoteScratch(&e.scratch, v); err != nil {
				return err
			}
		}
	}
	return obj.Err()
}

func (e *event) parseMessage(val []byte) error {
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if jsonx.KeyIs(k, "usage") {
			if err := e.usage.parse(v); err != nil {
				return err
			}
		}
	}
	return obj.Err()
}

func (u *usageFields) parse(val []byte) error {
	*u = usageFields{}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		var dst *int64
		var bit uint8
		switch {
		case jsonx.KeyIs(k, "input_tokens"):
			dst, bit = &u.input, hasInput
		case jsonx.KeyIs(k, "cache_creation_input_tokens"):
			dst, bit = &u.cacheCreation, hasCacheCreation
		case jsonx.KeyIs(k, "cache_read_input_tokens"):
			dst, bit = &u.cacheRead, hasCacheRead
		case jsonx.KeyIs(k, "output_tokens"):
			dst, bit = &u.output, hasOutput
		case jsonx.KeyIs(k, "cache_creation"):
			u.oneHour, u.has = 0, u.has&^hasSplit
			if jsonx.IsNull(v) {
				continue
			}
			if err := eachMember(v, func(k, v []byte) error {
				if !jsonx.KeyIs(k, "ephemeral_1h_input_tokens") || jsonx.IsNull(v) {
					return nil
				}
				n, err := jsonx.Int(v)
				u.oneHour = n
				return err
			}); err != nil {
				return err
			}
			u.has |= hasSplit
			continue
		default:
			continue
		}
		n, null, err := jsonx.IntOrNull(v)
		if err != nil {
			return err
		}
		if *dst, u.has = n, u.has|bit; null {
			u.has &^= bit
		}
	}
	return obj.Err()
}

// rawString returns the text of a JSON string (type tags), or nil for
// null. Tags never carry escapes in practice, so only then does it copy.
func rawString(v []byte) ([]byte, error) {
	if jsonx.IsNull(v) {
		return nil, nil
	}
	return jsonx.Unquote(nil, v)
}

// eachMember calls fn for each member of the object val (null: none).
func eachMember(val []byte, fn func(k, v []byte) error) error {
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for k, v, ok := obj.Member(); ok; k, v, ok = obj.Member() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return obj.Err()
}
