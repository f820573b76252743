package mock

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
)

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
	r.endBlock(sec, i, j, mark, textSeen)
	return nil
}

// endBlock closes a decoded block whose text starts at r.msg[mark:]: a
// text block counts as a part, any other type's text is dropped; the
// prompt cache (when on) sees the block end at section sec, indexes i, j.
func (r *wireRequest) endBlock(sec int, i, j int32, mark int, textSeen bool) {
	if string(r.btype) != "text" {
		r.msg = r.msg[:mark]
		if r.cache.on {
			if r.cache.bmark != ttlNone && (string(r.btype) == "thinking" || string(r.btype) == "redacted_thinking") {
				r.cache.bbad = "." + string(r.btype) + ".cache_control: Extra inputs are not permitted"
			}
			r.cache.endBlock(sec, i, j, nil, false)
		}
		return
	}
	if !textSeen && r.parts > 0 {
		r.msg = append(r.msg, '\n')
	}
	r.parts++
	if r.cache.on {
		r.cache.endBlock(sec, i, j, r.msg[mark:], true)
	}
}
