package policy

// Noticing, without a round trip, that Redis went away: what keeps a
// fail-closed limiter from admitting on its leases once Redis is gone.

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// redisWatch is, for a fail-closed limiter with leasing, one idle TCP
// connection to Redis on which nothing is ever sent. Redis (or whatever
// stands between) closing its connections closes this one too, which a
// non-blocking peek sees at once; the lease path then stops and the next
// decision asks Redis, which fails and turns fail-closed on, as it did
// before leasing. A silent loss (no FIN, a partition) is noticed as
// before, when the next round trip (a settlement flush every 10 ms, a
// prefetch) times out. The zero value (off) always reports alive.
type redisWatch struct {
	on          bool
	addr        string
	dialTimeout time.Duration
	conn        atomic.Pointer[watchConn]
	dialing     atomic.Bool
	closed      atomic.Bool
}

type watchConn struct {
	c    net.Conn
	rc   syscall.RawConn
	mu   sync.Mutex // one peek at a time: peek writes gone
	peek func(fd uintptr) bool
	buf  [1]byte
	gone bool
}

// alive says whether the lease path may be used: off, or the watch
// connection is open. A closed one is dropped (ensure dials anew after
// Redis answers again).
func (w *redisWatch) alive() bool {
	if !w.on {
		return true
	}
	wc := w.conn.Load()
	if wc == nil {
		return false
	}
	wc.mu.Lock()
	err := wc.rc.Read(wc.peek)
	gone := wc.gone || err != nil
	wc.mu.Unlock()
	if gone && w.conn.CompareAndSwap(wc, nil) {
		wc.c.Close()
	}
	return !gone
}

// ensure dials the watch connection in the background when there is none
// (at the first success, and after an outage).
func (w *redisWatch) ensure() {
	if !w.on || w.conn.Load() != nil || w.closed.Load() || !w.dialing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer w.dialing.Store(false)
		c, err := net.DialTimeout("tcp", w.addr, w.dialTimeout)
		if err != nil {
			return
		}
		sc, ok := c.(syscall.Conn)
		var rc syscall.RawConn
		if ok {
			rc, err = sc.SyscallConn()
		}
		if !ok || err != nil {
			c.Close()
			return
		}
		wc := &watchConn{c: c, rc: rc}
		wc.peek = func(fd uintptr) bool {
			wc.gone = peekClosed(fd, wc.buf[:])
			return true
		}
		if w.closed.Load() || !w.conn.CompareAndSwap(nil, wc) {
			c.Close()
		}
	}()
}

func (w *redisWatch) close() {
	w.closed.Store(true)
	if wc := w.conn.Swap(nil); wc != nil {
		wc.c.Close()
	}
}
