package mock

import (
	"strconv"
)

// protocol is the wire format a request arrived in.
type protocol uint8

const (
	protoOpenAI protocol = iota + 1
	protoAnthropic
)

// typeError is a request field of the wrong JSON type. Param is the field's
// path, e.g. "messages[0].content".
type typeError struct {
	Param string
}

func (e *typeError) Error() string { return "invalid type for " + e.Param }

// wireRequest is the part of a chat request the mock acts on, decoded from
// either protocol. Texts are not kept: they are folded into the system and
// user hashes (and token counts) as they are read.
//
// Text rules (both protocols): a message's text is its string content, or
// the texts of its "type":"text" blocks joined by "\n" (other blocks are
// ignored; null content is ""). OpenAI messages with role "system" or
// "developer", and Anthropic's top-level "system", go to the system text;
// every other message goes to the user text; messages are joined by "\n".
// For duplicate keys the last one wins, as in encoding/json.
type wireRequest struct {
	model                  []byte
	hasModel               bool
	hasMessages            bool
	messages               int
	stream                 bool
	includeUsage           bool
	maxTokens              int64
	hasMaxTokens           bool
	maxCompletionTokens    int64
	hasMaxCompletionTokens bool
	temperature            float64
	hasTemperature         bool
	system, user           textHash

	proto protocol
	sc    scanner
	msg   []byte // the current message's text
	parts int    // text parts in msg
	role  []byte
	btype []byte
}

