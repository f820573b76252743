package mock

import (
	"sync"
	"time"
)

// promptCache is the wire server's simulation of the providers' prompt
// caches: prefix keys (cache_scan.go) with expiry times, least recently
// used first out when full. Safe for concurrent use; allocation-free once
// its tables have grown.
type promptCache struct {
	mu   sync.Mutex
	idx  map[uint64]int32
	ents []cacheEntry
	head int32 // most recently used, -1 when empty
	tail int32 // least recently used
	free int32 // free list through next, -1 when none
}

type cacheEntry struct {
	key        uint64
	exp        int64 // unix nanoseconds
	ttl        int64 // nanoseconds; a read extends exp to now + ttl
	prev, next int32
}

func newPromptCache() *promptCache {
	return &promptCache{idx: make(map[uint64]int32), head: -1, tail: -1, free: -1}
}

// cacheUsage is what one request read from and wrote to the cache, in
// tokens; writes split by the TTL that wrote them (OpenAI writes are
// not reported, so they stay zero).
type cacheUsage struct {
	read, write5m, write1h int64
}

func (u cacheUsage) written() int64 { return u.write5m + u.write1h }

func (c *promptCache) unlink(i int32) {
	e := &c.ents[i]
	if e.prev >= 0 {
		c.ents[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next >= 0 {
		c.ents[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
}

func (c *promptCache) pushFront(i int32) {
	e := &c.ents[i]
	e.prev, e.next = -1, c.head
	if c.head >= 0 {
		c.ents[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

func (c *promptCache) remove(i int32) {
	c.unlink(i)
	delete(c.idx, c.ents[i].key)
	c.ents[i].next = c.free
	c.free = i
}

// hit reports whether key is live at now; a hit refreshes its expiry
// and makes it the most recently used. An expired entry is dropped.
// The caller holds mu.
func (c *promptCache) hit(key uint64, now int64) bool {
	i, ok := c.idx[key]
	if !ok {
		return false
	}
	e := &c.ents[i]
	if e.exp <= now {
		c.remove(i)
		return false
	}
	e.exp = max(e.exp, now+e.ttl)
	c.unlink(i)
	c.pushFront(i)
	return true
}

// put stores key until now + ttl (an entry living longer keeps its
// time), evicting the least recently used beyond maxEntries. The caller
// holds mu.
func (c *promptCache) put(key uint64, now int64, ttl time.Duration, maxEntries int) {
	if i, ok := c.idx[key]; ok {
		e := &c.ents[i]
		if now+int64(ttl) > e.exp {
			e.exp, e.ttl = now+int64(ttl), int64(ttl)
		}
		c.unlink(i)
		c.pushFront(i)
		return
	}
	for len(c.idx) >= maxEntries && c.tail >= 0 {
		c.remove(c.tail)
	}
	var i int32
	if c.free >= 0 {
		i = c.free
		c.free = c.ents[i].next
	} else {
		c.ents = append(c.ents, cacheEntry{})
		i = int32(len(c.ents) - 1)
	}
	c.ents[i] = cacheEntry{key: key, exp: now + int64(ttl), ttl: int64(ttl)}
	c.idx[key] = i
	c.pushFront(i)
}

// len is the number of entries held, live or not yet found expired.
func (c *promptCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idx)
}

// flush empties the cache.
func (c *promptCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.idx)
	c.ents = c.ents[:0]
	c.head, c.tail, c.free = -1, -1, -1
}

// lookback is how many blocks before each breakpoint Anthropic checks
// for an earlier cached prefix.
const lookback = 20

func ttlOf(cfg *ServerConfig, t uint8) time.Duration {
	if t == ttl1h {
		return cfg.PromptCacheTTL1h
	}
	return cfg.PromptCacheTTL5m
}

// anthropic applies Anthropic's rules to a request's points (its
// blocks in prefix order, markers on some): the read is the longest live
// prefix ending at a breakpoint or up to 20 blocks before one; when the
// last breakpoint's prefix reaches the minimum and goes beyond the read,
// the tokens in between are written, each segment at the TTL of the
// breakpoint that ends it, and every breakpoint prefix of at least the
// minimum is stored. No breakpoint, no caching.
func (c *promptCache) anthropic(pts []point, cfg *ServerConfig, now time.Time) cacheUsage {
	last := -1
	for k := range pts {
		if pts[k].ttl != ttlNone {
			last = k
		}
	}
	if last < 0 {
		return cacheUsage{}
	}
	minTokens := int64(cfg.AnthropicMinCacheTokens)
	t := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	var u cacheUsage
	best := -1
	for k := 0; k <= last; k++ {
		if pts[k].ttl == ttlNone {
			continue
		}
		for b := k; b >= 0 && b > k-lookback && b > best; b-- {
			if pts[b].tokens >= minTokens && c.hit(pts[b].key, t) {
				best = b
				break
			}
		}
	}
	if best >= 0 {
		u.read = pts[best].tokens
	}
	if end := pts[last].tokens; end >= minTokens && end > u.read {
		from := u.read
		for k := 0; k <= last; k++ {
			p := &pts[k]
			if p.ttl == ttlNone || p.tokens <= from {
				continue
			}
			if p.ttl == ttl1h {
				u.write1h += p.tokens - from
			} else {
				u.write5m += p.tokens - from
			}
			from = p.tokens
		}
	}
	for k := 0; k <= last; k++ {
		if p := &pts[k]; p.ttl != ttlNone && p.tokens >= minTokens {
			c.put(p.key, t, ttlOf(cfg, p.ttl), cfg.PromptCacheMaxEntries)
		}
	}
	return u
}

// openAI applies OpenAI's automatic caching to a prompt's checkpoints
// (its first 1,024 tokens, 1,152, … up to its length): cached is the
// longest live one, and every checkpoint is remembered for the
// inactivity TTL.
func (c *promptCache) openAI(sc *cacheScan, model []byte, cfg *ServerConfig, now time.Time) cacheUsage {
	snaps := sc.sec[secMessages].ph.snaps
	if len(snaps) == 0 {
		return cacheUsage{}
	}
	t := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	var u cacheUsage
	for k := len(snaps) - 1; k >= 0; k-- {
		if c.hit(sc.openAIKey(model, snaps[k]), t) {
			u.read = snaps[k].n
			break
		}
	}
	for k := range snaps {
		c.put(sc.openAIKey(model, snaps[k]), t, cfg.PromptCacheTTLOpenAI, cfg.PromptCacheMaxEntries)
	}
	return u
}
