package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/redis/go-redis/v9"
)

// testRedisAddr is the Redis the tests use: MOONBORN_TEST_REDIS, default
// 127.0.0.1:6379. An unreachable Redis fails the test: these tests are the
// proof that the fleet shares one limit.
func testRedisAddr(t testing.TB) string {
	t.Helper()
	addr := testkit.RedisAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable (set MOONBORN_TEST_REDIS): %v", addr, err)
	}
	return addr
}

// testPrefix is a key prefix of this test alone; its keys are deleted when
// the test ends.
func testPrefix(t testing.TB, addr string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "moonborn-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func newTestRedisLimiter(t testing.TB, cfg LimitsConfig, addr, prefix, mode string) *RedisLimiter {
	cfg.Backend = BackendRedis
	cfg.OnRedisDown = mode
	cfg.Redis = RedisConfig{Addr: addr, KeyPrefix: prefix, Timeout: 2 * time.Second, DialTimeout: 2 * time.Second}
	l, err := NewRedisLimiter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestRedisLimiterFleetHammer: three limiters (three replicas, three
// connection pools) admit concurrently against one workspace limited to N
// requests per minute; together they admit N. All calls use one instant,
// so no refill blurs the count.
func TestRedisLimiterFleetHammer(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	const n = 1000
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{ID: "wsp_hammer", RateLimits: RateLimits{RequestsPerMinute: n}}}}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for r := range 3 {
		l := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := LimitKey{Workspace: "wsp_hammer", CredentialID: string(rune('a'+r)) + string(rune('0'+g))}
				for range 250 { // 3×8×250 = 6000 attempts for 1000 slots
					d, err := l.Admit(context.Background(), key, 0, now)
					if err != nil {
						errs <- err
						return
					}
					if d.Allowed {
						admitted.Add(1)
						if err := l.Settle(context.Background(), d.Reservation, 0, 0, now); err != nil {
							errs <- err
							return
						}
					} else {
						refused.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := admitted.Load()
	if got < n*99/100 || got > n*101/100 {
		t.Fatalf("admitted %d across 3 replicas, want %d ± 1%% (refused %d)", got, n, refused.Load())
	}
	t.Logf("admitted %d of %d attempts, limit %d", got, got+refused.Load(), n)
}

// TestRedisLimiterQuotaAcrossReplicas: spend settled through one replica
// exhausts the budget for all of them, until the next UTC month.
func TestRedisLimiterQuotaAcrossReplicas(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{ID: "wsp_q", MonthlyBudgetUsdMicros: 5000, MonthlyTokens: 1_000_000}}}
	a := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)
	b := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)
	c := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)
	now := time.Date(2026, 6, 30, 23, 0, 0, 0, time.UTC)
	key := LimitKey{Workspace: "wsp_q", CredentialID: "k1"}

	d, err := a.Admit(t.Context(), key, 100, now)
	if err != nil || !d.Allowed {
		t.Fatalf("first admit: %+v %v", d, err)
	}
	if err := a.Settle(t.Context(), d.Reservation, 120, 5000, now); err != nil {
		t.Fatal(err)
	}
	// The other replicas see the spend once a has sent it (at once, here;
	// within settleLinger on its own).
	a.Flush(t.Context())
	for name, l := range map[string]*RedisLimiter{"a": a, "b": b, "c": c} {
		d, err := l.Admit(t.Context(), LimitKey{Workspace: "wsp_q", CredentialID: "other"}, 1, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed || d.Reason != ReasonQuotaCost || d.RetryAfter != 59*time.Minute {
			t.Errorf("replica %s after the budget is spent: %s", name, describe(d))
		}
		d, err = l.Admit(t.Context(), key, 1, now.Add(time.Hour))
		if err != nil || !d.Allowed {
			t.Errorf("replica %s in the next month: %s %v", name, describe(d), err)
		}
	}

	// The counters live in one hash under the workspace's hash tag.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	q, err := rc.HGetAll(t.Context(), prefix+"{wsp_q}:q:202606").Result()
	if err != nil || q["usd"] != "5000" || q["tok"] != "120" {
		t.Fatalf("quota hash = %v, %v", q, err)
	}
	ttl := rc.PTTL(t.Context(), prefix+"{wsp_q}:q:202606").Val()
	if ttl <= 0 {
		t.Errorf("quota hash has no expiry (pttl %v)", ttl)
	}
}