// decode parses body as a request of protocol p. It returns errSyntax for
// malformed JSON and *typeError for a field of the wrong type; semantic
// checks (required fields, ranges) are the handler's.
//
// Functions below consume the whole value they are given before returning
// a *typeError, so a type error never stops the scan: a later duplicate key
// can still replace the bad value (as with encoding/json into a map), and a
// syntax error later in the body still wins.
func (r *wireRequest) decode(body []byte, p protocol) error {
	*r = wireRequest{
		model: r.model[:0], msg: r.msg[:0], role: r.role[:0], btype: r.btype[:0],
		sc: scanner{key: r.sc.key[:0]}, proto: p,
		system: newTextHash(), user: newTextHash(),
	}
	r.sc.reset(body)
	if r.sc.peek() != '{' {
		if err := r.sc.skip(); err != nil {
			return err
		}
		if !r.sc.end() {
			return errSyntax
		}
		return &typeError{Param: "body"}
	}
	var slots [numTopFields]error
	err := r.sc.object(func(key []byte) error {
		f := topFieldOf(key, p)
		if f < 0 {
			return r.sc.skip()
		}
		err := r.topField(f)
		slots[f] = nil
		if te, ok := err.(*typeError); ok {
			slots[f] = te
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if !r.sc.end() {
		return errSyntax
	}
	for _, e := range slots {
		if e != nil {
			return e
		}
	}
	return nil
}

// The top-level fields the mock reads; each keeps its own pending type
// error so a later duplicate key clears it.
const (
	fModel = iota
	fStream
	fMaxTokens
	fTemperature
	fMessages
	fMaxCompletionTokens
	fStreamOptions
	fSystem
	numTopFields
)

func topFieldOf(key []byte, p protocol) int {
	switch string(key) {
	case "model":
		return fModel
	case "stream":
		return fStream
	case "max_tokens":
		return fMaxTokens
	case "temperature":
		return fTemperature
	case "messages":
		return fMessages
	}
	if p == protoOpenAI {
		switch string(key) {
		case "max_completion_tokens":
			return fMaxCompletionTokens
		case "stream_options":
			return fStreamOptions
		}
	} else if string(key) == "system" {
		return fSystem
	}
	return -1
}

func (r *wireRequest) topField(f int) error {
	s := &r.sc
	switch f {
	case fModel:
		r.model, r.hasModel = r.model[:0], false
		if s.null() {
			return nil
		}
		if s.peek() != '"' {
			return r.typeErr("model")
		}
		var err error
		r.model, err = s.str(r.model)
		r.hasModel = err == nil
		return err
	case fStream:
		v, err := r.boolean("stream")
		r.stream = v
		return err
	case fMaxTokens:
		v, ok, err := r.integer("max_tokens")
		r.maxTokens, r.hasMaxTokens = v, ok
		return err
	case fMaxCompletionTokens:
		v, ok, err := r.integer("max_completion_tokens")
		r.maxCompletionTokens, r.hasMaxCompletionTokens = v, ok
		return err
	case fTemperature:
		r.temperature, r.hasTemperature = 0, false
		if s.null() {
			return nil
		}
		if c := s.peek(); c != '-' && (c < '0' || c > '9') {
			return r.typeErr("temperature")
		}
		raw, err := s.number()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return &typeError{Param: "temperature"}
		}
		r.temperature, r.hasTemperature = f, true
		return nil
	case fMessages:
		r.messages, r.hasMessages = 0, false
		r.user = newTextHash()
		if r.proto == protoOpenAI {
			r.system = newTextHash()
		}
		if s.null() {
			return nil
		}
		if s.peek() != '[' {
			return r.typeErr("messages")
		}
		r.hasMessages = true
		var first error
		err := s.array(func() error {
			err := r.message()
			if te, ok := err.(*typeError); ok {
				if first == nil {
					first = te
				}
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
		return first
	case fStreamOptions:
		r.includeUsage = false
		if s.null() {
			return nil
		}
		if s.peek() != '{' {
			return r.typeErr("stream_options")
		}
		var pending error
		err := s.object(func(key []byte) error {
			if string(key) != "include_usage" {
				return s.skip()
			}
			v, err := r.boolean("stream_options.include_usage")
			r.includeUsage = v
			pending = nil
			if te, ok := err.(*typeError); ok {
				pending = te
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
		return pending
	case fSystem:
		r.system = newTextHash()
		switch s.peek() {
		case 'n':
			if s.null() {
				return nil
			}
			return errSyntax
		case '"':
			var err error
			r.msg, err = s.str(r.msg[:0])
			if err == nil {
				r.system.add(r.msg)
			}
			return err
		case '[':
			r.msg, r.parts = r.msg[:0], 0
			err := r.blocks(true)
			if err == nil {
				r.system.add(r.msg)
			}
			return err
		}
		return r.typeErr("system")
	}
	return s.skip()
}

// message reads one element of "messages" and folds its text in.
func (r *wireRequest) message() error {
	s := &r.sc
	if s.peek() != '{' {
		return r.typeErr("messages[" + strconv.Itoa(r.messages) + "]")
	}
	r.msg, r.parts, r.role = r.msg[:0], 0, r.role[:0]
	var roleErr, contentErr error
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "role":
			r.role, roleErr = r.role[:0], nil
			if s.null() {
				return nil
			}
			if s.peek() != '"' {
				roleErr = r.typeErr("messages[" + strconv.Itoa(r.messages) + "].role")
				return nil
			}
			r.role, err = s.str(r.role)
			return err
		case "content":
			r.msg, r.parts, contentErr = r.msg[:0], 0, nil
			switch s.peek() {
			case 'n':
				if s.null() {
					return nil
				}
				return errSyntax
			case '"':
				r.msg, err = s.str(r.msg)
				return err
			case '[':
				err = r.blocks(false)
			default:
				err = r.typeErr("messages[" + strconv.Itoa(r.messages) + "].content")
			}
			if te, ok := err.(*typeError); ok {
				contentErr = te
				return nil
			}
			return err
		}
		return s.skip()
	})
	if err != nil {
		return err
	}
	if r.proto == protoOpenAI && (string(r.role) == "system" || string(r.role) == "developer") {
		r.system.add(r.msg)
	} else {
		r.user.add(r.msg)
	}
	r.messages++
	if roleErr != nil {
		return roleErr
	}
	return contentErr
}

// blocks reads an array of content blocks, appending the text blocks'
// texts to r.msg joined by "\n".
func (r *wireRequest) blocks(system bool) error {
	var first error
	err := r.sc.array(func() error {
		err := r.block(system)
		if te, ok := err.(*typeError); ok {
			if first == nil {
				first = te
			}
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return first
}

// block reads one content block and appends its text to r.msg when it is a
// text block. system tells where the block is, for type errors.
func (r *wireRequest) block(system bool) error {
	s := &r.sc
	where := func(suffix string) string {
		if system {
			return "system" + suffix
		}
		return "messages[" + strconv.Itoa(r.messages) + "].content" + suffix
	}
	if s.peek() != '{' {
		return r.typeErr(where(""))
	}
	mark := len(r.msg)
	textSeen := false
	r.btype = r.btype[:0]
	var typeErr, textErr error
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "type":
			r.btype, typeErr = r.btype[:0], nil
			if s.null() {
				return nil
			}
			if s.peek() != '"' {
				typeErr = r.typeErr(where(".type"))
				return nil
			}
			r.btype, err = s.str(r.btype)
			return err
		case "text":
			r.msg, textErr = r.msg[:mark], nil
			if r.parts > 0 {
				r.msg = append(r.msg, '\n')
			}
			textSeen = true
			if s.null() {
				return nil
			}
			if s.peek() != '"' {
				textErr = r.typeErr(where(".text"))
				return nil
			}
			r.msg, err = s.str(r.msg)
			return err
		}
		return s.skip()
	})
	if err != nil {
		return err
	}
	if typeErr != nil {
		return typeErr
	}
	if textErr != nil {
		return textErr
	}
	if string(r.btype) != "text" {
		r.msg = r.msg[:mark]
		return nil
	}
	if !textSeen && r.parts > 0 {
		r.msg = append(r.msg, '\n')
	}
	r.parts++
	return nil
}

func (r *wireRequest) boolean(param string) (bool, error) {
	s := &r.sc
	switch s.peek() {
	case 't':
		if s.literal("true") {
			return true, nil
		}
	case 'f':
		if s.literal("false") {
			return false, nil
		}
	case 'n':
		if s.literal("null") {
			return false, nil
		}
	default:
		return false, r.typeErr(param)
	}
	return false, errSyntax
}

// integer reads an integer or null; ok is false for null.
func (r *wireRequest) integer(param string) (v int64, ok bool, err error) {
	s := &r.sc
	if s.null() {
		return 0, false, nil
	}
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, false, r.typeErr(param)
	}
	raw, err := s.number()
	if err != nil {
		return 0, false, err
	}
	v, err = strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, false, &typeError{Param: param}
	}
	return v, true, nil
}

// typeErr skips the current (wrongly typed) value and reports it; a syntax
// error inside the value wins.
func (r *wireRequest) typeErr(param string) error {
	if err := r.sc.skip(); err != nil {
		return err
	}
	return &typeError{Param: param}
}
