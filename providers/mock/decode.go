package mock

import (
	"bytes"
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
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

// errSyntax is a request body that is not valid JSON.
var errSyntax = jsonx.ErrSyntax

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
	key   []byte // the current member's decoded key
	msg   []byte // the current message's text
	parts int    // text parts in msg
	role  []byte
	btype []byte

	cache  cacheScan
	points []point // Anthropic's blocks in prefix order, when marked
}

// decode parses body as a request of protocol p. It returns errSyntax for
// malformed JSON and *typeError for a field of the wrong type; semantic
// checks (required fields, ranges) are the handler's.
//
// The body is walked in place with providers' JSON iterator, which
// validates each value whole before handing it over, so the functions
// below see only well-formed values and a syntax error anywhere in the
// body wins over any type error. Type errors are collected, not returned
// at once, so a later duplicate key can still replace the bad value (as
// with encoding/json into a map). The mock is the bench's baseline: it
// reads only the fields it needs and allocates nothing once its scratch
// buffers have grown.
func (r *wireRequest) decode(body []byte, p protocol) error {
	return r.decodeScan(body, p, false, 0)
}

// decodeScan is decode that, when scan is set, also runs the prompt-cache
// pass (cache_scan.go): the prompt's prefix hashes, Anthropic's markers,
// and for OpenAI (step > 0) the checkpoints from step tokens on, and
// prompt_cache_key. What decode reports is the same either way.
func (r *wireRequest) decodeScan(body []byte, p protocol, scan bool, step int64) error {
	cache := r.cache
	*r = wireRequest{
		model: r.model[:0], key: r.key[:0], msg: r.msg[:0], role: r.role[:0], btype: r.btype[:0],
		proto: p, system: newTextHash(), user: newTextHash(), cache: cache, points: r.points[:0],
	}
	r.cache.reset(scan, p, step)
	if !jsonx.IsObject(body) {
		if !jsonx.Valid(body) {
			return errSyntax
		}
		return &typeError{Param: "body"}
	}
	it, err := jsonx.NewObject(body)
	if err != nil {
		return errSyntax
	}
	var slots [numTopFields]error
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		key := r.keyOf(k)
		f := topFieldOf(key, p)
		if f < 0 {
			if r.cache.on {
				switch {
				case string(key) == "tools":
					r.cache.tools(r, v)
				case p == protoOpenAI && string(key) == "prompt_cache_key":
					r.cache.promptCacheKey(v)
				}
			}
			continue
		}
		err := r.topField(f, v)
		slots[f] = nil
		if te, ok := err.(*typeError); ok {
			slots[f] = te
		} else if err != nil {
			return err
		}
	}
	if it.Err() != nil {
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

// keyOf returns the text of the validated key literal k, decoded into
// r.key (valid until the next call) only when it has escapes. Keys are
// only compared with ASCII names, so leaving invalid UTF-8 unreplaced in
// the common case changes no match.
func (r *wireRequest) keyOf(k []byte) []byte {
	inner := k[1 : len(k)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	r.key, _ = jsonx.AppendUnquoted(r.key[:0], k)
	return r.key
}

// members calls fn with each member of the validated object v, its key
// decoded (valid only during the call).
func (r *wireRequest) members(v []byte, fn func(key, val []byte) error) error {
	it, err := jsonx.NewObject(v)
	if err != nil {
		return errSyntax
	}
	for k, val, ok := it.Member(); ok; k, val, ok = it.Member() {
		if err := fn(r.keyOf(k), val); err != nil {
			return err
		}
	}
	if it.Err() != nil {
		return errSyntax
	}
	return nil
}

// elements calls fn with each element of the validated array v. A type
// error does not stop the walk; the first one is returned at the end.
func elements(v []byte, fn func(el []byte) error) error {
	it, err := jsonx.NewArray(v)
	if err != nil {
		return errSyntax
	}
	var first error
	for el, ok := it.Element(); ok; el, ok = it.Element() {
		err := fn(el)
		if te, isType := err.(*typeError); isType {
			if first == nil {
				first = te
			}
		} else if err != nil {
			return err
		}
	}
	if it.Err() != nil {
		return errSyntax
	}
	return first
}

// topField reads the value v of top-level field f. v is a whole,
// validated JSON value, so its first byte tells its type.
func (r *wireRequest) topField(f int, v []byte) error {
	switch f {
	case fModel:
		r.model, r.hasModel = r.model[:0], false
		if v[0] == 'n' {
			return nil
		}
		if v[0] != '"' {
			return &typeError{Param: "model"}
		}
		var err error
		r.model, err = jsonx.AppendUnquoted(r.model, v)
		r.hasModel = err == nil
		return err
	case fStream:
		b, err := boolean(v, "stream")
		r.stream = b
		return err
	case fMaxTokens:
		n, ok, err := integer(v, "max_tokens")
		r.maxTokens, r.hasMaxTokens = n, ok
		return err
	case fMaxCompletionTokens:
		n, ok, err := integer(v, "max_completion_tokens")
		r.maxCompletionTokens, r.hasMaxCompletionTokens = n, ok
		return err
	case fTemperature:
		r.temperature, r.hasTemperature = 0, false
		if v[0] == 'n' {
			return nil
		}
		if !isNumber(v) {
			return &typeError{Param: "temperature"}
		}
		t, err := jsonx.Float(v)
		if err != nil { // out of float64's range
			return &typeError{Param: "temperature"}
		}
		r.temperature, r.hasTemperature = t, true
		return nil
	case fMessages:
		r.messages, r.hasMessages = 0, false
		r.user = newTextHash()
		if r.cache.on {
			r.cache.resetSection(secMessages)
		}
		if r.proto == protoOpenAI {
			r.system = newTextHash()
		}
		if v[0] == 'n' {
			return nil
		}
		if v[0] != '[' {
			return &typeError{Param: "messages"}
		}
		r.hasMessages = true
		return elements(v, r.message)
	case fStreamOptions:
		r.includeUsage = false
		if v[0] == 'n' {
			return nil
		}
		if v[0] != '{' {
			return &typeError{Param: "stream_options"}
		}
		var pending error
		err := r.members(v, func(key, val []byte) error {
			if string(key) != "include_usage" {
				return nil
			}
			b, err := boolean(val, "stream_options.include_usage")
			r.includeUsage, pending = b, err
			return nil
		})
		if err != nil {
			return err
		}
		return pending
	case fSystem:
		r.system = newTextHash()
		if r.cache.on {
			r.cache.resetSection(secSystem)
		}
		switch v[0] {
		case 'n':
			return nil
		case '"':
			var err error
			r.msg, err = jsonx.AppendUnquoted(r.msg[:0], v)
			if err == nil {
				r.system.add(r.msg)
				if r.cache.on {
					r.cache.beginBlock()
					r.cache.endBlock(secSystem, 0, -1, r.msg, true)
				}
			}
			return err
		case '[':
			r.msg, r.parts = r.msg[:0], 0
			err := r.blocks(v, true)
			if err == nil {
				r.system.add(r.msg)
			}
			return err
		}
		return &typeError{Param: "system"}
	}
	return nil
}

// message reads one element of "messages" and folds its text in.
func (r *wireRequest) message(v []byte) error {
	if v[0] != '{' {
		return &typeError{Param: "messages[" + strconv.Itoa(r.messages) + "]"}
	}
	r.msg, r.parts, r.role = r.msg[:0], 0, r.role[:0]
	var roleErr, contentErr error
	var st hasherState
	var nb int
	if r.cache.on {
		r.cache.messageRole(v)
		sec := &r.cache.sec[secMessages]
		st, nb = sec.ph.save(), len(sec.bounds)
	}
	err := r.members(v, func(key, val []byte) error {
		var err error
		switch string(key) {
		case "role":
			r.role, roleErr = r.role[:0], nil
			if val[0] == 'n' {
				return nil
			}
			if val[0] != '"' {
				roleErr = &typeError{Param: "messages[" + strconv.Itoa(r.messages) + "].role"}
				return nil
			}
			r.role, err = jsonx.AppendUnquoted(r.role, val)
			return err
		case "content":
			r.msg, r.parts, contentErr = r.msg[:0], 0, nil
			if r.cache.on { // a duplicate content replaces the first
				sec := &r.cache.sec[secMessages]
				sec.ph.restore(st)
				sec.bounds = sec.bounds[:nb]
			}
			switch val[0] {
			case 'n':
				return nil
			case '"':
				r.msg, err = jsonx.AppendUnquoted(r.msg, val)
				if err == nil && r.cache.on {
					r.cache.beginBlock()
					r.cache.endBlock(secMessages, int32(r.messages), -1, r.msg, true)
				}
				return err
			case '[':
				err = r.blocks(val, false)
			default:
				err = &typeError{Param: "messages[" + strconv.Itoa(r.messages) + "].content"}
			}
			if te, ok := err.(*typeError); ok {
				contentErr = te
				return nil
			}
			return err
		}
		return nil
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
func (r *wireRequest) blocks(v []byte, system bool) error {
	r.cache.blockIdx = 0
	return elements(v, func(el []byte) error {
		err := r.block(el, system)
		r.cache.blockIdx++
		return err
	})
}

// block reads one content block and appends its text to r.msg when it is a
// text block. system tells where the block is, for type errors.
func (r *wireRequest) block(v []byte, system bool) error {
	where := func(suffix string) error {
		if system {
			return &typeError{Param: "system" + suffix}
		}
		return &typeError{Param: "messages[" + strconv.Itoa(r.messages) + "].content" + suffix}
	}
	if v[0] != '{' {
		return where("")
	}
	mark := len(r.msg)
	textSeen := false
	r.btype = r.btype[:0]
	var typeErr, textErr error
	sec, i, j := secMessages, int32(r.messages), r.cache.blockIdx
	if system {
		sec, i, j = secSystem, r.cache.blockIdx, -1
	}
	if r.cache.on {
		r.cache.beginBlock()
	}
	err := r.members(v, func(key, val []byte) error {
		var err error
		if r.cache.on {
			r.cache.blockMember(key, val)
		}
		switch string(key) {
		case "type":
			r.btype, typeErr = r.btype[:0], nil
			if val[0] == 'n' {
				return nil
			}
			if val[0] != '"' {
				typeErr = where(".type")
				return nil
			}
			r.btype, err = jsonx.AppendUnquoted(r.btype, val)
			return err
		case "text":
			r.msg, textErr = r.msg[:mark], nil
			if r.parts > 0 {
				r.msg = append(r.msg, '\n')
			}
			textSeen = true
			if val[0] == 'n' {
				return nil
			}
			if val[0] != '"' {
				textErr = where(".text")
				return nil
			}
			r.msg, err = jsonx.AppendUnquoted(r.msg, val)
			return err
		}
		return nil
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
		if r.cache.on {
			if r.cache.bmark != ttlNone && (string(r.btype) == "thinking" || string(r.btype) == "redacted_thinking") {
				r.cache.bbad = "." + string(r.btype) + ".cache_control: Extra inputs are not permitted"
			}
			r.cache.endBlock(sec, i, j, nil, false)
		}
		return nil
	}
	if !textSeen && r.parts > 0 {
		r.msg = append(r.msg, '\n')
	}
	r.parts++
	if r.cache.on {
		r.cache.endBlock(sec, i, j, r.msg[mark:], true)
	}
	return nil
}

// boolean reads a validated value as a bool; null is false.
func boolean(v []byte, param string) (bool, error) {
	switch v[0] {
	case 't':
		return true, nil
	case 'f', 'n':
		return false, nil
	}
	return false, &typeError{Param: param}
}

// integer reads a validated value as an int64, or null; ok is false for
// null. A number that is not an integer in int64's range is a type
// error, as with encoding/json.
func integer(v []byte, param string) (n int64, ok bool, err error) {
	if v[0] == 'n' {
		return 0, false, nil
	}
	if !isNumber(v) {
		return 0, false, &typeError{Param: param}
	}
	n, err = jsonx.Int(v)
	if err != nil {
		return 0, false, &typeError{Param: param}
	}
	return n, true, nil
}

// isNumber reports whether the validated value v is a number.
func isNumber(v []byte) bool { return v[0] == '-' || v[0] >= '0' && v[0] <= '9' }
