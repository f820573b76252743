package policy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
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

	down      atomic.Bool
	downUntil atomic.Int64 // Unix ms before which Redis is not tried

	pendingMu  sync.Mutex
	pending    map[pendingKey]quotaCounter
	hasPending atomic.Bool

	stats struct {
		redisErrors, failOpen, failClosed, lostSettles, outages, recoveries atomic.Uint64
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
	return &RedisLimiter{
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
		pending:  make(map[pendingKey]quotaCounter),
	}, nil
}

// SetLimits replaces the limits (config reload) after validating cfg; the
// state in Redis is kept. Backend, OnRedisDown and Redis are ignored:
// changing them needs a restart.
func (l *RedisLimiter) SetLimits(cfg LimitsConfig) error { return l.local.SetLimits(cfg) }

// Close closes the Redis connections.
func (l *RedisLimiter) Close() error { return l.client.Close() }

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
	}
}

func (l *RedisLimiter) keys(k LimitKey, now time.Time) []string {
	ws := l.prefix + "{" + k.Workspace + "}:"
	m := monthIndex(now)
	return []string{ws + "w", ws + "k:" + k.CredentialID, l.quotaKey(k.Workspace, "", m), l.quotaKey(k.Workspace, k.CredentialID, m)}
}

// quotaKey names a month's spend hash: the workspace's (credential "") or
// a managed key's own.
func (l *RedisLimiter) quotaKey(ws, credential string, month int64) string {
	var b [6]byte
	ym := strconv.AppendInt(b[:0], month/12*100+month%12+1, 10)
	if credential != "" {
		return l.prefix + "{" + ws + "}:kq:" + string(ym) + ":" + credential
	}
	return l.prefix + "{" + ws + "}:q:" + string(ym)
}

// quotaTTL is how long a quota hash written at now must live, in ms: until
// a day after now's month.
func quotaTTL(now time.Time) int64 {
	return nextMonthStart(now).Add(24 * time.Hour).Sub(now).Milliseconds()
}

// Admit is LocalLimiter.Admit against the shared state, in one script. A
// workspace with no limits at all is admitted without a round trip. Errors
// are the caller's context ending, or ErrLimiterUnavailable (fail-closed).
func (l *RedisLimiter) Admit(ctx context.Context, key LimitKey, reserveTokens int64, now time.Time) (Decision, error) {
	if key.Workspace == "" {
		return Decision{}, errNoWorkspace
	}
	p := l.table.Load().lookup(key)
	if !p.any() {
		return Decision{Allowed: true}, nil
	}
	nowMs := now.UnixMilli()
	if !l.tryRedis(nowMs) {
		return l.fallback(&p, key, reserveTokens, now, nil)
	}
	args := make([]any, 0, 15)
	args = append(args, nowMs, reserveTokens)
	for _, b := range p.b {
		args = append(args, b.rate, b.cap)
	}
	args = append(args, p.budgetUsd, p.budgetTok, quotaRetryMs(now), p.keyBudgetUsd, p.keyBudgetTok)
	res, err := l.admitS.Run(ctx, l.client, l.keys(key, now), args...).Int64Slice()
	if err == nil && len(res) != 3+2*numSlots {
		err = fmt.Errorf("admit script returned %d values", len(res))
	}
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, ctx.Err()
		}
		l.failed(nowMs, err)
		return l.fallback(&p, key, reserveTokens, now, err)
	}
	l.succeeded(ctx, now)
	o := admitOutcome{allowed: res[0] == 1, reason: Reason(res[1]), retryMs: res[2]}
	for s := range numSlots {
		o.level[s], o.reset[s] = res[3+2*s], res[4+2*s]
	}
	return o.decision(&p, key, reserveTokens), nil
}

