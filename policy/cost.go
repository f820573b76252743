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

// Cost returns round_half_up(inputTokens×in + outputTokens×out) in µUSD.
//
// It is exact for every input: each product is formed in 128 bits
// (tokens < 2^63 and price < 2^63, so each is < 2^126 and their sum plus
// the rounding half < 2^128). Only the final quotient can exceed int64,
// which needs more than about 9.2e12 USD in one request (e.g. 9.2e12
// tokens at 1 USD/M); it then saturates at math.MaxInt64. Negative token
// counts or prices count as zero: they cannot come from ParsePrice and
// mean a caller bug, which should not produce a refund.
func Cost(inputTokens, outputTokens int64, in, out Price) int64 {
	hi1, lo1 := bits.Mul64(nonNegative(inputTokens), nonNegative(int64(in)))
	hi2, lo2 := bits.Mul64(nonNegative(outputTokens), nonNegative(int64(out)))
	lo, carry := bits.Add64(lo1, lo2, 0)
	hi := hi1 + hi2 + carry
	lo, carry = bits.Add64(lo, PriceScale/2, 0)
	hi += carry
	if hi >= PriceScale { // the quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, PriceScale)
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

func nonNegative(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
