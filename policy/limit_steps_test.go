package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// limiter is what the gateway will declare; both backends satisfy it.
type limiter interface {
	Admit(ctx context.Context, key LimitKey, reserveTokens int64, now time.Time) (Decision, error)
	Settle(ctx context.Context, r Reservation, actualTokens, costUsdMicros int64, now time.Time) error
	Close() error
}

var (
	_ limiter = (*LocalLimiter)(nil)
	_ limiter = (*RedisLimiter)(nil)
)

// stepsConfig: w1 allows 1 request/s with a burst of 3 and 100 tokens/s
// (6000/min, also the token capacity); its key "k-tight" has a burst of 1,
// "k-slow" refills one request per minute. w2 has a 1000 µUSD monthly
// budget, w3 a 500-token monthly quota, w0 no limits, and unlisted
// workspaces get 2 requests then one per 10s.
func stepsConfig() LimitsConfig {
	return LimitsConfig{
		Default: WorkspaceLimits{RateLimits: RateLimits{RequestsPerMinute: 6, RequestBurst: 2}},
		Workspaces: []WorkspaceLimits{
			{ID: "w0"},
			{ID: "w1", RateLimits: RateLimits{RequestsPerMinute: 60, RequestBurst: 3, TokensPerMinute: 6000}, Keys: []KeyLimits{
				{CredentialID: "k-tight", RateLimits: RateLimits{RequestsPerMinute: 60, RequestBurst: 1}},
				{CredentialID: "k-slow", RateLimits: RateLimits{RequestsPerMinute: 1, RequestBurst: 1}},
				{CredentialID: "k-tok", RateLimits: RateLimits{TokensPerMinute: 600}},
			}},
			{ID: "w2", MonthlyBudgetUsdMicros: 1000},
			{ID: "w3", MonthlyTokens: 500, PerKey: RateLimits{RequestsPerMinute: 600}},
		},
	}
}

// step is one call at t0+at. settle > 0 settles the reservation made by
// the admit step with that 1-based index; otherwise the step admits.
type step struct {
	at      time.Duration
	ws, key string
	reserve int64
	settle  int
	actual  int64 // tokens, for settle
	cost    int64 // µUSD, for settle
	own     *CredentialLimits
	want    string
}

// ownLimits are a managed key's own limits: one request a second, a 100
// µUSD monthly budget.
var ownLimits = &CredentialLimits{RateLimits: RateLimits{RequestsPerMinute: 60, RequestBurst: 1}, MonthlyBudgetUsdMicros: 100}

// describe prints a decision compactly: "ok" or "429 <code>/<reason>
// retry=<d>", then the header triples of limited dimensions.
func describe(d Decision) string {
	var b strings.Builder
	if d.Allowed {
		b.WriteString("ok")
	} else {
		fmt.Fprintf(&b, "429 %s retry=%v", d.Reason, d.RetryAfter)
	}
	if s := d.Requests; s.Limit > 0 {
		fmt.Fprintf(&b, " req=%d/%d@%v", s.Remaining, s.Limit, s.Reset)
	}
	if s := d.Tokens; s.Limit > 0 {
		fmt.Fprintf(&b, " tok=%d/%d@%v", s.Remaining, s.Limit, s.Reset)
	}
	return b.String()
}

