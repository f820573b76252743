package policy

import (
	"errors"
	"strconv"
	"time"
)

// ErrLimiterUnavailable is wrapped by Admit when the shared limit store
// (Redis) cannot be reached and onRedisDown is fail-closed. The gateway maps
// it to 503.
var ErrLimiterUnavailable = errors.New("rate limiter unavailable")

// errNoWorkspace is a programmer error: every principal has a workspace.
var errNoWorkspace = errors.New("limits: empty workspace")

// LimitKey names whose buckets a request draws from: its workspace's and its
// credential's.
type LimitKey struct {
	// Workspace is Principal.Workspace. Required.
	Workspace string
	// CredentialID is Principal.CredentialID; per-key limits look it up.
	CredentialID string
	// Own is the credential's own limits (Principal.Limits, a managed
	// key's); nil uses the configured ones.
	Own *CredentialLimits
}

// Reason says why Admit refused a request.
type Reason uint8

// Rejection reasons. The first failing check names the reason, in the order
// quota (cost, then tokens), workspace buckets, credential buckets, and
// within each pair requests before tokens.
const (
	// ReasonNone: admitted.
	ReasonNone Reason = iota
	// ReasonRequests: a request bucket is empty (429 rate_limited).
	ReasonRequests
	// ReasonTokens: a token bucket cannot cover the reservation (429
	// rate_limited).
	ReasonTokens
	// ReasonQuotaCost: the month's USD budget is spent (429 quota_exceeded).
	ReasonQuotaCost
	// ReasonQuotaTokens: the month's token quota is spent (429
	// quota_exceeded).
	ReasonQuotaTokens
)

// String names the reason for logs and messages.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonRequests:
		return "request rate limit"
	case ReasonTokens:
		return "token rate limit"
	case ReasonQuotaCost:
		return "monthly budget"
	case ReasonQuotaTokens:
		return "monthly token quota"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// LimitStatus is the state of one dimension (requests or tokens) as the
// X-RateLimit-* headers report it: the tighter of the workspace and
// credential buckets. The zero value means the dimension is unlimited and
// its headers are omitted.
type LimitStatus struct {
	// Limit is the bucket's capacity (X-RateLimit-Limit-*).
	Limit int64
	// Remaining is what the bucket holds after this decision, never
	// negative (X-RateLimit-Remaining-*).
	Remaining int64
	// Reset is how long until the bucket is full again, whole
	// milliseconds (X-RateLimit-Reset-*).
	Reset time.Duration
}

// Decision is Admit's answer. Allowed decisions carry a Reservation that
// must be passed to Settle exactly once.
type Decision struct {
	// Allowed is true when every bucket and quota passed; then the
	// buckets have been charged.
	Allowed bool
	// Reason names the failed check when !Allowed.
	Reason Reason
	// RetryAfter is when the failed check could pass: bucket refill time,
	// or until the next UTC month for a quota. Zero when Allowed.
	RetryAfter time.Duration
	// Requests and Tokens feed the X-RateLimit-* headers, on every reply.
	Requests LimitStatus
	Tokens   LimitStatus
	// Reservation is what Settle needs. Zero when !Allowed.
	Reservation Reservation
}

// AppendDuration appends d as time.Duration.String would print it, for
// non-negative durations in whole milliseconds ("0s", "20ms", "1.5s",
// "6m0s", "1h0m0s"), without allocating. Finer parts are truncated to the
// millisecond.
func AppendDuration(dst []byte, d time.Duration) []byte {
	ms := int64(d / time.Millisecond)
	if ms <= 0 {
		return append(dst, "0s"...)
	}
	if ms < 1000 {
		dst = strconv.AppendInt(dst, ms, 10)
		return append(dst, "ms"...)
	}
	sec, frac := ms/1000, ms%1000
	if h := sec / 3600; h > 0 {
		dst = strconv.AppendInt(dst, h, 10)
		dst = append(dst, 'h')
	}
	if sec >= 60 {
		dst = strconv.AppendInt(dst, sec/60%60, 10)
		dst = append(dst, 'm')
	}
	dst = strconv.AppendInt(dst, sec%60, 10)
	if frac > 0 {
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 3
		for digits[n-1] == '0' {
			n--
		}
		dst = append(dst, '.')
		dst = append(dst, digits[:n]...)
	}
	return append(dst, 's')
}

// Reservation is what Admit took from the token buckets, handed back to
// Settle. The zero value reserves nothing and settles nothing. It is a plain
// value: copy it freely, settle it once.
type Reservation struct {
	key LimitKey
	// tokens taken from the workspace and credential token buckets (each
	// clamped to its capacity).
	wsTokens, keyTokens int64
	valid               bool
	// fallback marks a reservation made on the local buckets while Redis
	// was down (fail-open).
	fallback bool
}

// Key is the LimitKey the reservation was made for.
func (r Reservation) Key() LimitKey { return r.key }

// Tokens is the number of tokens reserved (the largest of the buckets'
// shares; 0 when no token bucket applies).
func (r Reservation) Tokens() int64 { return max(r.wsTokens, r.keyTokens) }

