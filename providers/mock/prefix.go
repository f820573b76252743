package mock

import (
	"unicode"
	"unicode/utf8"
)

// prefixHasher hashes a prompt as the providers' caches see it: a stream
// of content (texts, and opaque parts such as roles, images and tool
// definitions) in prompt order, tokenized exactly like CountTokens, so
// the hash of "everything up to token n" or "everything up to this
// block" can be taken as the stream goes. Texts are tokenized part by
// part, as input usage counts them, so n after feeding is always the sum
// of CountTokens over the text parts fed.
//
// When step > 0 it snapshots (n, hash) each time n reaches step, then
// step+stride, …: OpenAI's cache checkpoints.
type prefixHasher struct {
	h     uint64
	n     int64
	step  int64 // next checkpoint; 0: none
	snaps []tokenSnap
}

// tokenSnap is the hash of a prompt's first n tokens.
type tokenSnap struct {
	n int64
	h uint64
}

// openAIStride is OpenAI's cache granularity past the minimum.
const openAIStride = 128

// hasherState is what save/restore keep, so a duplicate JSON key can
// undo what its first occurrence fed.
type hasherState struct {
	h       uint64
	n, step int64
	snaps   int
}

func (p *prefixHasher) reset(step int64) {
	p.h, p.n, p.step, p.snaps = fnvOffset, 0, step, p.snaps[:0]
}

func (p *prefixHasher) save() hasherState {
	return hasherState{h: p.h, n: p.n, step: p.step, snaps: len(p.snaps)}
}

func (p *prefixHasher) restore(s hasherState) {
	p.h, p.n, p.step, p.snaps = s.h, s.n, s.step, p.snaps[:s.snaps]
}

func fnvByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

func fnvUint(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h = fnvByte(h, byte(v>>(8*i)))
	}
	return h
}

// Tags keep opaque parts and text parts from hashing alike.
const (
	tagText   = 0x1e
	tagOpaque = 0x1f
)

// feedOpaque adds content that has no tokens (a role, an image block, a
// tool definition), here summarized by its hash v.
func (p *prefixHasher) feedOpaque(v uint64) {
	p.h = fnvUint(fnvByte(p.h, tagOpaque), v)
}

// feedText adds one text part, tokenized as countTokens does.
func (p *prefixHasher) feedText(s []byte) {
	h := fnvByte(p.h, tagText)
	runStart := -1
	var hRun uint64
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				if runStart < 0 {
					runStart, hRun = i, h
				}
				h = fnvByte(h, c)
				i++
				continue
			}
			if runStart >= 0 {
				p.endRun(s[runStart:i], hRun)
				runStart = -1
			}
			h = fnvByte(h, c)
			i++
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' {
				p.token(h)
			}
			continue
		}
		if runStart >= 0 {
			p.endRun(s[runStart:i], hRun)
			runStart = -1
		}
		r, size := utf8.DecodeRune(s[i:])
		h = fnvBytes(h, s[i:i+size])
		i += size
		if r != utf8.RuneError && unicode.IsSpace(r) {
			continue
		}
		p.token(h)
	}
	if runStart >= 0 {
		p.endRun(s[runStart:], hRun)
	}
	p.h = h
}

// token counts one token that ends where the hash is h.
func (p *prefixHasher) token(h uint64) {
	p.n++
	if p.n == p.step {
		p.snaps = append(p.snaps, tokenSnap{n: p.n, h: h})
		p.step += openAIStride
	}
}

// endRun counts a run of letters and digits whose hash starts at h0:
// one token up to six bytes, else one token per four bytes (the last
// shorter), each ending where its bytes end.
func (p *prefixHasher) endRun(run []byte, h0 uint64) {
	t := runTokens(len(run))
	if p.step == 0 || p.n+t < p.step {
		p.n += t
		return
	}
	for j := 1; j <= int(t); j++ {
		end := len(run)
		if len(run) > 6 {
			end = min(4*j, len(run))
		}
		p.n++
		if p.n == p.step {
			p.snaps = append(p.snaps, tokenSnap{n: p.n, h: fnvBytes(h0, run[:end])})
			p.step += openAIStride
		}
	}
}
