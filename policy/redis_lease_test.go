package policy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/redis/go-redis/v9"
)

// leaseTestConfig: one workspace whose buckets are big enough to lease
// (slices of 60 requests and 6,000 tokens at the default 1%), with a
// monthly token quota far from spent.
func leaseTestConfig() LimitsConfig {
	return LimitsConfig{Workspaces: []WorkspaceLimits{{
		ID:            "wl",
		RateLimits:    RateLimits{RequestsPerMinute: 6000, RequestBurst: 6000, TokensPerMinute: 600_000},
		MonthlyTokens: 1_000_000_000,
	}}}
}

// TestRedisLeaseMatchesLocal drives one leasing Redis limiter and a
// LocalLimiter through the same decisions at fixed instants — draining
// the buckets at ten times their refill, through the leased range, the
// exact floor and refusals, then an idle minute (slices expire, the
// shared bucket refills over them) and again — and wants the same answer,
// headers included, at every step: one replica holding slices decides as
// one process would. Most answers must come from the slices.
func TestRedisLeaseMatchesLocal(t *testing.T) {
	addr := testRedisAddr(t)
	l := newTestRedisLimiter(t, leaseTestConfig(), addr, testPrefix(t, addr), FailOpen)
	local, err := NewLocalLimiter(leaseTestConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	at := t0
	mismatches := 0
	for i := range 16000 {
		switch {
		case i == 8000:
			at = at.Add(70 * time.Second)
		case i > 0:
			at = at.Add(time.Millisecond)
		}
		key := LimitKey{Workspace: "wl", CredentialID: []string{"a", "b", "c"}[i%3]}
		want, _ := local.Admit(ctx, key, 100, at)
		got, err := l.Admit(ctx, key, 100, at)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		l.fetches.Wait() // a prefetch lands before the next step
		if g, w := describe(got), describe(want); g != w {
			if mismatches++; mismatches <= 5 {
				t.Errorf("step %d at +%v:\n got %s\nwant %s", i, at.Sub(t0), g, w)
			}
		}
		if want.Allowed && got.Allowed {
			actual := int64(i*37) % 130 // mostly refunds, some extra charges
			_ = local.Settle(ctx, want.Reservation, actual, 0, at)
			if err := l.Settle(ctx, got.Reservation, actual, 0, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d of 16000 decisions differ from the local limiter's", mismatches)
	}
	st := l.Stats()
	if st.LeaseAdmits < 8000 || st.LeaseFetches == 0 {
		t.Fatalf("stats %+v: want most decisions from leases", st)
	}
	t.Logf("%d of 16000 decisions from leases, %d prefetches", st.LeaseAdmits, st.LeaseFetches)
}

// TestRedisLeaseFleetNeverOverAdmits: three leasing limiters on one Redis,
// 24 goroutines driving them hard on one workspace of N requests (refill
// one a second, on a shared clock that moves 100 µs a call, so slices
// also expire and come back: ttl 20ms): together they admit no more than
// N plus the refill, and at least N − 1%.
func TestRedisLeaseFleetNeverOverAdmits(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	const n = 3000
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{ID: "wsp_lease", RateLimits: RateLimits{RequestsPerMinute: 60, RequestBurst: n}}}}
	cfg.Redis.Lease = LeaseConfig{TTL: 20 * time.Millisecond}
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	var admitted, leased atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var ls []*RedisLimiter
	for r := range 3 {
		c := cfg
		c.Backend, c.OnRedisDown = BackendRedis, FailClosed
		c.Redis.Addr, c.Redis.KeyPrefix, c.Redis.Timeout = addr, prefix, 2*time.Second
		l, err := NewRedisLimiter(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := LimitKey{Workspace: "wsp_lease", CredentialID: string(rune('a'+r)) + string(rune('0'+g))}
				for range 1000 {
					now := t0.Add(time.Duration(clock.Add(1)) * 100 * time.Microsecond)
					d, err := l.Admit(context.Background(), key, 0, now)
					if err != nil {
						errs <- err
						return
					}
					if d.Allowed {
						admitted.Add(1)
						_ = l.Settle(context.Background(), d.Reservation, 0, 0, now)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, l := range ls {
		leased.Add(int64(l.Stats().LeaseAdmits))
		l.Close()
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Duration(clock.Load()) * 100 * time.Microsecond
	refill := int64(elapsed/time.Second) + 1
	got := admitted.Load()
	if got > n+refill || got < n*99/100 {
		t.Fatalf("admitted %d across 3 leasing replicas in %v, want at most %d and at least %d", got, elapsed, n+refill, n*99/100)
	}
	if leased.Load() < n/2 {
		t.Fatalf("only %d of %d admissions from leases", leased.Load(), got)
	}
	t.Logf("admitted %d (limit %d, +%d refill), %d from leases", got, n, refill, leased.Load())
}

// TestRedisLeaseReturnedAtClose: a replica that stops gives its unspent
// slices back, so the shared bucket holds exactly what was not admitted.
func TestRedisLeaseReturnedAtClose(t *testing.T) {
	addr := testRedisAddr(t)
	prefix := testPrefix(t, addr)
	cfg := LimitsConfig{Workspaces: []WorkspaceLimits{{ID: "wr", RateLimits: RateLimits{RequestsPerMinute: 1, RequestBurst: 10000}}}}
	l := newTestRedisLimiter(t, cfg, addr, prefix, FailOpen)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	level := func() int64 {
		v, err := rc.HGet(t.Context(), prefix+"{wr}:w", "rl").Int64()
		if err != nil {
			t.Fatal(err)
		}
		return v / bucketScale
	}
	now := time.Now()
	for range 30 {
		if d, err := l.Admit(t.Context(), LimitKey{Workspace: "wr", CredentialID: "k"}, 0, now); err != nil || !d.Allowed {
			t.Fatalf("%s %v", describe(d), err)
		}
		l.fetches.Wait()
	}
	if got := level(); got != 10000-1-100 || l.Stats().LeaseAdmits != 29 {
		t.Fatalf("while leasing: shared level %d (want 10000-1-100: one exact admission, a slice of 100 out), stats %+v", got, l.Stats())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := level(); got != 10000-30 {
		t.Fatalf("after Close: shared level %d, want %d", got, 10000-30)
	}
}

// TestRedisLeaseFailClosedOutage: a fail-closed limiter answering from
// its slices stops at once when Redis's connections are cut, as it did
// before leasing, and leases again after recovery.
func TestRedisLeaseFailClosedOutage(t *testing.T) {
	addr := testRedisAddr(t)
	proxy := testkit.StartProxy(t, addr)
	cfg := leaseTestConfig()
	cfg.Backend, cfg.OnRedisDown = BackendRedis, FailClosed
	cfg.Redis = RedisConfig{Addr: proxy.Addr(), KeyPrefix: testPrefix(t, addr), Timeout: 2 * time.Second, DownBackoff: 100 * time.Millisecond}
	l, err := NewRedisLimiter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	key := LimitKey{Workspace: "wl", CredentialID: "k"}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	testkit.Eventually(t, 5*time.Second, "answers from leases", func() bool {
		d, err := l.Admit(t.Context(), key, 1, now)
		if err != nil || !d.Allowed {
			t.Fatalf("%s %v", describe(d), err)
		}
		return l.Stats().LeaseAdmits > 0
	})
	proxy.Cut()
	time.Sleep(10 * time.Millisecond) // the FIN reaches the watch connection
	if _, err := l.Admit(t.Context(), key, 1, now); err == nil || !strings.Contains(err.Error(), ErrLimiterUnavailable.Error()) {
		t.Fatalf("after the cut: %v, want ErrLimiterUnavailable", err)
	}
	proxy.Restore()
	before := l.Stats().LeaseAdmits
	later := now.Add(time.Second)
	testkit.Eventually(t, 5*time.Second, "leases after recovery", func() bool {
		d, err := l.Admit(t.Context(), key, 1, later)
		return err == nil && d.Allowed && l.Stats().LeaseAdmits > before
	})
}

func TestLeaseConfig(t *testing.T) {
	off := false
	cfg := LimitsConfig{Backend: BackendRedis}
	cfg.Redis.Lease = LeaseConfig{MaxSlice: 0.5, TTL: time.Hour}
	cfg.SetDefaults()
	err := cfg.Validate()
	for _, want := range []string{"redis.lease.maxSlice: must be between 0.0001 and 0.05", "redis.lease.ttl: must be between 10ms and 1m0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
	var def LeaseConfig
	def.SetDefaults()
	if !*def.Enabled || def.MaxSlice != 0.01 || def.TTL != time.Second {
		t.Errorf("defaults %+v", def)
	}
	cfg = LimitsConfig{Backend: BackendRedis}
	cfg.Redis.Lease.Enabled = &off
	l, err := NewRedisLimiter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.leases != nil {
		t.Error("lease.enabled false still leases")
	}
}

// TestRedisLeaseKeptForOtherCredentials: a credential whose own small
// bucket cannot be leased asks Redis every time; the workspace slice the
// replica holds for its other credentials stays with them.
func TestRedisLeaseKeptForOtherCredentials(t *testing.T) {
	addr := testRedisAddr(t)
	cfg := leaseTestConfig()
	cfg.Workspaces[0].Keys = []KeyLimits{{CredentialID: "small", RateLimits: RateLimits{RequestsPerMinute: 60, RequestBurst: 3}}}
	l := newTestRedisLimiter(t, cfg, addr, testPrefix(t, addr), FailOpen)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	admit := func(cred string) Decision {
		t.Helper()
		d, err := l.Admit(t.Context(), LimitKey{Workspace: "wl", CredentialID: cred}, 1, now)
		if err != nil || !d.Allowed {
			t.Fatalf("%s: %s %v", cred, describe(d), err)
		}
		l.fetches.Wait()
		return d
	}
	admit("big") // asks Redis, takes a slice
	for i := range 3 {
		before := l.Stats().LeaseAdmits
		small := admit("small")
		big := admit("big")
		if st := l.Stats(); st.LeaseAdmits != before+1 {
			t.Fatalf("round %d: %d decisions from leases, want %d (small asks Redis, big keeps its slice)", i, st.LeaseAdmits, before+1)
		}
		// small sees its own bucket (the tighter), big the workspace's
		// with the slice counted in, as a local limiter would.
		if small.Requests.Remaining != int64(2-i) || big.Requests.Remaining != int64(5997-2*i) {
			t.Errorf("round %d: small %s (want req=%d/3), big %s (want req=%d/6000)", i, describe(small), 2-i, describe(big), 5997-2*i)
		}
	}
}
