package bench

import (
	"bytes"
)

// Proto is the wire protocol a target speaks.
type Proto int

const (
	// ProtoPersona is the gateway's persona chat API: event: delta / done /
	// error.
	ProtoPersona Proto = iota
	// ProtoOpenAI is OpenAI chat completions: data: {chunk} … data: [DONE].
	ProtoOpenAI
)

// String names the protocol as the -target flag and reports do.
func (p Proto) String() string {
	if p == ProtoOpenAI {
		return "openai"
	}
	return "persona"
}

// EventKind is what one server-sent event meant to the bench.
type EventKind int

const (
	// EvNone is an event that carries no token and does not end the stream
	// (OpenAI's role and usage chunks, unknown events).
	EvNone EventKind = iota
	// EvToken is one streamed text delta.
	EvToken
	// EvDone is the clean end of a stream.
	EvDone
	// EvError is an error event: the stream is incomplete.
	EvError
)

// SSEParser turns lines of a server-sent event stream into EventKinds
// without decoding JSON: the bench must stay far cheaper than what it
// measures. It reuses its buffers, so steady-state parsing allocates
// nothing.
type SSEParser struct {
	proto Proto
	event []byte
	data  []byte
	// hasData is set once a data line arrived for the pending event.
	hasData bool
	// code is the error code of the last EvError (persona protocol).
	code []byte
}

// NewSSEParser returns a parser for proto.
func NewSSEParser(proto Proto) *SSEParser {
	return &SSEParser{proto: proto, event: make([]byte, 0, 16), data: make([]byte, 0, 512)}
}

// Reset readies the parser for a new stream.
func (p *SSEParser) Reset() {
	p.event, p.data, p.hasData, p.code = p.event[:0], p.data[:0], false, p.code[:0]
}

// ErrorCode is the error code carried by the last EvError, or "" (the
// returned slice is reused by the next call to Line).
func (p *SSEParser) ErrorCode() []byte { return p.code }

var (
	prefixEvent = []byte("event:")
	prefixData  = []byte("data:")
	doneMarker  = []byte("[DONE]")
	oaDelta     = []byte(`"delta":{"content":"`)
	oaError     = []byte(`{"error"`)
	codeKey     = []byte(`"code":"`)
)

// Line feeds one line (with or without its trailing "\n" or "\r\n") and
// returns the kind of the event it completed; only a blank line completes
// an event.
func (p *SSEParser) Line(line []byte) EventKind {
	line = bytes.TrimRight(line, "\r\n")
	switch {
	case len(line) == 0:
		return p.dispatch()
	case line[0] == ':':
		return EvNone // comment, e.g. ": ping"
	case bytes.HasPrefix(line, prefixEvent):
		p.event = append(p.event[:0], trimSpace1(line[len(prefixEvent):])...)
	case bytes.HasPrefix(line, prefixData):
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, trimSpace1(line[len(prefixData):])...)
		p.hasData = true
	}
	return EvNone
}

// trimSpace1 drops the single optional space after a field's colon.
func trimSpace1(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

func (p *SSEParser) dispatch() EventKind {
	if !p.hasData && len(p.event) == 0 {
		return EvNone
	}
	k := p.classify()
	p.event, p.data, p.hasData = p.event[:0], p.data[:0], false
	return k
}

func (p *SSEParser) classify() EventKind {
	if p.proto == ProtoOpenAI {
		switch {
		case bytes.Equal(p.data, doneMarker):
			return EvDone
		case bytes.HasPrefix(p.data, oaError) || string(p.event) == "error":
			p.code = append(p.code[:0], "upstream_error_event"...)
			return EvError
		}
		if i := bytes.Index(p.data, oaDelta); i >= 0 {
			if rest := p.data[i+len(oaDelta):]; len(rest) > 0 && rest[0] != '"' {
				return EvToken
			}
		}
		return EvNone
	}
	switch string(p.event) {
	case "delta":
		return EvToken
	case "done":
		return EvDone
	case "error":
		p.code = append(p.code[:0], errorCode(p.data)...)
		if len(p.code) == 0 {
			p.code = append(p.code, "error_event"...)
		}
		return EvError
	}
	return EvNone
}

// errorCode finds the "code" string of an error body without decoding it.
func errorCode(body []byte) []byte {
	i := bytes.Index(body, codeKey)
	if i < 0 {
		return nil
	}
	rest := body[i+len(codeKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return nil
	}
	return rest[:j]
}
