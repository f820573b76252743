package mock

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
)

// This file is the decoder's prompt-cache pass: with cacheScan.on, the
// decoder also hashes the prompt in the providers' prefix order and
// reads Anthropic's cache_control markers. It runs only when a request
// can use the cache (an Anthropic body mentioning cache_control, an
// OpenAI prompt long enough), so other requests pay nothing.

// Prompt sections, in Anthropic's prefix order (tools → system →
// messages). OpenAI prompts use secMessages alone, in request order.
const (
	secTools = iota
	secSystem
	secMessages
	numSections
)

// Marker TTLs as read from cache_control.
const (
	ttlNone uint8 = iota
	ttl5m
	ttl1h
)

// boundary is the end of one block of a section: the section's hash and
// tokens up to and including it, and its cache_control marker if any.
// i and j place it: tools.i, system.i, messages.i.content.j (j < 0 for a
// string content).
type boundary struct {
	h    uint64
	n    int64
	ttl  uint8
	i, j int32
	bad  string // the marker's problem, as Anthropic words it after the path
}

type section struct {
	ph     prefixHasher
	bounds []boundary
}

// cacheScan is the prompt-cache state of one decode, reused across
// requests through the decoder pool.
type cacheScan struct {
	on    bool
	proto protocol
	step  int64 // OpenAI checkpoints (0 for Anthropic)
	sec   [numSections]section

	toolsHash uint64 // OpenAI: the raw tools value
	cacheKey  []byte // OpenAI prompt_cache_key
	hasKey    bool
	blockIdx  int32
	role      []byte
	bh        uint64 // hash of the current block's members but text
	btext     uint64 // hash of its "text" member's raw value
	bmark     uint8  // the current block's marker
	bbad      string // its problem, if any
}

func (c *cacheScan) reset(on bool, p protocol, step int64) {
	c.on, c.proto, c.step = on, p, step
	for i := range c.sec {
		c.sec[i].ph.reset(0)
		c.sec[i].bounds = c.sec[i].bounds[:0]
	}
	c.sec[secMessages].ph.reset(step)
	c.toolsHash, c.cacheKey, c.hasKey = fnvOffset, c.cacheKey[:0], false
	c.role = c.role[:0]
}

// resetSection starts section s again (a duplicate key replaces it).
func (c *cacheScan) resetSection(s int) {
	step := int64(0)
	if s == secMessages {
		step = c.step
	}
	c.sec[s].ph.reset(step)
	c.sec[s].bounds = c.sec[s].bounds[:0]
}

func blockPath(s int, i, j int32) string {
	switch s {
	case secTools:
		return "tools." + strconv.Itoa(int(i))
	case secSystem:
		return "system." + strconv.Itoa(int(i))
	}
	p := "messages." + strconv.Itoa(int(i))
	if j >= 0 {
		p += ".content." + strconv.Itoa(int(j))
	}
	return p
}

// marker reads a cache_control value: null is no marker; otherwise
// {"type":"ephemeral"} with an optional "ttl" of "5m" (the default) or
// "1h". Other members are ignored. bad is the problem of an invalid
// value, worded to follow the block's path.
func marker(v []byte) (ttl uint8, bad string) {
	if v[0] == 'n' {
		return ttlNone, ""
	}
	if v[0] != '{' {
		return ttlNone, ".cache_control: Input should be a valid dictionary"
	}
	typ, ttlRaw := []byte(nil), []byte(nil)
	it, err := jsonx.NewObject(v)
	if err != nil {
		return ttlNone, ".cache_control: Input should be a valid dictionary"
	}
	for k, val, more := it.Member(); more; k, val, more = it.Member() {
		switch {
		case jsonx.KeyIs(k, "type"):
			typ = val
		case jsonx.KeyIs(k, "ttl"):
			ttlRaw = val
		}
	}
	switch {
	case typ == nil:
		return ttlNone, ".cache_control.type: Field required"
	case !jsonStringIs(typ, "ephemeral"):
		return ttlNone, ".cache_control.type: Input should be 'ephemeral'"
	}
	switch {
	case ttlRaw == nil || ttlRaw[0] == 'n' || jsonStringIs(ttlRaw, "5m"):
		return ttl5m, ""
	case jsonStringIs(ttlRaw, "1h"):
		return ttl1h, ""
	}
	return ttlNone, ".cache_control.ephemeral.ttl: Input should be '5m' or '1h'"
}

// jsonStringIs reports whether the validated value v is the JSON string
// name (escapes decoded).
func jsonStringIs(v []byte, name string) bool {
	if len(v) == 0 || v[0] != '"' {
		return false
	}
	if string(v[1:len(v)-1]) == name {
		return true
	}
	var buf [16]byte
	s, err := jsonx.AppendUnquoted(buf[:0], v)
	return err == nil && string(s) == name
}

// beginBlock starts hashing one content block (or tool definition).
func (c *cacheScan) beginBlock() {
	c.bh, c.btext, c.bmark, c.bbad = fnvOffset, fnvOffset, ttlNone, ""
}

// blockMember folds one member of the current block in, or reads it as
// the block's marker (the last cache_control wins, as for any key).
func (c *cacheScan) blockMember(key, val []byte) {
	if string(key) == "cache_control" {
		if c.proto == protoOpenAI {
			return // not content, and not OpenAI's
		}
		c.bmark, c.bbad = marker(val)
		return
	}
	if string(key) == "text" {
		// Kept apart: a text block's text is fed token by token, so a
		// checkpoint inside it must not depend on what follows.
		c.btext = fnvBytes(fnvOffset, val)
		return
	}
	c.bh = fnvBytes(fnvByte(fnvBytes(c.bh, key), ':'), val)
}