func (l *RedisLimiter) fallback(p *limitParams, key LimitKey, reserve int64, now time.Time, cause error) (Decision, error) {
	if !l.failOpen {
		l.stats.failClosed.Add(1)
		if cause == nil {
			return Decision{}, fmt.Errorf("%w: redis down, retrying after backoff", ErrLimiterUnavailable)
		}
		return Decision{}, fmt.Errorf("%w: %v", ErrLimiterUnavailable, cause)
	}
	l.stats.failOpen.Add(1)
	d := l.local.admit(p, key, reserve, now)
	d.Reservation.fallback = d.Reservation.valid
	return d, nil
}

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
	ctx = context.WithoutCancel(ctx)
	track, trackKey := "0", "0"
	if p.quota() {
		track = "1"
	}
	if p.keyQuota() {
		trackKey = "1"
	}
	args := make([]any, 0, 16)
	args = append(args, nowMs, actualTokens, costUsdMicros, r.wsTokens, r.keyTokens)
	for _, b := range p.b {
		args = append(args, b.rate, b.cap)
	}
	args = append(args, track, quotaTTL(now), trackKey)
	if err := l.settleS.Run(ctx, l.client, l.keys(r.key, now), args...).Err(); err != nil {
		l.failed(nowMs, err)
		l.stats.lostSettles.Add(1)
		l.keep(&p, r.key, actualTokens, costUsdMicros, now)
		return fmt.Errorf("%w: settle: %v", ErrLimiterUnavailable, err)
	}
	l.succeeded(ctx, now)
	return nil
}

func clampSpend(v int64) int64 { return min(max(v, 0), MaxLimit) }

// tryRedis says whether to call Redis now: always while it is up; while it
// is down, once per backoff period (the caller that wins the swap probes).
func (l *RedisLimiter) tryRedis(nowMs int64) bool {
	if !l.down.Load() {
		return true
	}
	until := l.downUntil.Load()
	return nowMs >= until && l.downUntil.CompareAndSwap(until, nowMs+l.backoff)
}

func (l *RedisLimiter) failed(nowMs int64, err error) {
	l.stats.redisErrors.Add(1)
	l.downUntil.Store(nowMs + l.backoff)
	if l.down.CompareAndSwap(false, true) {
		l.stats.outages.Add(1)
		mode := "fail-closed"
		if l.failOpen {
			mode = "fail-open"
		}
		l.log.Warn("redis limiter unreachable", "err", err.Error(), "onRedisDown", mode, "backoff", time.Duration(l.backoff)*time.Millisecond)
	}
}

func (l *RedisLimiter) succeeded(ctx context.Context, now time.Time) {
	if l.down.Load() && l.down.CompareAndSwap(true, false) {
		l.stats.recoveries.Add(1)
		l.log.Info("redis limiter reachable again")
	}
	if l.hasPending.Load() {
		l.flush(ctx, now)
	}
}

// keep remembers quota spend that Redis has not seen: the workspace's
// and, for a managed key with its own budget, the key's.
func (l *RedisLimiter) keep(p *limitParams, key LimitKey, tokens, usd int64, now time.Time) {
	if (!p.quota() && !p.keyQuota()) || (tokens == 0 && usd == 0) {
		return
	}
	l.pendingMu.Lock()
	add := func(k pendingKey) {
		q := l.pending[k]
		q.month = k.month
		q.usd += usd
		q.tok += tokens
		l.pending[k] = q
	}
	if p.quota() {
		add(pendingKey{workspace: key.Workspace, month: monthIndex(now)})
	}
	if p.keyQuota() {
		add(pendingKey{workspace: key.Workspace, credential: key.CredentialID, month: monthIndex(now)})
	}
	l.hasPending.Store(true)
	l.pendingMu.Unlock()
}

// flush adds the kept spend to Redis; what fails stays kept.
func (l *RedisLimiter) flush(ctx context.Context, now time.Time) {
	l.pendingMu.Lock()
	batch := l.pending
	l.pending = make(map[pendingKey]quotaCounter)
	l.hasPending.Store(false)
	l.pendingMu.Unlock()
	ctx = context.WithoutCancel(ctx)
	for k, q := range batch {
		ttl := nextMonthStart(monthStart(k.month)).Add(24 * time.Hour).Sub(now).Milliseconds()
		if ttl <= 0 {
			delete(batch, k) // that month is over; its counter no longer matters
			continue
		}
		key := l.quotaKey(k.workspace, k.credential, k.month)
		if err := l.flushS.Run(ctx, l.client, []string{key}, q.usd, q.tok, ttl).Err(); err != nil {
			l.failed(now.UnixMilli(), err)
			l.pendingMu.Lock()
			for k, q := range batch {
				p := l.pending[k]
				p.month, p.usd, p.tok = k.month, p.usd+q.usd, p.tok+q.tok
				l.pending[k] = p
			}
			l.hasPending.Store(true)
			l.pendingMu.Unlock()
			return
		}
		delete(batch, k)
	}
}

func monthStart(month int64) time.Time {
	return time.Date(int(month/12), time.Month(month%12+1), 1, 0, 0, 0, 0, time.UTC)
}
