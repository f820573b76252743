package policy

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const (
	localShards = 64
	// Every sweepEvery operations a shard looks at up to sweepSample
	// workspaces (Go's random map iteration order picks them) and drops
	// what is full and idle, so memory follows the active set with no
	// background goroutine.
	sweepEvery  = 32
	sweepSample = 48
)

// LocalLimiter keeps token buckets and quota counters in this process's
// memory: exact and fast, but each replica of a fleet enforces the limits on
// its own and the counters restart with the process (use RedisLimiter to
// share them). State is sharded by workspace, one mutex per shard, so a
// workspace's buckets and its credentials' buckets change under one lock
// and a refused request takes nothing from any of them. A bucket that has
// refilled to full is the same as no bucket and is evicted lazily; a
// workspace's quota counter lives until its month is over.
//
// Every decision is a pure function of the state and the now passed in.
// Safe for concurrent use. Build it with NewLocalLimiter.
type LocalLimiter struct {
	// table is swapped whole by SetLimits (config reload); the buckets
	// stay.
	table  atomic.Pointer[limitTable]
	seed   maphash.Seed
	shards [localShards]localShard
}

type localShard struct {
	mu  sync.Mutex
	ws  map[string]*localWorkspace
	ops uint32
	_   [40]byte // keep shards on separate cache lines
}

type localWorkspace struct {
	b     [2]bucket // requests, tokens
	keys  map[string]*[2]bucket
	quota quotaCounter
	// kquota counts managed keys' own monthly budgets, by credential.
	kquota map[string]*quotaCounter
}

// NewLocalLimiter applies defaults to a copy of cfg and validates it
// (Backend and Redis are ignored).
func NewLocalLimiter(cfg LimitsConfig) (*LocalLimiter, error) {
	t, _, err := newLimitTable(cfg)
	if err != nil {
		return nil, err
	}
	return newLocalLimiter(t), nil
}

func newLocalLimiter(t *limitTable) *LocalLimiter {
	l := &LocalLimiter{seed: maphash.MakeSeed()}
	l.table.Store(t)
	for i := range l.shards {
		l.shards[i].ws = make(map[string]*localWorkspace)
	}
	return l
}

func (l *LocalLimiter) shard(ws string) *localShard {
	return &l.shards[maphash.String(l.seed, ws)%localShards]
}

// Admit checks the workspace's quota, then the workspace's and the
// credential's request and token buckets at now, reserving 1 request and
// reserveTokens tokens (clamped to each bucket's capacity) from each when
// all pass. The error is non-nil only for an empty workspace.
func (l *LocalLimiter) Admit(_ context.Context, key LimitKey, reserveTokens int64, now time.Time) (Decision, error) {
	if key.Workspace == "" {
		return Decision{}, errNoWorkspace
	}
	p := l.table.Load().lookup(key)
	if !p.any() {
		return Decision{Allowed: true}, nil
	}
	return l.admit(&p, key, reserveTokens, now), nil
}

// SetLimits replaces the limits (config reload) after validating cfg; the
// buckets' levels and the quota counters are kept. Backend, OnRedisDown
// and Redis are ignored: changing them needs a restart.
func (l *LocalLimiter) SetLimits(cfg LimitsConfig) error {
	t, _, err := newLimitTable(cfg)
	if err != nil {
		return err
	}
	l.table.Store(t)
	return nil
}

func (l *LocalLimiter) admit(p *limitParams, key LimitKey, reserve int64, now time.Time) Decision {
	nowMs, month := now.UnixMilli(), monthIndex(now)
	sh := l.shard(key.Workspace)
	sh.mu.Lock()
	w := sh.workspace(key.Workspace)
	var kb *[2]bucket
	if p.keyed() {
		kb = w.key(key.CredentialID)
	}
	var st [numSlots]bucket
	st[slotWsReq], st[slotWsTok] = w.b[0], w.b[1]
	if kb != nil {
		st[slotKeyReq], st[slotKeyTok] = kb[0], kb[1]
	}
	qr, qretry := ReasonNone, int64(0)
	if p.quota() {
		usd, tok := w.quota.at(month)
		qr = checkQuota(p, usd, tok)
	}
	if qr == ReasonNone && p.keyQuota() {
		usd, tok := w.keyQuota(key.CredentialID).at(month)
		qr = checkBudget(p.keyBudgetUsd, p.keyBudgetTok, usd, tok)
	}
	if qr != ReasonNone {
		qretry = quotaRetryMs(now)
	}
	o := decideAdmit(p, &st, nowMs, reserve, qr, qretry)
	if o.allowed {
		w.b[0], w.b[1] = st[slotWsReq], st[slotWsTok]
		if kb != nil {
			kb[0], kb[1] = st[slotKeyReq], st[slotKeyTok]
		}
	}
	sh.tick(l.table.Load(), nowMs, month)
	sh.mu.Unlock()
	return o.decision(p, key, reserve)
}

