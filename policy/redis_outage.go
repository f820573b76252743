package policy

// Redis down: the onRedisDown fallback, spending kept locally, and
// handing it to Redis once it is back.

import (
	"context"
	"fmt"
	"time"
)

// fallback answers an Admit Redis could not (cause) as limits.onRedisDown
// says.
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
	l.watch.ensure()
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
