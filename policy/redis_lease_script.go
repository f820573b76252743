package policy

// The leases' side of the Redis round trip: the admit script's lease
// arguments (slices wanted, slices returned) and what its reply installs.

// leaseArgs appends the lease arguments of the admit script (ARGV[16..28])
// for a call admitting (or not) key with p, and takes for return the
// slices that expired. Slices are wanted only when every limited bucket
// of the key can have one worth taking: a key that must ask Redis anyway
// would leave the others idle.
func (ls *leases) leaseArgs(args []any, p *limitParams, key LimitKey, reserve int64, admitting bool, nowMs int64) ([]any, []leaseReturn) {
	var want, floor, least [numSlots]int64
	all := true
	for s := range numSlots {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		want[s] = int64(float64(bp.max()) * ls.maxSlice)
		floor[s] = want[s] * leaseFloorSlices
		least[s] = 2 * max(bp.need(s, reserve), bucketScale)
		if want[s] < least[s] {
			all = false
		}
	}
	if !all {
		want = [numSlots]int64{}
	}
	flag := 1
	if !admitting {
		flag = 0
	}
	args = append(args, flag)
	for _, v := range [3]*[numSlots]int64{&want, &floor, &least} {
		for s := range numSlots {
			args = append(args, v[s])
		}
	}
	sh := ls.shard(key.Workspace)
	sh.mu.Lock()
	ws, cred := sh.entries(p, key, true)
	var rets []leaseReturn
	for i, e := range [2]*lease{ws, cred} {
		// An admitting call gives back what is held of a bucket hash whose
		// slices could not cover it: its decision must see those buckets
		// whole, as a local one would (the call may hand out new slices).
		// Slices that could are kept for the key's other callers (the
		// workspace's other credentials). A prefetch gives back only
		// expired slices.
		if e != nil && (nowMs >= e.expires || admitting && !e.covers(p, i*2, reserve)) {
			if r, ok := e.takeReturn(); ok {
				rets = append(rets, r)
			}
		}
	}
	sh.mu.Unlock()
	return args, rets
}

// covers says whether e's slices hold one admission's need of the slots
// first and first+1 (a hash's request and token buckets).
func (e *lease) covers(p *limitParams, first int, reserve int64) bool {
	for s := first; s < first+2; s++ {
		if bp := p.b[s]; bp.limited() && e.units[s%2] < bp.need(s, reserve) {
			return false
		}
	}
	return true
}

// leaseReturn is unspent units of a lease going back to their bucket hash.
type leaseReturn struct {
	key    LimitKey
	ws     bool
	params [2]bucketParams
	units  [2]int64
	// held is what the replica keeps of the slices (an excess given back
	// while the rest is used on).
	held [2]int64
}

// takeReturn empties e's slices into a return, if it holds any.
func (e *lease) takeReturn() (leaseReturn, bool) {
	if e.units == [2]int64{} {
		return leaseReturn{}, false
	}
	r := leaseReturn{key: e.key, ws: e.ws, params: e.params, units: e.units}
	e.units, e.granted = [2]int64{}, [2]int64{}
	return r, true
}

// install records a reply of the admit script that carried lease
// arguments: the slices granted, the shared levels left, the spend. It
// returns the units this replica held before, which the levels the reply
// reports leave out.
func (ls *leases) install(p *limitParams, key LimitKey, res []int64, nowMs, month int64) (held [numSlots]int64) {
	sh := ls.shard(key.Workspace)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws, cred := sh.entries(p, key, true)
	for _, e := range [2]*lease{ws, cred} {
		if e != nil {
			e.fetching = false
			e.spendUntil = nowMs + ls.ttlMs
		}
	}
	for s := range numSlots {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		e, g := entryOf(s, ws, cred), res[11+s]
		held[s] = e.units[s%2]
		if g > 0 {
			// A remainder still held joins the new slice and lives
			// as long.
			e.units[s%2] += g
			e.granted[s%2] = g
			e.expires = nowMs + ls.ttlMs
		}
		e.params[s%2] = bp
		e.shared[s%2] = bucket{level: res[3+2*s] - g, last: nowMs, set: true}
	}
	ws.spend = quotaCounter{month: month, usd: res[15], tok: res[16]}
	if cred != nil {
		cred.spend = quotaCounter{month: month, usd: res[17], tok: res[18]}
	}
	return held
}

// fetchFailed ends a prefetch that failed.
func (ls *leases) fetchFailed(p *limitParams, key LimitKey) {
	sh := ls.shard(key.Workspace)
	sh.mu.Lock()
	ws, cred := sh.entries(p, key, false)
	for _, e := range [2]*lease{ws, cred} {
		if e != nil {
			e.fetching = false
		}
	}
	sh.mu.Unlock()
}
