package providers

import (
	"testing"
	"time"
)

func TestRetryBudget(t *testing.T) {
	type step struct {
		at       time.Duration
		requests int
		retries  int // attempted
		granted  int // expected
	}
	cases := []struct {
		name  string
		cfg   RetryBudgetConfig
		steps []step
	}{
		{
			name: "ratio bounds retries against requests",
			cfg:  RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 0, Window: 10 * time.Second},
			steps: []step{
				{at: 0, requests: 100, retries: 50, granted: 10},
				{at: time.Second, requests: 10, retries: 5, granted: 1},
			},
		},
		{
			name: "minimum allows retries on a quiet gateway",
			cfg:  RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second},
			steps: []step{
				{at: 0, requests: 1, retries: 20, granted: 10},
			},
		},
		{
			name: "old requests and retries slide out of the window",
			cfg:  RetryBudgetConfig{Ratio: 0.5, MinPerSecond: 0, Window: 10 * time.Second},
			steps: []step{
				{at: 0, requests: 10, retries: 10, granted: 5},
				{at: 5 * time.Second, requests: 0, retries: 1, granted: 0},
				{at: 10 * time.Second, requests: 2, retries: 5, granted: 1},
			},
		},
		{
			name: "full outage: retries stay at ratio plus floor",
			cfg:  RetryBudgetConfig{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second},
			steps: []step{
				{at: 0, requests: 1000, retries: 2000, granted: 300},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewRetryBudget(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				for range s.requests {
					b.Request(now)
				}
				got := 0
				for range s.retries {
					if b.TryRetry(now) {
						got++
					}
				}
				if got != s.granted {
					t.Errorf("step %d: granted %d retries, want %d", i, got, s.granted)
				}
			}
		})
	}
	var nilBudget *RetryBudget
	nilBudget.Request(t0)
	if !nilBudget.TryRetry(t0) {
		t.Error("nil budget refused a retry")
	}
}