// TestRedisLimiterSettlementQueue: settlements wait for a carrier —
// the next Admit, a flush, Close — and each of them delivers, in order;
// a settlement after Close is kept, not sent.
func TestRedisLimiterSettlementQueue(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{ID: "wsp_s", MonthlyTokens: 1_000_000}}}
	now := time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC)
	key := LimitKey{Workspace: "wsp_s", CredentialID: "k"}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	spent := func() string { return rc.HGet(t.Context(), prefix+"{wsp_s}:q:202606", "tok").Val() }

	a := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)
	settle := func(tokens int64) {
		t.Helper()
		d, err := a.Admit(t.Context(), key, 1, now)
		if err != nil || !d.Allowed {
			t.Fatalf("admit: %s %v", describe(d), err)
		}
		if err := a.Settle(t.Context(), d.Reservation, tokens, 0, now); err != nil {
			t.Fatal(err)
		}
	}
	settle(100)
	settle(20) // this Admit carried the first settlement
	a.Flush(t.Context())
	if got := spent(); got != "120" {
		t.Fatalf("after Flush: spent %q, want 120", got)
	}
	settle(3)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := spent(); got != "123" {
		t.Fatalf("after Close: spent %q, want 123", got)
	}
	if err := a.Settle(t.Context(), Reservation{key: key, valid: true}, 7, 0, now); !errors.Is(err, ErrLimiterUnavailable) {
		t.Errorf("Settle after Close: %v, want ErrLimiterUnavailable", err)
	}
	if got := spent(); got != "123" || a.Stats().LostSettlements != 1 {
		t.Errorf("after a late Settle: spent %q, stats %+v", got, a.Stats())
	}
}

