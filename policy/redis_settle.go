package policy

// Settlements pipelined with the next Admit's round trip, or flushed
// within settleLinger.

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

// queuedSettle is one settlement's script call, with what keep needs
// should Redis fail it.
type queuedSettle struct {
	key         LimitKey
	keys        []string
	args        []any
	tokens, usd int64
	now         time.Time
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
