package policy

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// benchConfig limits requests and tokens per workspace and per key, and
// counts a monthly budget: every part of the decision runs.
func benchConfig() LimitsConfig {
	cfg := LimitsConfig{Default: WorkspaceLimits{
		RateLimits:             RateLimits{RequestsPerMinute: MaxLimit / 10, TokensPerMinute: MaxLimit / 10},
		MonthlyBudgetUsdMicros: MaxLimit,
		PerKey:                 RateLimits{RequestsPerMinute: MaxLimit / 10, TokensPerMinute: MaxLimit / 10},
	}}
	return cfg
}

func benchKeys() []LimitKey {
	keys := make([]LimitKey, 64)
	for i := range keys {
		keys[i] = LimitKey{Workspace: "wsp_" + strconv.Itoa(i), CredentialID: "key_" + strconv.Itoa(i)}
	}
	return keys
}

func benchAdmitSettle(b *testing.B, l limiter) {
	keys := benchKeys()
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		now := t0.Add(time.Duration(i) * time.Microsecond)
		d, err := l.Admit(ctx, keys[i%len(keys)], 1200, now)
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		if err := l.Settle(ctx, d.Reservation, 900, 42, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAdmitSettle(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		l, err := NewLocalLimiter(benchConfig())
		if err != nil {
			b.Fatal(err)
		}
		benchAdmitSettle(b, l)
	})
	b.Run("local-parallel", func(b *testing.B) {
		l, err := NewLocalLimiter(benchConfig())
		if err != nil {
			b.Fatal(err)
		}
		now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		keys := benchKeys()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			i := 0
			for pb.Next() {
				i++
				d, _ := l.Admit(ctx, keys[i%len(keys)], 1200, now)
				_ = l.Settle(ctx, d.Reservation, 900, 42, now)
			}
		})
	})
	b.Run("redis", func(b *testing.B) {
		addr := testRedisAddr(b)
		l := newTestRedisLimiter(b, benchConfig(), addr, testPrefix(b, addr), FailClosed)
		benchAdmitSettle(b, l)
	})
}