// Settle refunds the reservation's unused tokens to the token buckets, or
// charges what was used beyond it, and adds actualTokens and costUsdMicros
// to the workspace's monthly quota counters (the month of now). It never
// fails; the error is for the interface the gateway shares with
// RedisLimiter.
func (l *LocalLimiter) Settle(_ context.Context, r Reservation, actualTokens, costUsdMicros int64, now time.Time) error {
	if !r.valid {
		return nil
	}
	actualTokens, costUsdMicros = clampSpend(actualTokens), clampSpend(costUsdMicros)
	p := l.table.Load().lookup(r.key)
	nowMs, month := now.UnixMilli(), monthIndex(now)
	sh := l.shard(r.key.Workspace)
	sh.mu.Lock()
	w := sh.workspace(r.key.Workspace)
	if bp := p.b[slotWsTok]; bp.limited() {
		settleBucket(bp, &w.b[1], nowMs, r.wsTokens, actualTokens)
	}
	if bp := p.b[slotKeyTok]; bp.limited() {
		settleBucket(bp, &w.key(r.key.CredentialID)[1], nowMs, r.keyTokens, actualTokens)
	}
	if p.quota() {
		w.quota.add(month, costUsdMicros, actualTokens)
	}
	if p.keyQuota() {
		w.keyQuota(r.key.CredentialID).add(month, costUsdMicros, actualTokens)
	}
	sh.tick(l.table.Load(), nowMs, month)
	sh.mu.Unlock()
	return nil
}

// Close releases nothing; it exists so both limiters close alike.
func (l *LocalLimiter) Close() error { return nil }

func (sh *localShard) workspace(id string) *localWorkspace {
	w := sh.ws[id]
	if w == nil {
		w = &localWorkspace{}
		sh.ws[id] = w
	}
	return w
}

func (w *localWorkspace) key(id string) *[2]bucket {
	if w.keys == nil {
		w.keys = make(map[string]*[2]bucket)
	}
	b := w.keys[id]
	if b == nil {
		b = new([2]bucket)
		w.keys[id] = b
	}
	return b
}

func (w *localWorkspace) keyQuota(id string) *quotaCounter {
	if w.kquota == nil {
		w.kquota = make(map[string]*quotaCounter)
	}
	q := w.kquota[id]
	if q == nil {
		q = &quotaCounter{}
		w.kquota[id] = q
	}
	return q
}

// tick counts an operation and sometimes sweeps a sample. Called with the
// shard locked.
func (sh *localShard) tick(t *limitTable, nowMs, month int64) {
	sh.ops++
	if sh.ops%sweepEvery == 0 {
		sh.sweep(t, nowMs, month, sweepSample)
	}
}

// sweep drops up to n idle workspaces (n <= 0: all) and the idle credential
// buckets of the workspaces it looks at. Idle means every bucket is full at
// nowMs (so a fresh bucket is equivalent) and no quota counter of the
// current month is held. Called with the shard locked.
func (sh *localShard) sweep(t *limitTable, nowMs, month int64, n int) {
	for id, w := range sh.ws {
		p := t.lookup(LimitKey{Workspace: id})
		for kid, kb := range w.keys {
			kp := t.lookup(LimitKey{Workspace: id, CredentialID: kid})
			if pairFull(kp.b[slotKeyReq], kp.b[slotKeyTok], kb, nowMs) {
				delete(w.keys, kid)
			}
		}
		for kid, q := range w.kquota {
			if q.month != month || (q.usd == 0 && q.tok == 0) {
				delete(w.kquota, kid)
			}
		}
		if len(w.keys) == 0 && len(w.kquota) == 0 && pairFull(p.b[slotWsReq], p.b[slotWsTok], &w.b, nowMs) &&
			(w.quota.month != month || (w.quota.usd == 0 && w.quota.tok == 0)) {
			delete(sh.ws, id)
		}
		if n--; n == 0 {
			return
		}
	}
}

func pairFull(req, tok bucketParams, b *[2]bucket, nowMs int64) bool {
	return bucketFull(req, b[0], nowMs) && bucketFull(tok, b[1], nowMs)
}

func bucketFull(p bucketParams, b bucket, nowMs int64) bool {
	if !b.set || !p.limited() {
		return true
	}
	level, _ := p.refill(b, nowMs)
	return level >= p.max()
}

// Sweep drops every idle bucket and finished quota counter at now. Lazy
// sweeping already bounds memory; Sweep is for tests and for callers that
// want memory back after a burst of one-off workspaces.
func (l *LocalLimiter) Sweep(now time.Time) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		sh.sweep(l.table.Load(), now.UnixMilli(), monthIndex(now), 0)
		sh.mu.Unlock()
	}
}

// size counts the workspaces and credential buckets held, for tests.
func (l *LocalLimiter) size() (workspaces, keys int) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		workspaces += len(sh.ws)
		for _, w := range sh.ws {
			keys += len(w.keys)
		}
		sh.mu.Unlock()
	}
	return workspaces, keys
}
