package policy

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Price bounds and scale.
const (
	// PriceScale is the Price of 1 USD per million tokens (= 1 µUSD per
	// token): prices keep 6 decimal places.
	PriceScale = 1_000_000
	// MaxPrice is the largest accepted price, 1,000,000 USD per million
	// tokens; it bounds Cost's arithmetic and catches unit mistakes.
	MaxPrice Price = 1_000_000 * PriceScale
)

// ErrInvalidPrice is wrapped by every ParsePrice failure.
var ErrInvalidPrice = errors.New("invalid price")

// Price is a price in USD per million tokens, which is the same number as
// micro-USD per token. It is held exactly, as an integer count of 1e-6
// µUSD per token (so 0.15 USD/M tokens is Price(150_000)), and never passes
// through float64. The zero value is free.
type Price int64

// ParsePrice parses a decimal such as "0.15", "2" or "10.000001": digits,
// optionally a dot and 1 to 6 more digits. Signs, exponents, spaces, more
// than 6 decimals and values over 1,000,000 are rejected.
func ParsePrice(s string) (Price, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") {
		return 0, priceError(s, "must be a decimal number like 0.15")
	}
	if len(frac) > 6 {
		return 0, priceError(s, "at most 6 decimal places")
	}
	var whole int64
	for i := 0; i < len(intPart); i++ {
		c := intPart[i]
		if c < '0' || c > '9' {
			return 0, priceError(s, "must be a decimal number like 0.15")
		}
		whole = whole*10 + int64(c-'0')
		if whole > int64(MaxPrice/PriceScale) {
			// Stop before whole can overflow; the rest must be digits
			// for the message to be about size, not syntax.
			if !allDigits(intPart[i+1:]) || !allDigits(frac) {
				return 0, priceError(s, "must be a decimal number like 0.15")
			}
			return 0, priceError(s, "must be at most 1000000")
		}
	}
	var fraction int64
	for i := 0; i < 6; i++ {
		fraction *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, priceError(s, "must be a decimal number like 0.15")
			}
			fraction += int64(c - '0')
		}
	}
	p := Price(whole*PriceScale + fraction)
	if p > MaxPrice {
		return 0, priceError(s, "must be at most 1000000")
	}
	return p, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func priceError(s, why string) error {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidPrice, s, why)
}

// String formats p as the shortest decimal ParsePrice reads back to p:
// "0.15", "2", "10.000001".
func (p Price) String() string {
	v := int64(p)
	var buf [32]byte
	b := buf[:0]
	if v < 0 {
		b = append(b, '-')
	}
	u := uint64(v)
	if v < 0 {
		u = -u
	}
	b = strconv.AppendUint(b, u/PriceScale, 10)
	frac := u % PriceScale
	if frac == 0 {
		return string(b)
	}
	digits := 6
	for frac%10 == 0 {
		frac /= 10
		digits--
	}
	b = append(b, '.')
	var fb [6]byte
	for i := digits - 1; i >= 0; i-- {
		fb[i] = byte('0' + frac%10)
		frac /= 10
	}
	b = append(b, fb[:digits]...)
	return string(b)
}

// UnmarshalYAML reads a price from the scalar's text, so `0.15` is parsed
// as a decimal and never rounded through float64. Quoted strings are
// rejected. yaml.v3 does not call it for a null (`input:` or `~`), which,
// like a missing key, leaves the price zero: a section that needs a price
// must check for it.
func (p *Price) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return fmt.Errorf("line %d: %w: must be an unquoted decimal number like 0.15", n.Line, ErrInvalidPrice)
	}
	v, err := ParsePrice(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = v
	return nil
}

// Prices are one model's prices for each kind of token, USD per million.
type Prices struct {
	// Input is the price of uncached input tokens, Output of output
	// tokens (reasoning included).
	Input, Output Price
	// CacheRead is the price of input tokens read from the upstream's
	// prompt cache; CacheWrite5m and CacheWrite1h of input tokens written
	// to it with the 5-minute and the 1-hour TTL.
	CacheRead, CacheWrite5m, CacheWrite1h Price
}

// Tokens counts one request's tokens by how they are billed. Input is
// the uncached input only: the cache's reads and writes are apart.
type Tokens struct {
	Input, Output, CacheRead, CacheWrite5m, CacheWrite1h int64
}

// Cost returns round_half_up(Σ tokens×price) over every kind of token, in
// µUSD: one rounding of the exact sum, never a sum of rounded parts.
//
// It is exact for every input: prices above MaxPrice (which ParsePrice
// never returns) count as MaxPrice, so each product is below 2^63×2^40 and
// the five of them plus the rounding half fit in 128 bits. Only the final
// quotient can exceed int64, which needs more than about 9.2e12 USD in
// one request; it then saturates at math.MaxInt64. Negative token counts
// or prices count as zero: they cannot come from ParsePrice and mean a
// caller bug, which should not produce a refund.
func (p *Prices) Cost(t Tokens) int64 {
	var hi, lo uint64
	add := func(tokens int64, price Price) {
		h, l := bits.Mul64(nonNegative(tokens), nonNegative(int64(min(price, MaxPrice))))
		var c uint64
		lo, c = bits.Add64(lo, l, 0)
		hi += h + c
	}
	add(t.Input, p.Input)
	add(t.Output, p.Output)
	add(t.CacheRead, p.CacheRead)
	add(t.CacheWrite5m, p.CacheWrite5m)
	add(t.CacheWrite1h, p.CacheWrite1h)
	lo, c := bits.Add64(lo, PriceScale/2, 0)
	hi += c
	if hi >= PriceScale { // the quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, PriceScale)
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// Cost returns round_half_up(inputTokens×in + outputTokens×out) in µUSD:
// Prices.Cost for a request the prompt cache had no part in.
func Cost(inputTokens, outputTokens int64, in, out Price) int64 {
	p := Prices{Input: in, Output: out}
	return p.Cost(Tokens{Input: inputTokens, Output: outputTokens})
}

// Scale returns p×num/den rounded half up to the price's 6th decimal,
// for prices derived from another (a cache read at a tenth of the input
// price). It saturates at MaxPrice.
func (p Price) Scale(num, den int64) Price {
	if p <= 0 || num <= 0 || den <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(p), uint64(num))
	lo, c := bits.Add64(lo, uint64(den)/2, 0)
	hi += c
	if hi >= uint64(den) {
		return MaxPrice
	}
	q, _ := bits.Div64(hi, lo, uint64(den))
	return Price(min(q, uint64(MaxPrice)))
}

func nonNegative(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