var limiterStepCases = []struct {
	name  string
	t0    time.Time
	steps []step
}{
	{"burst then refill", time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), []step{
		{ws: "w1", key: "a", reserve: 100, want: "ok req=2/3@1s tok=5900/6000@1s"},
		{ws: "w1", key: "a", want: "ok req=1/3@2s tok=5900/6000@1s"},
		{ws: "w1", key: "a", want: "ok req=0/3@3s tok=5900/6000@1s"},
		{ws: "w1", key: "a", want: "429 request rate limit retry=1s req=0/3@3s tok=5900/6000@1s"},
		{at: 999 * time.Millisecond, ws: "w1", key: "a", want: "429 request rate limit retry=1ms req=0/3@2.001s tok=5999/6000@1ms"},
		{at: time.Second, ws: "w1", key: "a", want: "ok req=0/3@3s tok=6000/6000@0s"},
		{at: 10 * time.Second, ws: "w1", key: "a", want: "ok req=2/3@1s tok=6000/6000@0s"},
		// A clock that went backwards (another replica) refills nothing.
		{at: 5 * time.Second, ws: "w1", key: "a", want: "ok req=1/3@2s tok=6000/6000@0s"},
	}},
	{"token reservation, refund and extra charge", time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), []step{
		{ws: "w1", key: "a", reserve: 6000, want: "ok req=2/3@1s tok=0/6000@1m0s"},
		{ws: "w1", key: "a", reserve: 1, want: "429 token rate limit retry=10ms req=2/3@1s tok=0/6000@1m0s"},
		{settle: 1, actual: 3000, want: "settled"},
		{ws: "w1", key: "a", reserve: 3000, want: "ok req=1/3@2s tok=0/6000@1m0s"},
		{settle: 4, actual: 4000, want: "settled"}, // 1000 more than reserved: debt
		{at: 5 * time.Second, ws: "w1", key: "a", want: "429 token rate limit retry=5s req=3/3@0s tok=0/6000@1m5s"},
		{at: 10 * time.Second, ws: "w1", key: "a", reserve: 100, want: "429 token rate limit retry=1s req=3/3@0s tok=0/6000@1m0s"},
		{at: 11 * time.Second, ws: "w1", key: "a", reserve: 100, want: "ok req=2/3@1s tok=0/6000@1m0s"},
		{at: 11 * time.Second, settle: 8, actual: 0, want: "settled"},
		// A reservation above the capacity takes the whole (full) bucket.
		{at: 71 * time.Second, ws: "w1", key: "a", reserve: 1_000_000, want: "ok req=2/3@1s tok=0/6000@1m0s"},
		// A refund larger than the bucket's room fills it, no more.
		{at: 72 * time.Second, settle: 10, actual: 0, want: "settled"},
		{at: 72 * time.Second, ws: "w1", key: "a", reserve: 6000, want: "ok req=2/3@1s tok=0/6000@1m0s"},
	}},
	{"key buckets and workspace buckets both pass or neither is charged", time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), []step{
		{ws: "w1", key: "k-tight", want: "ok req=0/1@1s tok=6000/6000@0s"},
		{ws: "w1", key: "k-tight", want: "429 request rate limit retry=1s req=0/1@1s tok=6000/6000@0s"},
		{ws: "w1", key: "a", want: "ok req=1/3@2s tok=6000/6000@0s"}, // the refused call took nothing from w1
		{ws: "w1", key: "b", want: "ok req=0/3@3s tok=6000/6000@0s"},
		{ws: "w1", key: "k-slow", want: "429 request rate limit retry=1s req=0/3@3s tok=6000/6000@0s"},
		{at: time.Second, ws: "w1", key: "k-slow", want: "ok req=0/1@1m0s tok=6000/6000@0s"}, // its own bucket was untouched
		{at: 2 * time.Second, ws: "w1", key: "k-slow", want: "429 request rate limit retry=59s req=0/1@59s tok=6000/6000@0s"},
		{at: 2 * time.Second, ws: "w1", key: "k-tok", reserve: 500, want: "ok req=0/3@3s tok=100/600@50s"},
		{at: 2 * time.Second, ws: "w1", key: "k-tok", reserve: 200, want: "429 request rate limit retry=10s req=0/3@3s tok=100/600@50s"},
		{at: 3 * time.Second, ws: "w1", key: "k-tok", reserve: 200, want: "429 token rate limit retry=9s req=1/3@2s tok=110/600@49s"},
		{at: 3 * time.Second, settle: 8, actual: 100, want: "settled"},
		{at: 3 * time.Second, ws: "w1", key: "k-tok", reserve: 200, want: "ok req=0/3@3s tok=310/600@29s"},
	}},
	{"unlisted workspace gets the default", time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), []step{
		{ws: "zz", key: "a", want: "ok req=1/2@10s"},
		{ws: "zz", key: "b", want: "ok req=0/2@20s"},
		{ws: "zz", key: "a", want: "429 request rate limit retry=10s req=0/2@20s"},
		{ws: "w0", key: "a", reserve: 1 << 40, want: "ok"},
	}},
	{"monthly budget resets at the UTC month boundary", time.Date(2026, 1, 31, 23, 59, 0, 0, time.UTC), []step{
		{ws: "w2", key: "a", reserve: 10, want: "ok"},
		{settle: 1, actual: 7, cost: 999, want: "settled"},
		{ws: "w2", key: "a", want: "ok"},
		{settle: 3, actual: 0, cost: 1, want: "settled"},
		{ws: "w2", key: "a", want: "429 monthly budget retry=1m0s"},
		{at: 59*time.Second + 999*time.Millisecond, ws: "w2", key: "b", want: "429 monthly budget retry=1ms"},
		{at: time.Minute, ws: "w2", key: "a", want: "ok"},
		{at: time.Minute, settle: 7, cost: 999, want: "settled"},
		{at: time.Minute, ws: "w2", key: "a", want: "ok"},
	}},
	{"a managed key's own buckets and monthly budget", time.Date(2026, 1, 31, 23, 59, 0, 0, time.UTC), []step{
		{ws: "w0", key: "m1", own: ownLimits, want: "ok req=0/1@1s"},
		{ws: "w0", key: "m1", own: ownLimits, want: "429 request rate limit retry=1s req=0/1@1s"},
		{settle: 1, actual: 10, cost: 100, want: "settled"},
		{at: time.Second, ws: "w0", key: "m1", own: ownLimits, want: "429 monthly budget retry=59s req=1/1@0s"},
		{at: time.Second, ws: "w0", key: "m2", want: "ok"}, // the workspace's other keys
		{at: time.Minute, ws: "w0", key: "m1", own: ownLimits, want: "ok req=0/1@1s"},
		// The workspace's budget is checked first.
		{at: time.Minute, ws: "w2", key: "m3", own: ownLimits, want: "ok req=0/1@1s"},
		{at: time.Minute, settle: 7, cost: 1000, want: "settled"},
		{at: time.Minute + time.Second, ws: "w2", key: "m4", own: ownLimits, want: "429 monthly budget retry=671h59m59s req=1/1@0s"},
	}},
	{"monthly tokens", time.Date(2026, 12, 15, 12, 0, 0, 0, time.UTC), []step{
		{ws: "w3", key: "a", reserve: 1000, want: "ok req=599/600@100ms"},
		{settle: 1, actual: 499, want: "settled"},
		{ws: "w3", key: "b", want: "ok req=599/600@100ms"},
		{settle: 3, actual: 1, want: "settled"},
		{ws: "w3", key: "a", want: "429 monthly token quota retry=396h0m0s req=599/600@100ms"},
		{at: 396 * time.Hour, ws: "w3", key: "a", want: "ok req=599/600@100ms"},
	}},
}

