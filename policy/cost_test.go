package policy

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParsePrice(t *testing.T) {
	tests := []struct {
		in     string
		want   Price
		str    string // canonical String(); empty means same as in
		errSub string // non-empty: must fail with this in the message
	}{
		{in: "0.15", want: 150_000},
		{in: "2", want: 2_000_000},
		{in: "10.000001", want: 10_000_001},
		{in: "0", want: 0},
		{in: "0.000001", want: 1},
		{in: "1000000", want: MaxPrice},
		{in: "1000000.000000", want: MaxPrice, str: "1000000"},
		{in: "2.50", want: 2_500_000, str: "2.5"},
		{in: "007.1", want: 7_100_000, str: "7.1"},
		{in: "999999.999999", want: 999_999_999_999},
		{in: "1000000.000001", errSub: "at most 1000000"},
		{in: "99999999999999999999999", errSub: "at most 1000000"},
		{in: "99999999999999999999999x", errSub: "decimal number"},
		{in: "-1", errSub: "decimal number"},
		{in: "+1", errSub: "decimal number"},
		{in: "0.1234567", errSub: "at most 6 decimal places"},
		{in: "1e3", errSub: "decimal number"},
		{in: "1.5e-3", errSub: "decimal number"},
		{in: "", errSub: "decimal number"},
		{in: ".5", errSub: "decimal number"},
		{in: "5.", errSub: "decimal number"},
		{in: "1.2.3", errSub: "decimal number"},
		{in: " 1", errSub: "decimal number"},
		{in: "1_000", errSub: "decimal number"},
		{in: "0x10", errSub: "decimal number"},
		{in: "NaN", errSub: "decimal number"},
		{in: ".inf", errSub: "decimal number"},
		{in: "١", errSub: "decimal number"}, // a non-ASCII digit
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePrice(tc.in)
			if tc.errSub != "" {
				if err == nil {
					t.Fatalf("ParsePrice(%q) = %d, want error", tc.in, got)
				}
				if !errors.Is(err, ErrInvalidPrice) || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("error %q, want ErrInvalidPrice with %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePrice(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParsePrice(%q) = %d, want %d", tc.in, got, tc.want)
			}
			wantStr := tc.str
			if wantStr == "" {
				wantStr = tc.in
			}
			if got.String() != wantStr {
				t.Fatalf("String() = %q, want %q", got.String(), wantStr)
			}
		})
	}
}