// TestRedisLimiterKeys checks the key layout and that idle bucket keys
// expire about when they would be full, and that a flushed script cache is
// reloaded.
func TestRedisLimiterKeys(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	l := newTestRedisLimiter(t, stepsConfig(), addr, prefix, FailClosed)
	now := time.Now()
	if d, err := l.Admit(t.Context(), LimitKey{Workspace: "w1", CredentialID: "k-slow"}, 10, now); err != nil || !d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	keys, err := rc.Keys(t.Context(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{prefix + "{w1}:w": 2 * time.Second, prefix + "{w1}:k:k-slow": 61 * time.Second}
	if len(keys) != len(want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	for k, maxTTL := range want {
		ttl := rc.PTTL(t.Context(), k).Val()
		if ttl <= 0 || ttl > maxTTL {
			t.Errorf("%s pttl %v, want in (0, %v]", k, ttl, maxTTL)
		}
	}
	if err := rc.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Admit(t.Context(), LimitKey{Workspace: "w1", CredentialID: "a"}, 10, now); err != nil || !d.Allowed {
		t.Fatalf("after SCRIPT FLUSH: %+v %v", d, err)
	}
}

func TestRedisLimiterOutage(t *testing.T) {
	addr := testRedisAddr(t)
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{
		ID: "wsp_o", RateLimits: RateLimits{RequestsPerMinute: 600, RequestBurst: 3}, MonthlyBudgetUsdMicros: 1000,
	}}}
	key := LimitKey{Workspace: "wsp_o", CredentialID: "k"}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

	for _, mode := range []string{FailClosed, FailOpen} {
		t.Run(mode, func(t *testing.T) {
			prefix := testPrefix(t, addr)
			proxy := testkit.StartProxy(t, addr)
			var logs testkit.SyncBuffer
			cfg := cfg
			cfg.Backend, cfg.OnRedisDown = BackendRedis, mode
			cfg.Redis = RedisConfig{Addr: proxy.Addr(), KeyPrefix: prefix, Timeout: 2 * time.Second, DialTimeout: 2 * time.Second, DownBackoff: time.Second}
			l, err := NewRedisLimiter(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			direct := newTestRedisLimiter(t, cfg, addr, prefix, FailClosed)

			// Up: one admission through Redis.
			d, err := l.Admit(t.Context(), key, 0, now)
			if err != nil || !d.Allowed || d.Reservation.fallback {
				t.Fatalf("while up: %+v %v", d, err)
			}
			if err := l.Settle(t.Context(), d.Reservation, 0, 0, now); err != nil {
				t.Fatal(err)
			}
			l.Flush(t.Context()) // the settlement lands while Redis is up

			proxy.Cut()
			for i := range 3 {
				at := now.Add(time.Duration(i) * 100 * time.Millisecond) // within the backoff
				d, err := l.Admit(t.Context(), key, 0, at)
				switch mode {
				case FailClosed:
					if !errors.Is(err, ErrLimiterUnavailable) || d.Allowed {
						t.Fatalf("down, call %d: %+v %v; want ErrLimiterUnavailable", i, d, err)
					}
					if strings.Contains(err.Error(), "password") {
						t.Errorf("error mentions the password: %v", err)
					}
				case FailOpen:
					if err != nil || !d.Allowed || !d.Reservation.fallback {
						t.Fatalf("down, call %d: %+v %v; want a local admission", i, d, err)
					}
					// Spend while down is counted locally and kept for Redis.
					if err := l.Settle(t.Context(), d.Reservation, 10, 400, at); err != nil {
						t.Fatal(err)
					}
				}
			}
			st := l.Stats()
			if !st.Down || st.Outages != 1 || st.RedisErrors != 1 {
				t.Errorf("stats while down: %+v (want one error: later calls skip Redis during the backoff)", st)
			}
			if mode == FailClosed && st.FailClosedAdmits != 3 || mode == FailOpen && st.FailOpenAdmits != 3 {
				t.Errorf("stats while down: %+v", st)
			}
			if mode == FailOpen {
				// Local buckets have the same limits: burst 3.
				if d, _ := l.Admit(t.Context(), key, 0, now.Add(200*time.Millisecond)); d.Allowed {
					t.Errorf("local fallback ignored the burst: %s", describe(d))
				}
			}
			if got := strings.Count(logs.String(), "redis limiter unreachable"); got != 1 {
				t.Errorf("%d outage log lines, want 1:\n%s", got, logs.String())
			}

			proxy.Restore()
			// Still within the backoff: Redis is not tried yet.
			if _, err := l.Admit(t.Context(), key, 0, now.Add(900*time.Millisecond)); mode == FailClosed && !errors.Is(err, ErrLimiterUnavailable) {
				t.Errorf("within backoff: %v", err)
			}
			// After it the next call probes Redis and recovers.
			later := now.Add(10 * time.Second)
			d, err = l.Admit(t.Context(), key, 0, later)
			if err != nil || !d.Allowed || d.Reservation.fallback {
				t.Fatalf("after recovery: %+v %v", d, err)
			}
			st = l.Stats()
			if st.Down || st.Recoveries != 1 {
				t.Errorf("stats after recovery: %+v", st)
			}
			if !strings.Contains(logs.String(), "redis limiter reachable again") {
				t.Errorf("no recovery log:\n%s", logs.String())
			}
			if mode == FailOpen {
				// 3×400 µUSD spent while down reached Redis: another
				// replica now sees the 1000 budget exhausted.
				d, err := direct.Admit(t.Context(), LimitKey{Workspace: "wsp_o", CredentialID: "x"}, 0, later)
				if err != nil || d.Allowed || d.Reason != ReasonQuotaCost {
					t.Errorf("other replica after replay: %s %v", describe(d), err)
				}
			}
		})
	}
}

// TestRedisLimiterUnreachableFromStart: a closed port from the first call.
func TestRedisLimiterUnreachableFromStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cfg := LimitsConfig{
		Backend: BackendRedis, OnRedisDown: FailClosed,
		Redis:      RedisConfig{Addr: closed},
		Workspaces: []WorkspaceLimits{{ID: "w", RateLimits: RateLimits{RequestsPerMinute: 1}}},
	}
	l, err := NewRedisLimiter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now()
	if _, err := l.Admit(t.Context(), LimitKey{Workspace: "w"}, 0, now); !errors.Is(err, ErrLimiterUnavailable) {
		t.Fatalf("closed port: %v", err)
	}
	// Unlimited workspaces never touch Redis.
	if d, err := l.Admit(t.Context(), LimitKey{Workspace: "free"}, 0, now); err != nil || !d.Allowed {
		t.Fatalf("unlimited workspace: %+v %v", d, err)
	}
	// A cancelled caller is not an outage.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l2, _ := NewRedisLimiter(cfg, nil)
	defer l2.Close()
	if _, err := l2.Admit(ctx, LimitKey{Workspace: "w"}, 0, now); !errors.Is(err, context.Canceled) || l2.Stats().Down {
		t.Fatalf("cancelled caller: %v %+v", err, l2.Stats())
	}
}
