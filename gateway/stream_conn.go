package gateway

// The relay's hijacked connection: taking it from fasthttp's wrapper
// and, after a complete stream, serving its next requests.

import (
	"errors"
	"net"
	"os"
	"time"
)

// hijacked is the hijack handler: it passes the connection to a worker.
func (r *relay) hijacked(c net.Conn) { r.s.workers.run(r, c) }

// run owns the hijacked connection. A stream that ended
// with its whole response written leaves the connection reusable, so run
// goes on serving its next requests (keep-alive, as for any reply);
// otherwise it closes it. It must not touch the RequestCtx.
func (r *relay) run(c net.Conn) {
	// The relay never reads from the client, so it can drop fasthttp's
	// wrapper (and its read buffer) before streaming, not after.
	bare, err := unwrapHijacked(c, r.buf[:cap(r.buf)])
	if err != nil {
		// The client already closed its side: relay anyway (a half-close
		// still reads), then close.
		r.relay(c)
		_ = c.Close()
		return
	}
	if r.relay(bare) && !r.s.streams.stopping.Load() {
		r.s.streams.keep(bare)
		_ = r.s.srv.ServeConn(bare) // closes bare when the client is done
		r.s.streams.unkeep(bare)
		return
	}
	_ = bare.Close()
}

// unwrapHijacked returns the connection under fasthttp's hijack wrapper,
// preceded by the bytes the wrapper had buffered (a pipelined request;
// usually none). Serving the wrapper itself after the stream would wrap
// it again at the connection's next stream: one more layer, and one more
// buffered reader on every read and write, per stream on a keep-alive
// connection; and an open stream need not hold the wrapper's buffer.
//
// The buffered bytes are drained with the read deadline already passed:
// a read then returns what is buffered or fails at once, and never
// consumes new bytes from the network, which stay for the next request.
//
// scratch is any free buffer to read through; the relay lends its event
// scratch, which is idle until the stream starts.
func unwrapHijacked(c net.Conn, scratch []byte) (net.Conn, error) {
	u, ok := c.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return c, nil
	}
	inner := u.UnsafeConn()
	if err := inner.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return nil, err
	}
	var pending []byte
	for {
		n, err := c.Read(scratch)
		pending = append(pending, scratch[:n]...)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, err // the client closed or broke the connection
			}
			break
		}
	}
	if err := inner.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	if pc, ok := inner.(*prefixConn); ok {
		// Unwrapped before: what it still holds came after the bytes the
		// wrapper buffered from it.
		pending = append(pending, pc.prefix...)
		inner = pc.Conn
	}
	if len(pending) == 0 {
		return inner, nil
	}
	return &prefixConn{Conn: inner, prefix: pending}, nil
}

// prefixConn is a connection whose first reads return prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