func TestPriceYAML(t *testing.T) {
	type prices struct {
		Input  Price `yaml:"input"`
		Output Price `yaml:"output"`
	}
	tests := []struct {
		name    string
		src     string
		want    prices
		wantErr string
	}{
		// 0.1 + 0.2 is the classic float64 trap; text parsing keeps it exact.
		{"decimals", "input: 0.1\noutput: 0.2\n", prices{100_000, 200_000}, ""},
		{"integers", "input: 2\noutput: 10.000001\n", prices{2_000_000, 10_000_001}, ""},
		{"quoted", "input: \"0.15\"\n", prices{}, "line 1: invalid price: must be an unquoted decimal number"},
		{"exponent", "input: 1e3\n", prices{}, "line 1: invalid price \"1e3\""},
		{"negative", "output: -0.5\n", prices{}, "line 1: invalid price \"-0.5\""},
		{"too precise", "input: 0.0000001\n", prices{}, "at most 6 decimal places"},
		// yaml.v3 does not call UnmarshalYAML for null: the price stays
		// zero, like a missing key (documented on UnmarshalYAML).
		{"null", "input: ~\noutput: 1\n", prices{0, 1_000_000}, ""},
		{"sequence", "input: [1]\n", prices{}, "must be an unquoted decimal number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got prices
			err := yaml.Unmarshal([]byte(tc.src), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCost(t *testing.T) {
	p := func(s string) Price {
		v, err := ParsePrice(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name          string
		in, out       int64
		inP, outP     Price
		wantMicroUSDs int64
	}{
		{"zero tokens", 0, 0, p("2.5"), p("10"), 0},
		{"free model", 1000, 1000, 0, 0, 0},
		{"api example", 12, 3, p("2.5"), p("10"), 60},
		{"gpt-4o-mini", 1000, 500, p("0.15"), p("0.6"), 450},
		{"exactly half rounds up", 1, 0, p("0.5"), 0, 1},
		{"just under half rounds down", 1, 0, p("0.499999"), 0, 0},
		{"half from two sides", 1, 1, p("0.25"), p("0.25"), 1},
		{"1.5 rounds up to 2", 3, 0, p("0.5"), 0, 2},
		{"smallest price", 1, 0, p("0.000001"), 0, 0},
		{"half via smallest price", 500_000, 0, p("0.000001"), 0, 1},
		{"under half via smallest price", 499_999, 0, p("0.000001"), 0, 0},
		{"negative tokens count as zero", -5, 10, p("1"), p("1"), 10},
		{"negative price counts as zero", 10, 10, -1_000_000, p("1"), 10},
		{"a billion tokens at max price", 1_000_000_000, 1_000_000_000, MaxPrice, MaxPrice, 2_000_000_000_000_000},
		{"largest that fits", math.MaxInt64, 0, p("1"), 0, math.MaxInt64},
		{"saturates", math.MaxInt64, math.MaxInt64, MaxPrice, MaxPrice, math.MaxInt64},
		{"just over int64", math.MaxInt64, 1, p("1"), p("1"), math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Cost(tc.in, tc.out, tc.inP, tc.outP); got != tc.wantMicroUSDs {
				t.Fatalf("Cost = %d, want %d", got, tc.wantMicroUSDs)
			}
			if got, want := Cost(tc.in, tc.out, tc.inP, tc.outP), bigCost(tc.in, tc.out, tc.inP, tc.outP); got != want {
				t.Fatalf("Cost = %d, big.Int says %d", got, want)
			}
		})
	}
}

// bigCost is the reference: the same formula in arbitrary precision.
func bigCost(in, out int64, inP, outP Price) int64 {
	return bigPricesCost(Prices{Input: inP, Output: outP}, Tokens{Input: in, Output: out})
}

// bigPricesCost is Prices.Cost's reference, in arbitrary precision.
func bigPricesCost(p Prices, t Tokens) int64 {
	clamp := func(v int64) *big.Int { return big.NewInt(max(v, 0)) }
	price := func(v Price) *big.Int { return big.NewInt(max(min(int64(v), int64(MaxPrice)), 0)) }
	total := new(big.Int)
	for _, k := range []struct {
		n int64
		p Price
	}{{t.Input, p.Input}, {t.Output, p.Output}, {t.CacheRead, p.CacheRead}, {t.CacheWrite5m, p.CacheWrite5m}, {t.CacheWrite1h, p.CacheWrite1h}} {
		total.Add(total, new(big.Int).Mul(clamp(k.n), price(k.p)))
	}
	total.Add(total, big.NewInt(PriceScale/2))
	total.Quo(total, big.NewInt(PriceScale))
	if !total.IsInt64() {
		return math.MaxInt64
	}
	return total.Int64()
}

// TestPricesCost: every kind of token at its own price, against a hand
// computation (Claude Sonnet 4.5's list prices: input 3, cache read 0.30,
// 5-minute write 3.75, 1-hour write 6, output 15 USD per million).
func TestPricesCost(t *testing.T) {
	sonnet := Prices{Input: 3_000_000, Output: 15_000_000, CacheRead: 300_000, CacheWrite5m: 3_750_000, CacheWrite1h: 6_000_000}
	tests := []struct {
		name string
		t    Tokens
		want int64
	}{
		// 4×3 + 3000×0.30 + 200×15 = 12 + 900 + 3000
		{"warm: a 3,000-token persona read", Tokens{Input: 4, CacheRead: 3000, Output: 200}, 3912},
		// 4×3 + 3000×3.75 + 200×15 = 12 + 11250 + 3000
		{"cold: the persona written (5m)", Tokens{Input: 4, CacheWrite5m: 3000, Output: 200}, 14262},
		// 4×3 + 3000×6 + 200×15
		{"cold: the persona written (1h)", Tokens{Input: 4, CacheWrite1h: 3000, Output: 200}, 21012},
		// 0.3 + 0.375 + 0.6 = 1.275: one rounding of the sum, not of each part
		{"one rounding", Tokens{CacheRead: 1, CacheWrite5m: 1, CacheWrite1h: 1}, 10},
		{"parts that round down alone round up together", Tokens{CacheRead: 1, CacheWrite5m: 1}, 4},
		{"saturates", Tokens{Input: math.MaxInt64, CacheRead: math.MaxInt64}, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sonnet.Cost(tc.t); got != tc.want {
				t.Fatalf("Cost = %d, want %d", got, tc.want)
			}
			if got, want := sonnet.Cost(tc.t), bigPricesCost(sonnet, tc.t); got != want {
				t.Fatalf("Cost = %d, big.Int says %d", got, want)
			}
		})
	}
}

func TestPriceScale(t *testing.T) {
	for _, c := range []struct {
		p        Price
		num, den int64
		want     Price
	}{
		{3_000_000, 1, 10, 300_000},
		{3_000_000, 5, 4, 3_750_000},
		{3_000_000, 2, 1, 6_000_000},
		{150_001, 5, 4, 187_501}, // 187501.25
		{3, 1, 2, 2},             // 1.5 rounds up
		{MaxPrice, 2, 1, MaxPrice},
		{0, 5, 4, 0},
		{-1, 5, 4, 0},
	} {
		if got := c.p.Scale(c.num, c.den); got != c.want {
			t.Errorf("%d.Scale(%d, %d) = %d, want %d", c.p, c.num, c.den, got, c.want)
		}
	}
}

func FuzzPricesCost(f *testing.F) {
	f.Add(int64(4), int64(200), int64(3000), int64(0), int64(0), int64(3_000_000), int64(15_000_000), int64(300_000), int64(3_750_000), int64(6_000_000))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(-1), int64(MaxPrice), int64(MaxPrice), int64(1))
	f.Fuzz(func(t *testing.T, in, out, read, w5, w1, pIn, pOut, pRead, pW5, pW1 int64) {
		p := Prices{Input: Price(pIn), Output: Price(pOut), CacheRead: Price(pRead), CacheWrite5m: Price(pW5), CacheWrite1h: Price(pW1)}
		tk := Tokens{Input: in, Output: out, CacheRead: read, CacheWrite5m: w5, CacheWrite1h: w1}
		if got, want := p.Cost(tk), bigPricesCost(p, tk); got != want {
			t.Fatalf("Cost(%+v, %+v) = %d, want %d", p, tk, got, want)
		}
	})
}

func FuzzParsePrice(f *testing.F) {
	for _, s := range []string{"0.15", "2", "10.000001", "1000000", "1e3", "-1", "0.1234567", "", ".", "00.000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrice(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPrice) {
				t.Fatalf("error %v does not wrap ErrInvalidPrice", err)
			}
			return
		}
		if p < 0 || p > MaxPrice {
			t.Fatalf("ParsePrice(%q) = %d out of range", s, p)
		}
		back, err := ParsePrice(p.String())
		if err != nil || back != p {
			t.Fatalf("round trip %q -> %d -> %q -> %d, %v", s, p, p.String(), back, err)
		}
		// The exact rational value must match: compare against big.Rat.
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("ParsePrice accepted %q, which is not a decimal", s)
		}
		if r.Mul(r, big.NewRat(PriceScale, 1)).Cmp(big.NewRat(int64(p), 1)) != 0 {
			t.Fatalf("ParsePrice(%q) = %d, exact value is %s", s, p, r.FloatString(6))
		}
	})
}

func FuzzCost(f *testing.F) {
	f.Add(int64(12), int64(3), int64(2_500_000), int64(10_000_000))
	f.Add(int64(1), int64(0), int64(500_000), int64(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(MaxPrice), int64(MaxPrice))
	f.Add(int64(-1), int64(math.MinInt64), int64(-1), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, in, out, inP, outP int64) {
		got := Cost(in, out, Price(inP), Price(outP))
		if want := bigCost(in, out, Price(inP), Price(outP)); got != want {
			t.Fatalf("Cost(%d, %d, %d, %d) = %d, want %d", in, out, inP, outP, got, want)
		}
	})
}

func BenchmarkCost(b *testing.B) {
	b.ReportAllocs()
	var sink int64
	for i := int64(0); b.Loop(); i++ {
		sink += Cost(1000+i&1023, 500, 150_000, 600_000)
	}
	if sink < 0 {
		b.Fatal(sink)
	}
}
