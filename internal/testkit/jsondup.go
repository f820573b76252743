package testkit

import (
	"bytes"
	"encoding/json"
)

// HasDuplicateKeys reports whether any object in data repeats a key;
// such input is skipped by the fuzz oracle, whose map decoding cannot see
// that the parser met the first occurrence too.
func HasDuplicateKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		keys  map[string]bool
		isObj bool
		key   bool // the next string token is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if len(stack) > 0 && stack[len(stack)-1].isObj {
			top := &stack[len(stack)-1]
			if s, ok := tok.(string); ok && top.key {
				if top.keys[s] {
					return true
				}
				top.keys[s] = true
				top.key = false
				continue
			}
			if d, ok := tok.(json.Delim); !ok || d == '{' || d == '[' {
				top.key = true // a value: the next token is a key
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, isObj: true, key: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
