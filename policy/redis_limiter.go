package policy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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

	down      atomic.Bool
	downUntil atomic.Int64 // Unix ms before which Redis is not tried

	pendingMu  sync.Mutex
	pending    map[pendingKey]quotaCounter
	hasPending atomic.Bool

	// settles are the settlements queued for Redis (see Settle); spare is
	// the other buffer, swapped in when the queue is taken.
	settleMu     sync.Mutex
	settles      []queuedSettle
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
		pending:  make(map[pendingKey]quotaCounter),

		settleWake: make(chan struct{}, 1),
		settleStop: make(chan struct{}),
		settleDone: make(chan struct{}),
	}
	go l.settleLoop()
	return l, nil
}

// settleLinger is how long a queued settlement waits for an Admit to
// carry it before the flusher sends it alone. At a few hundred requests
// per second and more, an Admit nearly always comes first.
const settleLinger = 2 * time.Millisecond

// queuedSettle is one settlement's script call, with what keep needs
// should Redis fail it.
type queuedSettle struct {
	key         LimitKey
	keys        []string
	args        []any
	tokens, usd int64
	now         time.Time
}

// SetLimits replaces the limits (config reload) after validating cfg; the
// state in Redis is kept. Backend, OnRedisDown and Redis are ignored:
// changing them needs a restart.
func (l *RedisLimiter) SetLimits(cfg LimitsConfig) error { return l.local.SetLimits(cfg) }

// Close sends the settlements still queued, then closes the Redis
// connections. Settlements after Close are kept, as when Redis is down.
func (l *RedisLimiter) Close() error {
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

// settleLoop sends queued settlements that no Admit carried within
// settleLinger; at Close it sends the rest.
func (l *RedisLimiter) settleLoop() {
	defer close(l.settleDone)
	t := time.NewTimer(settleLinger)
	t.Stop()
	for {
		select {
		case <-l.settleStop:
			l.sendSettles(context.Background(), nil)
			return
		case <-l.settleWake:
		}
		t.Reset(settleLinger)
		select {
		case <-l.settleStop:
			t.Stop()
			l.sendSettles(context.Background(), nil)
			return
		case <-t.C:
		}
		l.sendSettles(context.Background(), nil)
	}
}

// takeSettles returns the queued settlements, emptying the queue. The
// caller gives the slice back with putSettles once sent.
func (l *RedisLimiter) takeSettles() []queuedSettle {
	l.settleMu.Lock()
	q := l.settles
	l.settles = l.spare[:0]
	l.spare = nil
	l.settleMu.Unlock()
	return q
}

func (l *RedisLimiter) putSettles(q []queuedSettle) {
	clear(q) // drop keys and args
	l.settleMu.Lock()
	if l.spare == nil && cap(q) <= 1024 {
		l.spare = q[:0]
	}
	l.settleMu.Unlock()
}

// sendSettles sends the queued settlements and, when admit is not nil,
// that Admit's script after them, all in one pipelined round trip. It
// returns admit's reply (nil without admit). A settlement Redis fails is
// counted and its quota spend kept for replay, as when Settle could not
// reach Redis.
func (l *RedisLimiter) sendSettles(ctx context.Context, admit *admitCall) *redis.Cmd {
	// A settlement queued before an Admit was called lands before that
	// Admit runs: either the Admit carries it, or the flush that took it
	// holds sending for the whole send, and the Admit waits for it.
	var q []queuedSettle
	if admit == nil {
		l.sending.Lock()
		defer l.sending.Unlock()
		q = l.takeSettles()
	} else {
		l.sending.RLock()
		q = l.takeSettles()
		l.sending.RUnlock()
	}
	if len(q) == 0 && admit == nil {
		l.putSettles(q)
		return nil
	}
	var ac *redis.Cmd
	var cmds []*redis.Cmd
	if len(q) == 0 {
		ac = l.admitS.Run(ctx, l.client, admit.keys, admit.args...)
	} else {
		// The spend must land even if the request that carries it ends.
		ctx = context.WithoutCancel(ctx)
		if !l.scriptsLoaded.Load() {
			// Loaded first, so the settlements do not fail NOSCRIPT and
			// go again after the Admit behind them.
			if l.settleS.Load(ctx, l.client).Err() == nil && l.admitS.Load(ctx, l.client).Err() == nil {
				l.scriptsLoaded.Store(true)
			}
		}
		cmds = make([]*redis.Cmd, len(q))
		pipe := l.client.Pipeline()
		for i := range q {
			cmds[i] = l.settleS.EvalSha(ctx, pipe, q[i].keys, q[i].args...)
		}
		if admit != nil {
			ac = l.admitS.EvalSha(ctx, pipe, admit.keys, admit.args...)
		}
		_, _ = pipe.Exec(ctx)
		// A server without the scripts (restarted, flushed) answers
		// NOSCRIPT to each without running it: those go again, one by
		// one, through Run, which loads the script (after the Admit, this
		// once).
		for i, c := range cmds {
			if isNoScript(c.Err()) {
				l.scriptsLoaded.Store(false)
				cmds[i] = l.settleS.Run(ctx, l.client, q[i].keys, q[i].args...)
			}
		}
		if ac != nil && isNoScript(ac.Err()) {
			ac = l.admitS.Run(ctx, l.client, admit.keys, admit.args...)
		}
	}
	ok := false
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			r := &q[i]
			// One failed round trip is one Redis error: when the Admit
			// carrying these failed too, Admit counts it.
			if admit == nil || ac.Err() == nil {
				l.failed(r.now.UnixMilli(), err)
			}
			l.stats.lostSettles.Add(1)
			p := l.table.Load().lookup(r.key)
			l.keep(&p, r.key, r.tokens, r.usd, r.now)
			continue
		}
		ok = true
	}
	if ok && admit == nil {
		l.succeeded(ctx, q[len(q)-1].now)
	}
	l.putSettles(q)
	return ac
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// admitCall is an Admit's script call.
type admitCall struct {
	keys []string
	args []any
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
	}
}

