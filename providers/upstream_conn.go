package providers

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// lease is one attempt's hold on an upstream connection, from the moment
// the attempt asks the HostClient for one until it gives it back. It is
// what makes cancellation reach the upstream whatever the attempt is
// doing: waiting for a free connection, writing the request, waiting for
// the reply's head, or reading its body or event stream. Cutting the lease
// closes the connection itself, which unblocks any read or write at once
// and tells the upstream to stop generating; a cut connection is never
// pooled again.
//
// The attempt's goroutine owns the lease; cut may come from any
// goroutine (the request context's cancellation, Abort, a deadline
// timer). Once released the connection may serve another request and is
// no longer the lease's to close.
type lease struct {
	ctx      context.Context
	deadline time.Time // the head's deadline: reply headers by then
	stopCtx  func() bool

	mu       sync.Mutex
	raw      *upstreamConn      // the dialed connection (under TLS, if any)
	give     func(discard bool) // hands the connection back to the HostClient
	reader   func()             // releases a streamed reply's buffered reader; nil if none
	cutBy    error              // why the lease was cut; nil while live
	released bool
}

// errLeaseCut is the cause of a cut that neither the context nor the
// stream's own deadlines explain (see SSEBody.Abort).
var errLeaseCut = errors.New("upstream connection cut")

// newLease starts an attempt under ctx whose reply head is due by
// deadline (the earlier of it and ctx's deadline). ctx's cancellation
// cuts the lease from then on.
func newLease(ctx context.Context, deadline time.Time) *lease {
	l := &lease{ctx: ctx, deadline: deadline}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		l.deadline = d
	}
	l.stopCtx = context.AfterFunc(ctx, func() { l.cut(ctx.Err()) })
	return l
}

// attach records the connection the HostClient handed out and how to give
// it back. It reports false, and gives the connection back for closing,
// when the lease was cut before it had one.
func (l *lease) attach(raw *upstreamConn, give func(discard bool)) bool {
	l.mu.Lock()
	l.raw, l.give = raw, give
	cut := l.cutBy != nil
	if cut {
		l.released = true
	}
	l.mu.Unlock()
	if cut {
		give(true)
	}
	return !cut
}

// cut closes the connection under the attempt, from any goroutine. The
// first cause is kept; later cuts are no-ops.
func (l *lease) cut(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cutBy != nil || l.released {
		return
	}
	l.cutBy = cause
	if l.raw != nil {
		_ = l.raw.Conn.Close()
	}
}

// cause is why the lease was cut, nil if it was not.
func (l *lease) cause() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cutBy
}

// release gives the connection back: to the pool when reusable and the
// lease was never cut, else closed. It reports whether it was pooled.
// Called once by the owner; a lease without a connection just stops
// watching its context.
func (l *lease) release(reusable bool) bool {
	ctxQuiet := l.stopCtx()
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return false
	}
	l.released = true
	// A false stopCtx means the cancellation hook started: whatever it
	// did, the connection must not serve anyone else.
	discard := !reusable || l.cutBy != nil || !ctxQuiet
	give := l.give
	l.mu.Unlock()
	if l.reader != nil {
		l.reader()
	}
	if give != nil {
		l.raw.beforeRead = nil
		give(discard)
	}
	return give != nil && !discard
}

// upstreamDialError marks a failure to connect, which fasthttp passes
// through from Dial unchanged.
type upstreamDialError struct{ err error }

func (e *upstreamDialError) Error() string { return e.err.Error() }
func (e *upstreamDialError) Unwrap() error { return e.err }

// upstreamConn is each dialed connection, so that a lease can close the
// raw connection even under TLS, and a stream's owner can hook its reads.
type upstreamConn struct {
	net.Conn
	// beforeRead is the NotifyWait hook of the stream reading this
	// connection. Only that stream's owner goroutine sets it and reads
	// from the connection, so it needs no lock.
	beforeRead func() bool
}

// errWaitAbandoned fails a read whose NotifyWait hook said the reader left.
var errWaitAbandoned = errors.New("stream reader left")

// Read calls the registered hook before every read of the connection.
func (c *upstreamConn) Read(p []byte) (int, error) {
	if c.beforeRead != nil && !c.beforeRead() {
		return 0, errWaitAbandoned
	}
	return c.Conn.Read(p)
}

// rawUpstreamConn finds our connection under what the HostClient hands
// out (a *tls.Conn wraps it for https).
func rawUpstreamConn(c net.Conn) *upstreamConn {
	for {
		switch v := c.(type) {
		case *upstreamConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}
