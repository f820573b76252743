package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLimiter keeps the buckets and quota counters in Redis so every
// replica pointing at it enforces one shared limit. Each decision is one
// Lua script (EVALSHA, falling back to EVAL once per connection that lacks
// it) that reads and writes all the keys involved atomically; settlement is
// another. Keys carry the workspace as Redis Cluster hash tag.
//
// When Redis fails (connection, timeout, or any error reply), the limiter
// marks it down for DownBackoff, logs once, and follows OnRedisDown:
// fail-closed returns errors wrapping ErrLimiterUnavailable; fail-open
// admits against a LocalLimiter with the same limits. Quota spend settled
// while Redis was down is kept in memory and added to Redis when it is back,
// so the fleet-wide quota sees it. After the backoff one call probes Redis;
// success ends the outage, without a restart.
//
// Commands are never retried by the client: a timed-out script may have
// run, and running it again would charge twice.
//
// Settlement does not wait for Redis: Settle queues its script, and the
// limiter's next Admit sends the queue ahead of its own script in one
// pipelined round trip (so this replica's next decision sees every spend
// it settled, in order, as if Settle had waited); with no Admit coming, a
// background flush sends the queue within settleLinger. So a request
// costs one round trip, not two, and the reply does not wait for its
// settlement. Other replicas see a settlement up to settleLinger plus a
// round trip later than they would have: a refund or extra charge of
// tokens, and quota spend, may be that late across the fleet; requests
// are counted at Admit as before, so request limits stay exact.
//
// Safe for concurrent use. Build it with NewRedisLimiter; Close it.
type RedisLimiter struct {
	// table is swapped whole by SetLimits; the local fallback shares it.
	table    *atomic.Pointer[limitTable]
	client   *redis.Client
	prefix   string
	failOpen bool
	backoff  int64 // ms
	local    *LocalLimiter
	log      *slog.Logger
	admitS   *redis.Script
	settleS  *redis.Script
	flushS   *redis.Script
	returnS  *redis.Script
	// leases are the slices of shared buckets this replica holds; nil
	// when leasing is off.
	leases *leases
	linger time.Duration
	// fetches are the prefetches in flight; watch tells a fail-closed
	// limiter that Redis closed its connections (redis_watch.go).
	fetches sync.WaitGroup
	fetchMu sync.Mutex // closing, and fetches.Add against Close's Wait
	closing bool
	watch   redisWatch

	down      atomic.Bool
	downUntil atomic.Int64 // Unix ms before which Redis is not tried

	pendingMu  sync.Mutex
	pending    map[pendingKey]quotaCounter
	hasPending atomic.Bool

	// settles are the settlements queued for Redis (see Settle), one per
	// workspace, credential and month (settleIdx finds it), and lease
	// returns; spare is the other buffer, swapped in when the queue is
	// taken.
	settleMu     sync.Mutex
	settles      []queuedSettle
	settleIdx    map[settleKey]int
	spare        []queuedSettle
	settleWake   chan struct{} // one token: the flusher has work
	settleStop   chan struct{}
	settleDone   chan struct{}
	settleClosed bool
	sending      sync.RWMutex // held by a flush while it sends (sendSettles)
	keyMu        sync.Mutex
	keyCache     map[keyCacheKey][]string

	// scriptsLoaded: the scripts were loaded (SCRIPT LOAD) on the server,
	// so pipelined EVALSHAs find them.
	scriptsLoaded atomic.Bool

	stats struct {
		redisErrors, failOpen, failClosed, lostSettles, outages, recoveries atomic.Uint64
		leaseAdmits, leaseFetches                                           atomic.Uint64
	}
}

type pendingKey struct {
	workspace string
	// credential is "" for the workspace's quota, else a managed key's.
	credential string
	month      int64
}

// LimiterStats are RedisLimiter's counters since it was built, for metrics.
type LimiterStats struct {
	// Down is true while Redis is considered unreachable.
	Down bool
	// RedisErrors counts failed Redis calls (admit, settle, flush).
	RedisErrors uint64
	// FailOpenAdmits counts decisions made on local buckets because Redis
	// was down (fail-open).
	FailOpenAdmits uint64
	// FailClosedAdmits counts Admit calls answered with
	// ErrLimiterUnavailable (fail-closed).
	FailClosedAdmits uint64
	// LostSettlements counts settlements whose token refund or charge
	// could not reach Redis; their quota spend is kept and replayed.
	LostSettlements uint64
	// Outages and Recoveries count transitions to down and back up.
	Outages, Recoveries uint64
	// LeaseAdmits counts decisions answered from lease slices, with no
	// round trip; LeaseFetches the background calls fetching slices.
	LeaseAdmits, LeaseFetches uint64
}

