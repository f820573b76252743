package policy

// Leases: a replica takes a slice of a shared bucket in one script call
// (debited in Redis at once, so the fleet never admits more than the
// limit) and admits from it in memory until it is spent or expires.

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

const leaseShards = 16

// leases is a replica's slices, sharded by workspace like LocalLimiter.
type leases struct {
	maxSlice float64
	ttlMs    int64
	// giveBack queues units for their bucket (RedisLimiter.queueReturns);
	// called with a shard locked.
	giveBack func(leaseReturn, time.Time)
	seed     maphash.Seed
	shards   [leaseShards]leaseShard
}

type leaseShard struct {
	mu sync.Mutex
	m  map[leaseKey]*lease
	_  [40]byte
}

// leaseKey names a bucket hash: a workspace's (credential "", ws true) or
// a credential's.
type leaseKey struct {
	workspace, credential string
	ws                    bool
}

// lease is what a replica holds of one bucket hash: units of its request
// and token buckets, the shared levels left behind (for the headers), and
// its view of the month's spend.
type lease struct {
	units   [2]int64 // remaining, in bucket units
	granted [2]int64 // the last slice's size: at half spent the next is fetched
	shared  [2]bucket
	expires int64 // Unix ms; the slices are returned from then on
	// params of the slices held, to return them; key and ws name the hash.
	params [2]bucketParams
	key    LimitKey
	ws     bool
	// spend is the month's spend as Redis last said plus this replica's
	// settlements since, trusted until spendUntil (Unix ms).
	spend      quotaCounter
	spendUntil int64
	fetching   bool
}

func newLeases(c LeaseConfig) *leases {
	ls := &leases{maxSlice: c.MaxSlice, ttlMs: c.TTL.Milliseconds(), seed: maphash.MakeSeed()}
	for i := range ls.shards {
		ls.shards[i].m = make(map[leaseKey]*lease)
	}
	return ls
}

func (ls *leases) shard(ws string) *leaseShard {
	return &ls.shards[maphash.String(ls.seed, ws)%leaseShards]
}

// entries returns the workspace's and, when the key needs one, the
// credential's lease; create makes missing ones. Called with sh locked.
func (sh *leaseShard) entries(p *limitParams, key LimitKey, create bool) (ws, cred *lease) {
	get := func(k leaseKey) *lease {
		e := sh.m[k]
		if e == nil && create {
			if len(sh.m) >= maxLeaseEntries {
				sh.sweep()
			}
			e = &lease{key: key, ws: k.ws}
			sh.m[k] = e
		}
		return e
	}
	ws = get(leaseKey{workspace: key.Workspace, ws: true})
	if p.keyed() || p.keyQuota() {
		cred = get(leaseKey{workspace: key.Workspace, credential: key.CredentialID})
	}
	return ws, cred
}

// maxLeaseEntries bounds a shard's map; past it, entries holding nothing
// are dropped.
const maxLeaseEntries = 1024

// sweep drops the entries that hold no slice and fetch nothing. Called
// with sh locked.
func (sh *leaseShard) sweep() {
	for k, e := range sh.m {
		if e.units == [2]int64{} && !e.fetching {
			delete(sh.m, k)
		}
	}
}

// entryOf is the lease that holds slot s.
func entryOf(s int, ws, cred *lease) *lease {
	if s < slotKeyReq {
		return ws
	}
	return cred
}

// spendOK says whether a budget pair is far enough from spent to be
// checked against this replica's view.
func (ls *leases) spendOK(e *lease, month, budgetUsd, budgetTok, nowMs int64) bool {
	if budgetUsd == 0 && budgetTok == 0 {
		return true
	}
	if e == nil || e.spend.month != month || nowMs >= e.spendUntil {
		return false
	}
	usd, tok := e.spend.usd, e.spend.tok
	return (budgetUsd == 0 || usd < budgetUsd-ls.floorOf(budgetUsd)) &&
		(budgetTok == 0 || tok < budgetTok-ls.floorOf(budgetTok))
}

// floorOf is what is kept out of leases of a bucket or budget of size n.
func (ls *leases) floorOf(n int64) int64 {
	return int64(float64(n)*ls.maxSlice) * leaseFloorSlices
}