// endBlock feeds the finished block to section s (text for a text
// block, else the members' hash) and records its boundary.
func (c *cacheScan) endBlock(s int, i, j int32, text []byte, isText bool) {
	sec := &c.sec[s]
	if isText {
		sec.ph.feedOpaque(c.bh)
		sec.ph.feedText(text)
	} else {
		sec.ph.feedOpaque(fnvUint(c.bh, c.btext))
	}
	if c.proto == protoAnthropic {
		sec.bounds = append(sec.bounds, boundary{h: sec.ph.h, n: sec.ph.n, ttl: c.bmark, i: i, j: j, bad: c.bbad})
	}
}

// tools reads the "tools" value: OpenAI hashes it whole (a change of
// tools changes every checkpoint); Anthropic treats each tool as a block
// that may carry a marker.
func (c *cacheScan) tools(r *wireRequest, v []byte) {
	if c.proto == protoOpenAI {
		c.toolsHash = fnvBytes(fnvOffset, v)
		return
	}
	c.resetSection(secTools)
	if v[0] != '[' {
		c.sec[secTools].ph.feedOpaque(fnvBytes(fnvOffset, v))
		return
	}
	it, err := jsonx.NewArray(v)
	if err != nil {
		return
	}
	var i int32
	for el, ok := it.Element(); ok; el, ok = it.Element() {
		c.beginBlock()
		if el[0] == '{' {
			_ = r.members(el, func(key, val []byte) error {
				c.blockMember(key, val)
				return nil
			})
		} else {
			c.bh = fnvBytes(c.bh, el)
		}
		c.endBlock(secTools, i, -1, nil, false)
		i++
	}
}

// promptCacheKey reads OpenAI's prompt_cache_key (a non-empty string;
// anything else is no key).
func (c *cacheScan) promptCacheKey(v []byte) {
	c.cacheKey, c.hasKey = c.cacheKey[:0], false
	if v[0] != '"' {
		return
	}
	var err error
	c.cacheKey, err = jsonx.AppendUnquoted(c.cacheKey, v)
	c.hasKey = err == nil && len(c.cacheKey) > 0
}

// messageRole finds a message's role before its content is walked, so
// the role is hashed ahead of the content whatever the member order
// (the last "role" wins, as in the decoder).
func (c *cacheScan) messageRole(v []byte) {
	c.role = c.role[:0]
	it, err := jsonx.NewObject(v)
	if err != nil {
		return
	}
	for k, val, ok := it.Member(); ok; k, val, ok = it.Member() {
		if jsonx.KeyIs(k, "role") {
			c.role = c.role[:0]
			if val[0] == '"' {
				c.role, _ = jsonx.AppendUnquoted(c.role, val)
			}
		}
	}
	c.sec[secMessages].ph.feedOpaque(fnvBytes(fnvOffset, c.role))
}

// point is one breakpoint or lookback position of a whole prompt, in
// prefix order.
type point struct {
	key    uint64
	tokens int64
	ttl    uint8
	sec    int8
	i, j   int32
}

// anthropicPoints lays the sections' boundaries end to end (tools →
// system → messages) with their cache keys and prompt-wide token
// counts, and checks the markers: each valid, at most four, and no 1h
// after a 5m. It returns Anthropic's message for the first problem (in
// that order of checks, blocks in prefix order), or "".
func (c *cacheScan) anthropicPoints(model []byte, dst []point) ([]point, string) {
	marks := 0
	for s := range c.sec {
		for _, b := range c.sec[s].bounds {
			if b.bad != "" {
				return dst, blockPath(s, b.i, b.j) + b.bad
			}
			if b.ttl != ttlNone {
				marks++
			}
		}
	}
	if marks > maxBreakpoints {
		return dst, "A maximum of 4 blocks with cache_control may be provided. Found " + strconv.Itoa(marks) + "."
	}
	base := fnvBytes(fnvByte(fnvOffset, byte(protoAnthropic)), model)
	var tokens int64
	seen5m := false
	for s := 0; s < numSections; s++ {
		sec := &c.sec[s]
		for _, b := range sec.bounds {
			if b.ttl == ttl1h && seen5m {
				return dst, blockPath(s, b.i, b.j) + ".cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."
			}
			seen5m = seen5m || b.ttl == ttl5m
			key := mix64(fnvUint(fnvUint(base, b.h), uint64(b.n)))
			dst = append(dst, point{key: key, tokens: tokens + b.n, ttl: b.ttl, sec: int8(s), i: b.i, j: b.j})
		}
		// The next section's keys cover this whole one.
		base = fnvUint(fnvUint(fnvByte(base, byte(s)), sec.ph.h), uint64(sec.ph.n))
		tokens += sec.ph.n
	}
	return dst, ""
}

// maxBreakpoints is Anthropic's limit on cache_control blocks.
const maxBreakpoints = 4

// openAIKey is the cache key of checkpoint t of an OpenAI prompt: per
// model, prompt_cache_key and tools.
func (c *cacheScan) openAIKey(model []byte, t tokenSnap) uint64 {
	h := fnvBytes(fnvByte(fnvOffset, byte(protoOpenAI)), model)
	h = fnvByte(h, 0)
	if c.hasKey {
		h = fnvBytes(fnvByte(h, 1), c.cacheKey)
	}
	h = fnvUint(fnvUint(fnvUint(h, c.toolsHash), t.h), uint64(t.n))
	return mix64(h)
}