// bucket is a token bucket's stored state: its level in bucket units at
// time last (Unix ms). An unset bucket is full. level may be negative: a
// settlement charged more than was reserved and the debt refills first.
type bucket struct {
	level int64
	last  int64
	set   bool
}

// minLevel bounds a bucket's debt, to keep Lua's doubles exact.
const minLevel = -MaxLimit * bucketScale

// refill returns the bucket's level at nowMs and the timestamp to store. A
// clock that went backwards (now < last, e.g. another replica's skew) adds
// nothing and keeps last. The Lua scripts in redis_scripts.go mirror it.
func (p bucketParams) refill(b bucket, nowMs int64) (level, last int64) {
	mx := p.max()
	if !b.set {
		return mx, nowMs
	}
	level, last = min(b.level, mx), b.last
	el := nowMs - last
	if el <= 0 {
		return level, last
	}
	deficit := mx - level
	if deficit <= 0 || el >= ceilDiv(deficit, p.rate) {
		return mx, nowMs
	}
	return level + el*p.rate, nowMs
}

// need is what an admission takes from the bucket in slot s, in units.
func (p bucketParams) need(s int, reserve int64) int64 {
	if s == slotWsReq || s == slotKeyReq {
		return bucketScale
	}
	return min(max(reserve, 0), p.cap) * bucketScale
}

// resetMs is how long until level refills to full.
func (p bucketParams) resetMs(level int64) int64 {
	if level >= p.max() {
		return 0
	}
	return ceilDiv(p.max()-level, p.rate)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// admitOutcome is one decision's result before it becomes a Decision; the
// Redis script returns the same fields.
type admitOutcome struct {
	allowed bool
	reason  Reason
	retryMs int64
	level   [numSlots]int64 // after the decision
	reset   [numSlots]int64
}

// decideAdmit is the whole admission decision over the four buckets,
// writing them only when every check passes. quotaReason/quotaRetryMs come
// from the quota check. It mirrors admitScript line by line.
func decideAdmit(p *limitParams, st *[numSlots]bucket, nowMs, reserve int64, quotaReason Reason, quotaRetryMs int64) admitOutcome {
	var o admitOutcome
	var last, need [numSlots]int64
	for s := range numSlots {
		if bp := p.b[s]; bp.limited() {
			o.level[s], last[s] = bp.refill(st[s], nowMs)
			need[s] = bp.need(s, reserve)
		}
	}
	o.reason, o.retryMs = quotaReason, quotaRetryMs
	if o.reason == ReasonNone {
		for s := range numSlots {
			bp := p.b[s]
			if !bp.limited() || o.level[s] >= need[s] {
				continue
			}
			if o.reason == ReasonNone {
				o.reason = ReasonRequests
				if s == slotWsTok || s == slotKeyTok {
					o.reason = ReasonTokens
				}
			}
			o.retryMs = max(o.retryMs, ceilDiv(need[s]-o.level[s], bp.rate))
		}
	}
	o.allowed = o.reason == ReasonNone
	for s := range numSlots {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		if o.allowed {
			o.level[s] -= need[s]
			st[s] = bucket{level: o.level[s], last: last[s], set: true}
		}
		o.reset[s] = bp.resetMs(o.level[s])
	}
	return o
}

// settleBucket refunds (reserved > actual) or charges (actual > reserved)
// the difference. It mirrors settleScript.
func settleBucket(bp bucketParams, b *bucket, nowMs, reserved, actual int64) {
	level, last := bp.refill(*b, nowMs)
	actual = min(max(actual, 0), MaxLimit)
	level += (reserved - actual) * bucketScale
	level = max(min(level, bp.max()), minLevel)
	*b = bucket{level: level, last: last, set: true}
}

// decision turns an outcome into the public Decision.
func (o *admitOutcome) decision(p *limitParams, key LimitKey, reserve int64) Decision {
	d := Decision{
		Allowed:  o.allowed,
		Reason:   o.reason,
		Requests: o.status(p, slotWsReq, slotKeyReq),
		Tokens:   o.status(p, slotWsTok, slotKeyTok),
	}
	if !o.allowed {
		d.RetryAfter = time.Duration(o.retryMs) * time.Millisecond
		return d
	}
	d.Reservation = Reservation{key: key, valid: true}
	if bp := p.b[slotWsTok]; bp.limited() {
		d.Reservation.wsTokens = bp.need(slotWsTok, reserve) / bucketScale
	}
	if bp := p.b[slotKeyTok]; bp.limited() {
		d.Reservation.keyTokens = bp.need(slotKeyTok, reserve) / bucketScale
	}
	return d
}

// status reports the tighter of two buckets: the one with fewer remaining,
// on a tie the one that takes longer to refill.
func (o *admitOutcome) status(p *limitParams, ws, key int) LimitStatus {
	var out LimitStatus
	for _, s := range [2]int{ws, key} {
		bp := p.b[s]
		if !bp.limited() {
			continue
		}
		st := LimitStatus{
			Limit:     bp.cap,
			Remaining: max(o.level[s], 0) / bucketScale,
			Reset:     time.Duration(o.reset[s]) * time.Millisecond,
		}
		if out.Limit == 0 || st.Remaining < out.Remaining || (st.Remaining == out.Remaining && st.Reset > out.Reset) {
			out = st
		}
	}
	return out
}