// NewRedisLimiter applies defaults to a copy of cfg, validates it and
// connects lazily (the first call dials). logger receives one line per
// outage and per recovery; nil discards them.
func NewRedisLimiter(cfg LimitsConfig, logger *slog.Logger) (*RedisLimiter, error) {
	t, cfg, err := newLimitTable(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Backend != BackendRedis {
		// Validate checked the redis section only for backend redis.
		cfg.Backend = BackendRedis
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("limits: %w", err)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rc := cfg.Redis
	client := redis.NewClient(&redis.Options{
		Addr:            rc.Addr,
		Password:        rc.Password,
		DB:              rc.DB,
		DialTimeout:     rc.DialTimeout,
		ReadTimeout:     rc.Timeout,
		WriteTimeout:    rc.Timeout,
		PoolTimeout:     rc.Timeout,
		MaxRetries:      -1,
		DialerRetries:   1,
		DisableIdentity: true,
	})
	local := newLocalLimiter(t)
	l := &RedisLimiter{
		table:    &local.table,
		client:   client,
		prefix:   rc.KeyPrefix,
		failOpen: cfg.OnRedisDown == FailOpen,
		backoff:  rc.DownBackoff.Milliseconds(),
		local:    local,
		log:      logger,
		admitS:   redis.NewScript(admitScript),
		settleS:  redis.NewScript(settleScript),
		flushS:   redis.NewScript(flushScript),
		returnS:  redis.NewScript(returnScript),
		pending:  make(map[pendingKey]quotaCounter),
		linger:   settleLinger,

		settleIdx: make(map[settleKey]int),

		settleWake: make(chan struct{}, 1),
		settleStop: make(chan struct{}),
		settleDone: make(chan struct{}),
	}
	if *rc.Lease.Enabled {
		l.leases = newLeases(rc.Lease)
		l.leases.giveBack = func(r leaseReturn, now time.Time) { l.queueReturns([]leaseReturn{r}, now) }
		l.linger = leaseSettleLinger
		l.watch = redisWatch{addr: rc.Addr, dialTimeout: rc.DialTimeout, on: !l.failOpen}
	}
	go l.settleLoop()
	return l, nil
}

// SetLimits replaces the limits (config reload) after validating cfg; the
// state in Redis is kept. Backend, OnRedisDown and Redis are ignored:
// changing them needs a restart.
func (l *RedisLimiter) SetLimits(cfg LimitsConfig) error { return l.local.SetLimits(cfg) }

// Close gives back the lease slices held, sends the settlements still
// queued, then closes the Redis connections. Settlements after Close are
// kept, as when Redis is down.
func (l *RedisLimiter) Close() error {
	if l.leases != nil {
		l.fetchMu.Lock()
		l.closing = true // no prefetch starts after this
		l.fetchMu.Unlock()
		l.fetches.Wait()
		l.queueReturns(l.leases.drain(), time.Now())
		l.watch.close()
	}
	l.settleMu.Lock()
	closed := l.settleClosed
	l.settleClosed = true
	l.settleMu.Unlock()
	if !closed {
		close(l.settleStop)
		<-l.settleDone
	}
	return l.client.Close()
}

// Stats returns the counters.
func (l *RedisLimiter) Stats() LimiterStats {
	return LimiterStats{
		Down:             l.down.Load(),
		RedisErrors:      l.stats.redisErrors.Load(),
		FailOpenAdmits:   l.stats.failOpen.Load(),
		FailClosedAdmits: l.stats.failClosed.Load(),
		LostSettlements:  l.stats.lostSettles.Load(),
		Outages:          l.stats.outages.Load(),
		Recoveries:       l.stats.recoveries.Load(),
		LeaseAdmits:      l.stats.leaseAdmits.Load(),
		LeaseFetches:     l.stats.leaseFetches.Load(),
	}
}

// Admit is LocalLimiter.Admit against the shared state. With leasing on
// it answers from the slices this replica holds when they cover the
// request (no round trip; the next slices are fetched in the background
// when these are half spent), else in one script, which may also hand out
// slices. A workspace with no limits at all is admitted without a round
// trip. Errors are the caller's context ending, or ErrLimiterUnavailable
// (fail-closed).
func (l *RedisLimiter) Admit(ctx context.Context, key LimitKey, reserveTokens int64, now time.Time) (Decision, error) {
	if key.Workspace == "" {
		return Decision{}, errNoWorkspace
	}
	p := l.table.Load().lookup(key)
	if !p.any() {
		return Decision{Allowed: true}, nil
	}
	if !l.tryRedis(now.UnixMilli()) {
		return l.fallback(&p, key, reserveTokens, now, nil)
	}
	if l.leases != nil && l.leaseUsable() {
		if d, ok, fetch := l.leases.admit(&p, key, reserveTokens, now); ok {
			l.stats.leaseAdmits.Add(1)
			if fetch {
				l.prefetch(p, key, reserveTokens, now)
			}
			return d, nil
		}
	}
	res, held, err := l.admitRedis(ctx, &p, key, reserveTokens, now, true)
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, ctx.Err()
		}
		return l.fallback(&p, key, reserveTokens, now, err)
	}
	o := admitOutcome{allowed: res[0] == 1, reason: Reason(res[1]), retryMs: res[2]}
	for s := range numSlots {
		o.level[s], o.reset[s] = res[3+2*s], res[4+2*s]
		if bp := p.b[s]; held[s] > 0 {
			// The slices this replica holds still count as in the bucket.
			o.level[s] = min(o.level[s]+held[s], bp.max())
			o.reset[s] = bp.resetMs(o.level[s])
		}
	}
	return o.decision(&p, key, reserveTokens), nil
}

