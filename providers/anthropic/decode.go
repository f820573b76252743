package anthropic

import (
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// message is what a Messages API reply carries for the gateway, read in
// place from the reply body with the allocation-free JSON walk. It
// reproduces what encoding/json would leave in
//
//	struct {
//		Content []struct{ Type, Text string }
//		Usage   *struct{ InputTokens, OutputTokens, CacheCreationInputTokens, CacheReadInputTokens int64 }
//	}
//
// including its quirks, which the fuzz test holds it to: keys match
// case-insensitively, a later duplicate key decodes into what the earlier
// one left (a second "content" array merges into the elements the first
// left, even those past a shorter array in between), null clears a slice
// or pointer and leaves anything else as it was, and a value of the wrong
// type anywhere in those fields is an error.
//
// The blocks decoded since "content" was last emptied travel beside it as
// a slice passed in and returned, so that a caller's stack array can back
// them.
type message struct {
	n      int  // len(Content)
	usage  bool // Usage != nil
	tokens [4]int64
}

// block holds one content block's raw string literals; nil is "".
type block struct{ typ, text []byte }

// replyUsageKeys are the usage members read, in message.tokens order.
var replyUsageKeys = [4]string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}

// parseMessage reads body into m, and the content blocks into blocks
// (appending from blocks[:0]), which it returns; an error means
// encoding/json would have failed too.
func parseMessage(body []byte, m *message, blocks []block) ([]block, error) {
	*m = message{}
	blocks = blocks[:0]
	if jsonx.IsNull(body) {
		return blocks, nil
	}
	it, err := jsonx.NewObject(body)
	if err != nil {
		return blocks, err
	}
	for key, val, ok := it.Member(); ok; key, val, ok = it.Member() {
		switch {
		case jsonx.KeyFold(key, "content"):
			blocks, m.n, err = parseContent(val, blocks)
		case jsonx.KeyFold(key, "usage"):
			err = m.parseUsage(val)
		}
		if err != nil {
			return blocks, err
		}
	}
	return blocks, it.Err() // the walk validated every value it passed
}

// parseContent decodes a content array into blocks, merging into the
// elements an earlier array left, and returns them with the array's length.
func parseContent(val []byte, blocks []block) ([]block, int, error) {
	if jsonx.IsNull(val) {
		return blocks[:0], 0, nil
	}
	arr, err := jsonx.NewArray(val)
	if err != nil {
		return blocks, 0, err
	}
	n := 0
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		if n == len(blocks) {
			blocks = append(blocks, block{})
		}
		if err := blocks[n].parse(el); err != nil {
			return blocks, 0, err
		}
		n++
	}
	if err := arr.Err(); err != nil {
		return blocks, 0, err
	}
	if n == 0 {
		blocks = blocks[:0] // encoding/json makes a new empty slice
	}
	return blocks, n, nil
}

func (b *block) parse(val []byte) error {
	if jsonx.IsNull(val) {
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		var dst *[]byte
		switch {
		case jsonx.KeyFold(key, "type"):
			dst = &b.typ
		case jsonx.KeyFold(key, "text"):
			dst = &b.text
		default:
			continue
		}
		if jsonx.IsNull(v) {
			continue // null leaves a string as it was
		}
		if v[0] != '"' {
			return jsonx.ErrSyntax
		}
		*dst = v
	}
	return obj.Err()
}

func (m *message) parseUsage(val []byte) error {
	if jsonx.IsNull(val) {
		m.usage, m.tokens = false, [4]int64{}
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	if !m.usage {
		m.usage, m.tokens = true, [4]int64{}
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		for i, name := range replyUsageKeys {
			if !jsonx.KeyFold(key, name) {
				continue
			}
			if jsonx.IsNull(v) {
				break // null leaves an int as it was
			}
			n, err := jsonx.Int(v)
			if err != nil {
				return err
			}
			m.tokens[i] = n
			break
		}
	}
	return obj.Err()
}

func (p *Provider) decodeMessage(body []byte, res *providers.Result) error {
	var backing [8]block
	var m message
	blocks, err := parseMessage(body, &m, backing[:0])
	if err != nil {
		// Never quote reply bytes in the error.
		return providers.Errorf(p.name, providers.KindProtocol, "reply is not a message")
	}
	if !m.usage {
		return providers.Errorf(p.name, providers.KindProtocol, "reply has no usage")
	}
	var buf [1024]byte
	text := buf[:0]
	for _, b := range blocks[:m.n] {
		if b.text == nil || !jsonx.KeyIs(b.typ, "text") {
			continue
		}
		if text, err = jsonx.AppendUnquoted(text, b.text); err != nil {
			return providers.Errorf(p.name, providers.KindProtocol, "reply is not a message")
		}
	}
	res.Content = string(text)
	res.Usage = providers.Usage{
		InputTokens:  m.tokens[0] + m.tokens[2] + m.tokens[3],
		OutputTokens: m.tokens[1],
	}
	return nil
}