// admit answers from the leases held, or says ok=false: the caller then
// asks Redis. fetch is set when the caller should prefetch the next
// slices (the lease is half spent or half expired).
func (ls *leases) admit(p *limitParams, key LimitKey, reserve int64, now time.Time) (d Decision, ok, fetch bool) {
	nowMs, month := now.UnixMilli(), monthIndex(now)
	sh := ls.shard(key.Workspace)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws, cred := sh.entries(p, key, false)
	var need [numSlots]int64
	for s := range numSlots {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		e := entryOf(s, ws, cred)
		if e == nil || nowMs >= e.expires {
			return d, false, false
		}
		ls.crowd(e, s, bp, now)
		need[s] = bp.need(s, reserve)
		if e.units[s%2] < need[s] {
			return d, false, false
		}
	}
	if !ls.spendOK(ws, month, p.budgetUsd, p.budgetTok, nowMs) ||
		!ls.spendOK(cred, month, p.keyBudgetUsd, p.keyBudgetTok, nowMs) {
		return d, false, false
	}
	var o admitOutcome
	o.allowed = true
	for s := range numSlots {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		e := entryOf(s, ws, cred)
		e.units[s%2] -= need[s]
		shared, _ := bp.refill(e.shared[s%2], nowMs)
		o.level[s] = min(shared+e.units[s%2], bp.max())
		o.reset[s] = bp.resetMs(o.level[s])
		if !e.fetching && (e.units[s%2] < e.granted[s%2]/2 || nowMs >= e.expires-ls.ttlMs/2) {
			fetch = true
		}
	}
	if !fetch && (p.quota() || p.keyQuota()) && ws != nil && !ws.fetching && nowMs >= ws.spendUntil-ls.ttlMs/2 {
		fetch = true // refresh the spend view
	}
	if fetch {
		for _, e := range [2]*lease{ws, cred} {
			if e != nil {
				e.fetching = true
			}
		}
	}
	return o.decision(p, key, reserve), true, fetch
}

// crowd keeps slot s's slice within the bucket's capacity: when the
// shared bucket, as last seen and refilled since, plus the slice would
// hold more than the capacity, the excess goes back to Redis, which keeps
// what fits (nothing, if the bucket really is full: a full local bucket
// drops what it cannot hold too; more, if other replicas drew on it since).
// Called with the shard locked.
func (ls *leases) crowd(e *lease, s int, bp bucketParams, now time.Time) {
	shared, _ := bp.refill(e.shared[s%2], now.UnixMilli())
	excess := min(shared+e.units[s%2]-bp.max(), e.units[s%2])
	if excess <= 0 {
		return
	}
	e.units[s%2] -= excess
	r := leaseReturn{key: e.key, ws: e.ws, params: e.params, held: e.units}
	r.units[s%2] = excess
	ls.giveBack(r, now)
}

// settled adds a settlement's spend to the replica's view of the month,
// and puts a token refund into the slice held (or takes an extra charge
// from it, when it covers it), so that needs no round trip. It returns
// the reservation left for Redis to settle: a share settled here is
// settled there as if exactly spent.
func (ls *leases) settled(p *limitParams, r Reservation, tokens, usd int64, now time.Time) Reservation {
	nowMs, month := now.UnixMilli(), monthIndex(now)
	sh := ls.shard(r.key.Workspace)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws, cred := sh.entries(p, r.key, false)
	for _, e := range [2]*lease{ws, cred} {
		if e != nil && e.spend.month == month {
			e.spend.add(month, usd, tokens)
		}
	}
	refund := func(e *lease, s int, reserved *int64) {
		bp := p.b[s]
		if e == nil || !bp.limited() || nowMs >= e.expires || e.granted[1] == 0 || *reserved == tokens {
			return
		}
		diff := (*reserved - tokens) * bucketScale
		if e.units[1]+diff < 0 {
			return // a charge the slice cannot cover goes to Redis
		}
		e.units[1] += diff
		ls.crowd(e, s, bp, now)
		*reserved = tokens
	}
	refund(ws, slotWsTok, &r.wsTokens)
	refund(cred, slotKeyTok, &r.keyTokens)
	return r
}

// drain takes every slice held, for Close.
func (ls *leases) drain() []leaseReturn {
	var rets []leaseReturn
	for i := range ls.shards {
		sh := &ls.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if r, ok := e.takeReturn(); ok {
				rets = append(rets, r)
			}
		}
		sh.mu.Unlock()
	}
	return rets
}

// prefetch fetches key's next slices in the background (lease-only call).
func (l *RedisLimiter) prefetch(p limitParams, key LimitKey, reserve int64, now time.Time) {
	l.fetchMu.Lock()
	if l.closing {
		l.fetchMu.Unlock()
		l.leases.fetchFailed(&p, key)
		return
	}
	l.fetches.Add(1)
	l.fetchMu.Unlock()
	l.stats.leaseFetches.Add(1)
	go func() {
		defer l.fetches.Done()
		if _, _, err := l.admitRedis(context.Background(), &p, key, reserve, now, false); err != nil {
			l.leases.fetchFailed(&p, key)
		}
	}()
}
