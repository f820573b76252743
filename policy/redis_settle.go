package policy

// Settlements pipelined with the next Admit's round trip, or flushed
// within settleLinger (leaseSettleLinger with leasing on): one script call
// per workspace, credential and month, however many settled, and the
// lease slices given back, all in one round trip.

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// settleLinger is how long a queued settlement waits for an Admit to
// carry it before the flusher sends it alone. At a few hundred requests
// per second and more, an Admit nearly always comes first.
const settleLinger = 2 * time.Millisecond

// queuedSettle is the sum of the settlements of one workspace,
// credential and month since the last send (tokens used and reserved, and
// cost), or, with ret set, lease slices given back.
type queuedSettle struct {
	key         LimitKey
	tokens, usd int64
	// wsRes, keyRes are the tokens reserved from the workspace and
	// credential token buckets: the refund is reserved minus tokens.
	wsRes, keyRes int64
	now           time.Time
	ret           *leaseReturn
}

// settleKey aggregates settlements.
type settleKey struct {
	workspace, credential string
	month                 int64
}

// queueSettle adds a settlement to its workspace, credential and month's
// sum. Called with settleMu held.
func (l *RedisLimiter) queueSettle(r Reservation, tokens, usd int64, now time.Time) {
	k := settleKey{r.key.Workspace, r.key.CredentialID, monthIndex(now)}
	if i, ok := l.settleIdx[k]; ok {
		q := &l.settles[i]
		q.key = r.key // the latest limits (a managed key's own)
		q.tokens = min(q.tokens+tokens, MaxLimit)
		q.usd = min(q.usd+usd, MaxLimit)
		q.wsRes = min(q.wsRes+r.wsTokens, MaxLimit)
		q.keyRes = min(q.keyRes+r.keyTokens, MaxLimit)
		q.now = now
		return
	}
	l.settleIdx[k] = len(l.settles)
	l.settles = append(l.settles, queuedSettle{key: r.key, tokens: tokens, usd: usd, wsRes: r.wsTokens, keyRes: r.keyTokens, now: now})
}

// queueReturns queues lease slices to be given back with the next send.
func (l *RedisLimiter) queueReturns(rets []leaseReturn, now time.Time) {
	if len(rets) == 0 {
		return
	}
	l.settleMu.Lock()
	for i := range rets {
		l.settles = append(l.settles, queuedSettle{key: rets[i].key, now: now, ret: &rets[i]})
	}
	l.settleMu.Unlock()
	select {
	case l.settleWake <- struct{}{}:
	default:
	}
}

// call is q's script call: its keys and arguments.
func (l *RedisLimiter) call(q *queuedSettle) (*redis.Script, []string, []any) {
	keys := l.keys(q.key, q.now)
	nowMs := q.now.UnixMilli()
	if r := q.ret; r != nil {
		k := keys[1]
		if r.ws {
			k = keys[0]
		}
		return l.returnS, []string{k}, []any{nowMs, r.params[0].rate, r.params[0].cap, r.params[1].rate, r.params[1].cap, r.units[0], r.units[1], r.held[0], r.held[1]}
	}
	p := l.table.Load().lookup(q.key)
	track, trackKey := "0", "0"
	if p.quota() {
		track = "1"
	}
	if p.keyQuota() {
		trackKey = "1"
	}
	args := make([]any, 0, 16)
	args = append(args, nowMs, q.tokens, q.usd, q.wsRes, q.keyRes)
	for _, b := range p.b {
		args = append(args, b.rate, b.cap)
	}
	args = append(args, track, quotaTTL(q.now), trackKey)
	return l.settleS, keys, args
}

// settleLoop sends queued settlements that no Admit carried within
// settleLinger; at Close it sends the rest.
func (l *RedisLimiter) settleLoop() {
	defer close(l.settleDone)
	t := time.NewTimer(l.linger)
	t.Stop()
	for {
		select {
		case <-l.settleStop:
			l.sendSettles(context.Background(), nil)
			return
		case <-l.settleWake:
		}
		t.Reset(l.linger)
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
	clear(l.settleIdx)
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
			if l.settleS.Load(ctx, l.client).Err() == nil && l.admitS.Load(ctx, l.client).Err() == nil &&
				l.returnS.Load(ctx, l.client).Err() == nil {
				l.scriptsLoaded.Store(true)
			}
		}
		cmds = make([]*redis.Cmd, len(q))
		pipe := l.client.Pipeline()
		for i := range q {
			sc, keys, args := l.call(&q[i])
			cmds[i] = sc.EvalSha(ctx, pipe, keys, args...)
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
				sc, keys, args := l.call(&q[i])
				cmds[i] = sc.Run(ctx, l.client, keys, args...)
			}
		}
		if ac != nil && isNoScript(ac.Err()) {
			ac = l.admitS.Run(ctx, l.client, admit.keys, admit.args...)
		}
	}
	l.sentSettles(ctx, q, cmds, admit, ac)
	l.putSettles(q)
	return ac
}

// sentSettles handles the replies of q's calls: a settlement Redis failed
// is counted and its quota spend kept for replay; a failed lease return is
// lost (the bucket refills).
func (l *RedisLimiter) sentSettles(ctx context.Context, q []queuedSettle, cmds []*redis.Cmd, admit *admitCall, ac *redis.Cmd) {
	ok := false
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			r := &q[i]
			// One failed round trip is one Redis error: when the Admit
			// carrying these failed too, Admit counts it.
			if admit == nil || ac.Err() == nil {
				l.failed(r.now.UnixMilli(), err)
			}
			if r.ret != nil {
				continue // the slices are lost: the bucket refills
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
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// admitCall is an Admit's script call.
type admitCall struct {
	keys []string
	args []any
}
