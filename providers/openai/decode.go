package openai

import (
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// completion is what a chat completion reply carries for the gateway,
// read in place from the reply body with the allocation-free JSON walk.
// It reproduces what encoding/json would leave in
//
//	struct {
//		Choices []struct{ Message struct{ Content *string } }
//		Usage   *struct {
//			PromptTokens, CompletionTokens int64
//			PromptTokensDetails     *struct{ CachedTokens int64 }
//			CompletionTokensDetails *struct{ ReasoningTokens int64 }
//		}
//	}
//
// including its quirks, which the fuzz test holds it to: keys match
// case-insensitively, a later duplicate key decodes into what the earlier
// one left (so a second "choices" array merges into the first's
// elements), null clears a slice or pointer and leaves anything else as
// it was, and a value of the wrong type anywhere in those fields is an
// error.
type completion struct {
	choices    int    // len(Choices)
	content    []byte // raw string literal of choices[0].message.content; nil when nil
	usage      bool   // Usage != nil
	prompt     int64
	completion int64
	// details: Usage.PromptTokensDetails != nil, then
	// Usage.CompletionTokensDetails != nil; their one count each.
	details   [2]bool
	cached    int64
	reasoning int64
}

// parseCompletion reads body into c; an error means encoding/json would
// have failed too.
func parseCompletion(body []byte, c *completion) error {
	*c = completion{}
	if jsonx.IsNull(body) {
		return nil
	}
	it, err := jsonx.NewObject(body)
	if err != nil {
		return err
	}
	for key, val, ok := it.Member(); ok; key, val, ok = it.Member() {
		switch {
		case jsonx.KeyFold(key, "choices"):
			err = c.parseChoices(val)
		case jsonx.KeyFold(key, "usage"):
			err = c.parseUsage(val)
		}
		if err != nil {
			return err
		}
	}
	return it.Err() // the walk validated every value it passed
}

func (c *completion) parseChoices(val []byte) error {
	if jsonx.IsNull(val) {
		c.choices, c.content = 0, nil
		return nil
	}
	arr, err := jsonx.NewArray(val)
	if err != nil {
		return err
	}
	n := 0
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		if n == 0 && c.choices == 0 {
			c.content = nil // a fresh element: the slice was empty
		}
		var dst *[]byte
		if n == 0 {
			dst = &c.content // later elements are only type-checked
		}
		if err := parseChoice(el, dst); err != nil {
			return err
		}
		n++
	}
	if err := arr.Err(); err != nil {
		return err
	}
	c.choices = n
	if n == 0 {
		c.content = nil
	}
	return nil
}

// parseChoice reads one choice's message.content into *content (a raw
// literal, nil for null) when content is not nil, and checks types.
func parseChoice(val []byte, content *[]byte) error {
	obj, err := jsonx.NewObject(val) // null: no members, nothing read
	if err != nil {
		return err
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if !jsonx.KeyFold(key, "message") || jsonx.IsNull(v) {
			continue
		}
		msg, err := jsonx.NewObject(v)
		if err != nil {
			return err
		}
		for k, mv, ok := msg.Member(); ok; k, mv, ok = msg.Member() {
			if !jsonx.KeyFold(k, "content") {
				continue
			}
			var raw []byte
			if !jsonx.IsNull(mv) {
				if mv[0] != '"' {
					return jsonx.ErrSyntax
				}
				raw = mv
			}
			if content != nil {
				*content = raw
			}
		}
		if err := msg.Err(); err != nil {
			return err
		}
	}
	return obj.Err()
}

func (c *completion) parseUsage(val []byte) error {
	if jsonx.IsNull(val) {
		c.usage, c.prompt, c.completion = false, 0, 0
		c.details, c.cached, c.reasoning = [2]bool{}, 0, 0
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	if !c.usage {
		c.usage, c.prompt, c.completion = true, 0, 0
		c.details, c.cached, c.reasoning = [2]bool{}, 0, 0
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		var err error
		switch {
		case jsonx.KeyFold(key, "prompt_tokens"):
			err = foldInt(v, &c.prompt)
		case jsonx.KeyFold(key, "completion_tokens"):
			err = foldInt(v, &c.completion)
		case jsonx.KeyFold(key, "prompt_tokens_details"):
			err = parseDetails(v, "cached_tokens", &c.details[0], &c.cached)
		case jsonx.KeyFold(key, "completion_tokens_details"):
			err = parseDetails(v, "reasoning_tokens", &c.details[1], &c.reasoning)
		}
		if err != nil {
			return err
		}
	}
	return obj.Err()
}

// foldInt decodes an int into dst; null leaves it as it was.
func foldInt(v []byte, dst *int64) error {
	n, null, err := jsonx.IntOrNull(v)
	if err == nil && !null {
		*dst = n
	}
	return err
}

// parseDetails decodes a *struct{ N int64 } member (N spelled name) the
// way encoding/json does: null clears it, an object merges into it.
func parseDetails(val []byte, name string, present *bool, n *int64) error {
	if jsonx.IsNull(val) {
		*present, *n = false, 0
		return nil
	}
	obj, err := jsonx.NewObject(val)
	if err != nil {
		return err
	}
	if !*present {
		*present, *n = true, 0
	}
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if jsonx.KeyFold(key, name) {
			if err := foldInt(v, n); err != nil {
				return err
			}
		}
	}
	return obj.Err()
}

// usageOf returns the Usage of OpenAI's counts: prompt_tokens already
// include the cached ones (bounded by it here, so a confused upstream
// cannot make the uncached part negative).
func usageOf(prompt, completion, cached, reasoning int64) providers.Usage {
	return providers.Usage{
		InputTokens:     prompt,
		OutputTokens:    completion,
		CacheReadTokens: min(max(cached, 0), max(prompt, 0)),
		ReasoningTokens: min(max(reasoning, 0), max(completion, 0)),
	}
}

func (p *Provider) decodeCompletion(body []byte, r *providers.Request, res *providers.Result) error {
	var c completion
	if err := parseCompletion(body, &c); err != nil {
		// Never quote reply bytes in the error.
		return providers.Errorf(p.name, providers.KindProtocol, "reply is not a chat completion")
	}
	if c.choices == 0 {
		return providers.Errorf(p.name, providers.KindProtocol, "reply has no choices")
	}
	if c.content != nil {
		var buf [1024]byte
		text, err := jsonx.Unquote(buf[:0], c.content)
		if err != nil {
			return providers.Errorf(p.name, providers.KindProtocol, "reply is not a chat completion")
		}
		res.Content = string(text)
	}
	if r.Conversation() {
		parseToolCalls(body, res)
	}
	if c.usage {
		res.Usage = usageOf(c.prompt, c.completion, c.cached, c.reasoning)
	} else {
		res.Usage = providers.Usage{
			InputTokens:  providers.EstimateInputTokens(r),
			OutputTokens: providers.EstimateTokens(res.Content),
			Estimated:    true,
		}
	}
	return nil
}