// runLimiterSteps runs every case on a fresh limiter from mk.
func runLimiterSteps(t *testing.T, mk func(t *testing.T, cfg LimitsConfig) limiter) {
	for _, tc := range limiterStepCases {
		t.Run(tc.name, func(t *testing.T) {
			l := mk(t, stepsConfig())
			res := make([]Reservation, len(tc.steps)+1)
			for i, s := range tc.steps {
				now := tc.t0.Add(s.at)
				if s.settle > 0 {
					if err := l.Settle(t.Context(), res[s.settle], s.actual, s.cost, now); err != nil {
						t.Fatalf("step %d: Settle: %v", i+1, err)
					}
					continue
				}
				d, err := l.Admit(t.Context(), LimitKey{Workspace: s.ws, CredentialID: s.key, Own: s.own}, s.reserve, now)
				if err != nil {
					t.Fatalf("step %d: Admit: %v", i+1, err)
				}
				res[i+1] = d.Reservation
				if got := describe(d); got != s.want {
					t.Errorf("step %d at +%v %s/%s reserve %d:\n got %s\nwant %s", i+1, s.at, s.ws, s.key, s.reserve, got, s.want)
				}
			}
		})
	}
}

func TestLocalLimiterSteps(t *testing.T) {
	runLimiterSteps(t, func(t *testing.T, cfg LimitsConfig) limiter {
		l, err := NewLocalLimiter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestRedisLimiterSteps(t *testing.T) {
	addr := testRedisAddr(t)
	runLimiterSteps(t, func(t *testing.T, cfg LimitsConfig) limiter {
		return newTestRedisLimiter(t, cfg, addr, testPrefix(t, addr), FailClosed)
	})
}

func TestAppendDuration(t *testing.T) {
	for _, ms := range []int64{0, 1, 20, 999, 1000, 1001, 1500, 1020, 59999, 60000, 61000, 360000, 3599999, 3600000, 86400000 * 40} {
		d := time.Duration(ms) * time.Millisecond
		if got, want := string(AppendDuration(nil, d)), d.String(); got != want {
			t.Errorf("AppendDuration(%v) = %q", d, got)
		}
	}
	if got := string(AppendDuration(nil, -time.Second)); got != "0s" {
		t.Errorf("negative: %q", got)
	}
}

func FuzzAppendDuration(f *testing.F) {
	f.Add(int64(1500))
	f.Add(int64(3600001))
	f.Fuzz(func(t *testing.T, ms int64) {
		if ms < 0 || ms > int64(time.Duration(1<<62)/time.Millisecond) {
			return
		}
		d := time.Duration(ms) * time.Millisecond
		if got, want := string(AppendDuration(nil, d)), d.String(); got != want {
			t.Fatalf("AppendDuration(%d ms) = %q, want %q", ms, got, want)
		}
	})
}

func TestLocalLimiterEviction(t *testing.T) {
	l, err := NewLocalLimiter(stepsConfig())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 31, 23, 0, 0, 0, time.UTC)
	for i := range 1000 {
		ws := fmt.Sprintf("ws%d", i)
		if _, err := l.Admit(t.Context(), LimitKey{Workspace: ws, CredentialID: "k"}, 0, t0); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := l.Admit(t.Context(), LimitKey{Workspace: "w1", CredentialID: "k-slow"}, 0, t0)
	if err := l.Settle(t.Context(), d.Reservation, 1, 0, t0); err != nil {
		t.Fatal(err)
	}
	d, _ = l.Admit(t.Context(), LimitKey{Workspace: "w2", CredentialID: "k"}, 0, t0)
	_ = l.Settle(t.Context(), d.Reservation, 1, 5, t0)

	steps := []struct {
		at             time.Duration
		wantWS, wantKS int
	}{
		{0, 1002, 1},                    // everything is held
		{10 * time.Second, 2, 1},        // default buckets (2 at 6/min) are full again
		{time.Minute, 1, 0},             // w1 and k-slow refilled; w2 keeps its quota counter
		{time.Hour + time.Second, 0, 0}, // April: the March counter is done
	}
	for _, s := range steps {
		l.Sweep(t0.Add(s.at))
		if ws, ks := l.size(); ws != s.wantWS || ks != s.wantKS {
			t.Errorf("after sweep at +%v: %d workspaces, %d keys; want %d, %d", s.at, ws, ks, s.wantWS, s.wantKS)
		}
	}

	// Lazy sweeping alone keeps memory near the active set.
	for i := range 20000 {
		now := t0.Add(time.Duration(i) * time.Second)
		if _, err := l.Admit(t.Context(), LimitKey{Workspace: fmt.Sprintf("x%d", i), CredentialID: "k"}, 0, now); err != nil {
			t.Fatal(err)
		}
	}
	if ws, _ := l.size(); ws > 5000 {
		t.Errorf("%d workspaces held after 20000 one-off workspaces", ws)
	}
}
