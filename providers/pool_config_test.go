package providers

import (
	"strings"
	"testing"
	"time"
)

func TestPoolConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *PoolConfig)
		want   []string
	}{
		{"defaults are valid", func(*PoolConfig) {}, nil},
		{"bad strategy", func(c *PoolConfig) { c.Strategy = "random" }, []string{"strategy: must be one of"}},
		{"attempts out of range", func(c *PoolConfig) { c.MaxAttempts = 11 }, []string{"maxAttempts:"}},
		{"nested paths are relative", func(c *PoolConfig) {
			c.Hedge.Delay = -1
			c.Breaker.FailureRatio = 1.5
			c.Breaker.HalfOpenProbes = -1
		}, []string{"hedge.delay:", "breaker.failureRatio:", "breaker.halfOpenProbes:"}},
		{"maxOpenFor below openFor", func(c *PoolConfig) {
			c.Breaker.OpenFor = time.Minute
			c.Breaker.MaxOpenFor = time.Second
		}, []string{"breaker.maxOpenFor:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c PoolConfig
			c.SetDefaults()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d problems (%q), want %d", len(lines), err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestRetryBudgetConfigValidate(t *testing.T) {
	c := RetryBudgetConfig{Ratio: -1, MinPerSecond: -1, Window: time.Millisecond}
	err := c.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 2 ||
		!strings.HasPrefix(err.Error(), "ratio:") || !strings.Contains(err.Error(), "minPerSecond:") || !strings.Contains(err.Error(), "window:") {
		t.Fatalf("Validate = %v, want ratio, minPerSecond and window problems", err)
	}
	var d RetryBudgetConfig
	d.SetDefaults()
	if d.Ratio != 0.2 || d.MinPerSecond != 10 || d.Window != 10*time.Second {
		t.Errorf("defaults = %+v", d)
	}
}
