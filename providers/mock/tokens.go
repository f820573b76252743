// Package mock is a deterministic stand-in for an LLM: a tokenizer, a text
// generator, an in-process providers.Provider, and a wire server that speaks
// the OpenAI chat completions and Anthropic messages protocols with fault
// knobs. The gateway's tests and the load bench run against it.
//
// Everything the mock answers is a pure function of (model, system text,
// user text, output length), so a test can compare a streamed answer with a
// non-streamed one, or the in-process provider with the wire server, byte
// for byte.
package mock

import (
	"unicode"
	"unicode/utf8"
)

// CountTokens counts tokens the way the mock's "tokenizer" does. The rule
// is simple but shaped like a real BPE tokenizer so usage numbers look
// plausible:
//
//   - a run of ASCII letters and digits is one token when it is at most six
//     bytes long, else ceil(len/4) tokens;
//   - every other ASCII character that is not whitespace (punctuation,
//     symbols) is one token;
//   - whitespace (ASCII or Unicode) is free;
//   - every other rune, and every byte of invalid UTF-8, is one token.
//
// The count is additive over whitespace: CountTokens(a+"\n"+b) ==
// CountTokens(a)+CountTokens(b), which is why input usage is the plain sum
// over the system prompt and the message texts.
func CountTokens(s string) int64 { return countTokens(s) }

func countTokens[T ~string | ~[]byte](s T) int64 {
	var n int64
	run := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				run++
				continue
			}
			n += runTokens(run)
			run = 0
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' {
				n++
			}
			continue
		}
		n += runTokens(run)
		run = 0
		end := min(i+utf8.UTFMax, len(s))
		r, size := utf8.DecodeRuneInString(string(s[i:end]))
		i += size
		if r != utf8.RuneError && unicode.IsSpace(r) {
			continue
		}
		n++
	}
	return n + runTokens(run)
}

// runTokens is the token count of a run of n letters and digits.
func runTokens(n int) int64 {
	if n <= 6 {
		return int64(min(n, 1))
	}
	return int64((n + 3) / 4)
}

// vocabWords are the words answers are made of: short English words, each a
// single token by CountTokens.
var vocabWords = [...]string{
	"the", "of", "and", "to", "in", "is", "that", "it",
	"was", "for", "on", "are", "as", "with", "his", "they",
	"at", "be", "this", "have", "from", "or", "one", "had",
	"by", "word", "but", "not", "what", "all", "were", "we",
	"when", "your", "can", "said", "there", "use", "an", "each",
	"which", "she", "do", "how", "their", "if", "will", "up",
	"other", "about", "out", "many", "then", "them", "these", "so",
	"some", "her", "would", "make", "like", "him", "into", "time",
}

// vocab holds every delta the generator can produce as bytes, so streams
// hand out slices of it without allocating. It is built once from
// vocabWords and never written afterwards.
var vocab = buildVocab()

// vocabTable is the byte form of the vocabulary: words[i] is " word" (the
// first delta of an answer drops the leading space) and period is ".".
type vocabTable struct {
	words  [len(vocabWords)][]byte
	period []byte
}

func buildVocab() *vocabTable {
	v := &vocabTable{period: []byte(".")}
	for i, w := range vocabWords {
		v.words[i] = []byte(" " + w)
	}
	return v
}

// plan is one deterministic answer: n deltas derived from seed. When stop is
// false the answer was cut by the caller's cap.
type plan struct {
	seed uint64
	n    int
	stop bool
}

// newPlan decides the answer's length: the configured output length, capped
// by maxTokens when maxTokens > 0. The answer is "cut" only when the cap is
// below what the mock wanted to say.
func newPlan(seed uint64, outputTokens, maxTokens int) plan {
	p := plan{seed: seed, n: outputTokens, stop: true}
	if maxTokens > 0 && maxTokens < outputTokens {
		p.n, p.stop = maxTokens, false
	}
	return p
}

// token returns delta i (0 ≤ i < n) of the answer: a word, with a leading
// space unless it is the first; a complete answer of two or more tokens
// ends with ".". Each delta is exactly one token by CountTokens, and deltas
// never merge into fewer tokens when concatenated. The slice aliases the
// shared vocabulary and must not be written.
func (p *plan) token(i int) []byte {
	if p.stop && p.n >= 2 && i == p.n-1 {
		return vocab.period
	}
	w := vocab.words[mix64(p.seed+uint64(i+1)*0x9e3779b97f4a7c15)%uint64(len(vocabWords))]
	if i == 0 {
		return w[1:]
	}
	return w
}

// appendContent appends the whole answer to dst.
func (p *plan) appendContent(dst []byte) []byte {
	for i := 0; i < p.n; i++ {
		dst = append(dst, p.token(i)...)
	}
	return dst
}

// mix64 is the splitmix64 finalizer: a cheap bijective scrambler.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// textHash hashes a sequence of text parts as if they were joined by "\n"
// (FNV-1a) and counts their tokens, so a request's texts can be folded in
// as they are decoded without building the joined string.
type textHash struct {
	h      uint64
	parts  int
	tokens int64
}

func newTextHash() textHash { return textHash{h: fnvOffset} }

func (t *textHash) add(part []byte) {
	h := t.h
	if t.parts > 0 {
		h = (h ^ '\n') * fnvPrime
	}
	for _, c := range part {
		h = (h ^ uint64(c)) * fnvPrime
	}
	t.h = h
	t.parts++
	t.tokens += countTokens(part)
}

func (t *textHash) addString(part string) {
	h := t.h
	if t.parts > 0 {
		h = (h ^ '\n') * fnvPrime
	}
	for i := 0; i < len(part); i++ {
		h = (h ^ uint64(part[i])) * fnvPrime
	}
	t.h = h
	t.parts++
	t.tokens += countTokens(part)
}

// seedOf combines the hashes of the model, the system text and the user text
// into the generator's seed.
func seedOf(model []byte, system, user *textHash) uint64 {
	m := newTextHash()
	m.add(model)
	return combineSeed(m.h, system.h, user.h)
}

func combineSeed(model, system, user uint64) uint64 {
	return mix64(model ^ mix64(system^0x5bd1e995) ^ mix64(mix64(user)+0x27d4eb2f165667c5))
}

// seedOfStrings is seedOf for a canonical providers.Request: one system part
// (none when empty) and one user part.
func seedOfStrings(model, system, user string) (seed uint64, inputTokens int64) {
	sys, usr := newTextHash(), newTextHash()
	if system != "" {
		sys.addString(system)
	}
	usr.addString(user)
	m := newTextHash()
	m.addString(model)
	return combineSeed(m.h, sys.h, usr.h), sys.tokens + usr.tokens
}
