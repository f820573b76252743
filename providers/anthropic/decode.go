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
//		Usage   *struct {
//			InputTokens, OutputTokens, CacheCreationInputTokens, CacheReadInputTokens int64
//			CacheCreation *struct{ Ephemeral5mInputTokens, Ephemeral1hInputTokens int64 }
//		}
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
	split  bool     // Usage.CacheCreation != nil
	ttl    [2]int64 // Usage.CacheCreation's counts, in cacheCreationKeys order
}

// block holds one content block's raw string literals; nil is "".
type block struct{ typ, text []byte }

// replyUsageKeys are the usage members read, in message.tokens order.
var replyUsageKeys = [4]string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}

// cacheCreationKeys are the members of usage.cache_creation, the cache
// writes split by TTL, in message.ttl order.
var cacheCreationKeys = [2]string{"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}

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
	obj, err := jsonx.NewObject(val) // null: no members, the block as it was
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
		m.usage, m.tokens, m.split, m.ttl = false, [4]int64{}, false, [2]int64{}
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	if !m.usage {
		m.usage, m.tokens, m.split, m.ttl = true, [4]int64{}, false, [2]int64{}
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if jsonx.KeyFold(key, "cache_creation") {
			if err := m.parseCacheCreation(v); err != nil {
				return err
			}
			continue
		}
		if err := foldInts(key, v, replyUsageKeys[:], m.tokens[:]); err != nil {
			return err
		}
	}
	return obj.Err()
}

func (m *message) parseCacheCreation(val []byte) error {
	if jsonx.IsNull(val) {
		m.split, m.ttl = false, [2]int64{}
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	if !m.split {
		m.split, m.ttl = true, [2]int64{}
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if err := foldInts(key, v, cacheCreationKeys[:], m.ttl[:]); err != nil {
			return err
		}
	}
	return obj.Err()
}

// foldInts stores v in dst[i] when key folds to names[i]; null leaves
// the int as it was, another key is ignored.
func foldInts(key, v []byte, names []string, dst []int64) error {
	for i, name := range names {
		if !jsonx.KeyFold(key, name) {
			continue
		}
		n, null, err := jsonx.IntOrNull(v)
		if err == nil && !null {
			dst[i] = n
		}
		return err
	}
	return nil
}

// cacheUsage returns the Usage of Anthropic's counts: its input_tokens
// exclude the cache's reads and writes, which the canonical total
// includes. The writes split by TTL as cache_creation says when it came
// (its 1-hour count bounded by the total written), else all 5-minute.
func cacheUsage(input, output, creation, read int64, split bool, oneHour int64) providers.Usage {
	u := providers.Usage{
		InputTokens:        input + creation + read,
		OutputTokens:       output,
		CacheReadTokens:    read,
		CacheWrite5mTokens: creation,
	}
	if split {
		u.CacheWrite1hTokens = min(max(oneHour, 0), max(creation, 0))
		u.CacheWrite5mTokens = creation - u.CacheWrite1hTokens
	}
	return u
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
	res.Usage = cacheUsage(m.tokens[0], m.tokens[1], m.tokens[2], m.tokens[3], m.split, m.ttl[1])
	return nil
}