// keys returns the script's KEYS for k in now's month. They are built
// once per workspace, credential and month and then shared (read only):
// eight allocations per call otherwise, twice per request.
func (l *RedisLimiter) keys(k LimitKey, now time.Time) []string {
	m := monthIndex(now)
	ck := keyCacheKey{k.Workspace, k.CredentialID, m}
	l.keyMu.Lock()
	keys, ok := l.keyCache[ck]
	l.keyMu.Unlock()
	if ok {
		return keys
	}
	ws := l.prefix + "{" + k.Workspace + "}:"
	keys = []string{ws + "w", ws + "k:" + k.CredentialID, l.quotaKey(k.Workspace, "", m), l.quotaKey(k.Workspace, k.CredentialID, m)}
	l.keyMu.Lock()
	if len(l.keyCache) >= maxKeyCache || l.keyCache == nil {
		l.keyCache = make(map[keyCacheKey][]string) // start over: a bound, not an LRU
	}
	l.keyCache[ck] = keys
	l.keyMu.Unlock()
	return keys
}

// maxKeyCache bounds the keys cache (credentials × months seen).
const maxKeyCache = 4096

type keyCacheKey struct {
	workspace, credential string
	month                 int64
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
	res, err := l.sendSettles(ctx, &admitCall{keys: l.keys(key, now), args: args}).Int64Slice()
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
	qs := queuedSettle{key: r.key, keys: l.keys(r.key, now), args: args, tokens: actualTokens, usd: costUsdMicros, now: now}
	l.settleMu.Lock()
	if l.settleClosed {
		l.settleMu.Unlock()
		l.stats.lostSettles.Add(1)
		l.keep(&p, r.key, actualTokens, costUsdMicros, now)
		return fmt.Errorf("%w: limiter closed, settlement kept", ErrLimiterUnavailable)
	}
	l.settles = append(l.settles, qs)
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