// admitRedis runs the admit script for key (admitting false: only to take
// lease slices), carrying the queued settlements, and records the slices
// it granted; held is what this replica held before (see install). A
// failure marks Redis down unless ctx ended.
func (l *RedisLimiter) admitRedis(ctx context.Context, p *limitParams, key LimitKey, reserve int64, now time.Time, admitting bool) (res []int64, held [numSlots]int64, err error) {
	nowMs := now.UnixMilli()
	args := make([]any, 0, 28)
	args = append(args, nowMs, reserve)
	for _, b := range p.b {
		args = append(args, b.rate, b.cap)
	}
	args = append(args, p.budgetUsd, p.budgetTok, quotaRetryMs(now), p.keyBudgetUsd, p.keyBudgetTok)
	want := 3 + 2*numSlots
	if l.leases != nil {
		var rets []leaseReturn
		args, rets = l.leases.leaseArgs(args, p, key, reserve, admitting, nowMs)
		l.queueReturns(rets, now)
		want += 8
	}
	res, err = l.sendSettles(ctx, &admitCall{keys: l.keys(key, now), args: args}).Int64Slice()
	if err == nil && len(res) != want {
		err = fmt.Errorf("admit script returned %d values", len(res))
	}
	if err != nil {
		if ctx.Err() == nil {
			l.failed(nowMs, err)
		}
		return nil, held, err
	}
	l.succeeded(ctx, now)
	if l.leases != nil {
		held = l.leases.install(p, key, res, nowMs, monthIndex(now))
	}
	return res, held, nil
}

// leaseUsable says whether leases may answer: not once a fail-closed
// limiter's watch connection saw Redis close (redis_watch.go).
func (l *RedisLimiter) leaseUsable() bool { return l.watch.alive() }

// Settle is LocalLimiter.Settle against the shared state, in one script.
// It runs even if ctx is cancelled (a client that left still spent). When
// Redis is down the token refund or charge is lost (the bucket refills
// anyway) and the quota spend is kept and replayed on recovery; the error
// is then non-nil for logging only.
func (l *RedisLimiter) Settle(ctx context.Context, r Reservation, actualTokens, costUsdMicros int64, now time.Time) error {
	if !r.valid {
		return nil
	}
	actualTokens, costUsdMicros = clampSpend(actualTokens), clampSpend(costUsdMicros)
	p := l.table.Load().lookup(r.key)
	if r.fallback {
		_ = l.local.Settle(ctx, r, actualTokens, costUsdMicros, now)
		l.keep(&p, r.key, actualTokens, costUsdMicros, now)
		return nil
	}
	nowMs := now.UnixMilli()
	if !l.tryRedis(nowMs) {
		l.stats.lostSettles.Add(1)
		l.keep(&p, r.key, actualTokens, costUsdMicros, now)
		return fmt.Errorf("%w: settlement kept for replay", ErrLimiterUnavailable)
	}
	if l.leases != nil {
		r = l.leases.settled(&p, r, actualTokens, costUsdMicros, now)
	}
	l.settleMu.Lock()
	if l.settleClosed {
		l.settleMu.Unlock()
		l.stats.lostSettles.Add(1)
		l.keep(&p, r.key, actualTokens, costUsdMicros, now)
		return fmt.Errorf("%w: limiter closed, settlement kept", ErrLimiterUnavailable)
	}
	l.queueSettle(r, actualTokens, costUsdMicros, now)
	l.settleMu.Unlock()
	select {
	case l.settleWake <- struct{}{}:
	default:
	}
	return nil
}

// Flush sends the settlements queued so far and waits for Redis to take
// them (for tests, and a caller that must see its spend on the other
// replicas at once). Failures are handled as in Settle's background send.
func (l *RedisLimiter) Flush(ctx context.Context) {
	l.sendSettles(ctx, nil)
}

func clampSpend(v int64) int64 { return min(max(v, 0), MaxLimit) }
