package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// relay copies one upstream stream to one client as API.md's SSE events.
//
// Ownership: the relay owns the upstream Stream from newRelay on. run, on
// the hijacked connection's goroutine, is the only caller of Next and
// Close; it writes the response head and every event as one HTTP chunk
// each, and records usage exactly once when the stream ends, whatever
// ended it. The ping timer and Shutdown reach in only through mu (to
// write a heartbeat) and Stream.Abort (safe from any goroutine).
type relay struct {
	s       *Server
	x       *exchange
	st      providers.Stream
	first   []byte
	emptyOK bool   // the upstream finished cleanly before any delta
	head    []byte // the response status line and headers, built by serveChat

	mu       sync.Mutex // guards conn, finished and writes to the client
	conn     net.Conn
	finished bool
	headSent bool        // the first write went out
	gone     bool        // a write failed: the client left
	stopping atomic.Bool // Shutdown aborted the stream
	ping     *time.Timer

	buf []byte // event scratch, reused per event
	// out holds whole chunks not yet written, the response head first.
	// With coalesce (the stream is a providers.WaitNotifier) it is
	// written when the stream is about to wait for the upstream or holds
	// maxCoalesced bytes; without, after every event.
	out      []byte
	coalesce bool
}

// maxCoalesced bounds the bytes the relay holds back while events keep
// arriving without a wait: a burst still leaves in a few large writes.
const maxCoalesced = 16 << 10

func newRelay(s *Server, x *exchange, st providers.Stream, first []byte, eof bool) *relay {
	r := &relay{s: s, x: x, st: st, emptyOK: eof, buf: make([]byte, 0, 512)}
	r.first = append(r.first, first...)
	return r
}

var (
	deltaPrefix = []byte("event: delta\ndata: {\"type\":\"delta\",\"content\":")
	donePrefix  = []byte("event: done\ndata: {\"type\":\"done\"")
	errorPrefix = []byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"code\":")
	pingChunk   = []byte("8\r\n: ping\n\n\r\n")
	lastChunk   = []byte("0\r\n\r\n")
)

// chunkRoom is what beginChunk reserves for the chunk-size line: up to 8
// hex digits and CRLF.
const chunkRoom = 10

// beginChunk starts an HTTP chunk in buf, leaving room for its size line.
func beginChunk(buf []byte) []byte {
	return append(buf[:0], "0000000000"[:chunkRoom]...)
}

// endChunk writes the size line of the chunk begun at buf[0] and appends
// its CRLF; it returns the bytes to send (the size line is right-aligned
// in the reserved room, so the slice starts where it begins).
func endChunk(buf []byte) []byte {
	n := len(buf) - chunkRoom
	var size [8]byte
	i := len(size)
	for {
		i--
		size[i] = hexDigits[n&0xf]
		n >>= 4
		if n == 0 {
			break
		}
	}
	start := chunkRoom - 2 - (len(size) - i)
	copy(buf[start:], size[i:])
	buf[chunkRoom-2], buf[chunkRoom-1] = '\r', '\n'
	buf = append(buf, '\r', '\n')
	return buf[start:]
}

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
	if r.relay(bare) && !r.s.stopping.Load() {
		_ = r.s.srv.ServeConn(bare) // closes bare when the client is done
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

// relay streams the response on c and reports whether all of it, the
// last chunk included, was written.
func (r *relay) relay(c net.Conn) (complete bool) {
	defer r.s.relays.Done()
	defer func() {
		if v := recover(); v != nil {
			r.s.log.Error("stream relay panic", "panic", fmt.Sprint(v), "request_id", r.x.requestID)
			r.st.Abort()
			r.finish(providers.Usage{}, http.StatusInternalServerError, codeInternal)
		}
	}()
	r.mu.Lock()
	r.conn = c
	r.ping = time.AfterFunc(r.s.opts.PingInterval, r.heartbeat)
	r.mu.Unlock()
	r.out, r.head = r.head, nil
	if w, ok := r.st.(providers.WaitNotifier); ok {
		// Flush right before every wait for the upstream: events that
		// arrived together go out in one write, and none waits on the
		// network. A failed flush means the client left, so the wait is
		// abandoned and the upstream cut without waiting for its next
		// event.
		r.coalesce = w.NotifyWait(func() bool { return r.flush() == nil && !r.clientGone() })
	}
	m := r.s.opts.Metrics
	m.streamOpened()
	defer m.streamClosed()

	var err error
	if !r.emptyOK {
		err = r.writeDelta(r.first)
		last := time.Now()
		m.firstToken(last.Sub(r.x.start))
		for err == nil {
			var d []byte
			d, err = r.st.Next()
			now := time.Now()
			r.x.upstreamWait += now.Sub(last)
			if err == nil {
				err = r.writeDelta(d)
				m.tokenGap(now.Sub(last))
				last = now
			}
		}
	} else {
		err = io.EOF
	}
	end := r.s.now()
	usage := r.st.Usage()
	switch {
	case err == io.EOF:
		cost := costOf(r.x.model, usage)
		if a := r.x.api; a != nil {
			r.buf = a.appendEnd(beginChunk(r.buf), r.x, r.st, usage)
		} else {
			r.buf = append(beginChunk(r.buf), donePrefix...)
			r.buf = appendUsageFields(r.buf, usage, cost, r.x.model.ID, end.Sub(r.x.start).Milliseconds())
			r.buf = append(r.buf, "}\n\n"...)
		}
		r.buf = append(endChunk(r.buf), lastChunk...)
		if werr := r.emit(r.buf, true); werr != nil {
			r.finish(usage, statusClientClosed, codeClientClosed)
			return false
		}
		r.finish(usage, http.StatusOK, "")
		return true
	case r.clientGone():
		r.finish(usage, statusClientClosed, codeClientClosed)
	default:
		if r.stopping.Load() {
			err = errShuttingDown
		}
		ae := toAPIError(err)
		if ae.upstream {
			r.s.logUpstream(r.x, err)
		}
		if a := r.x.api; a != nil {
			r.buf = a.appendError(beginChunk(r.buf), ae)
		} else {
			r.buf = append(beginChunk(r.buf), errorPrefix...)
			r.buf = jsonx.AppendString(r.buf, ae.code)
			r.buf = append(r.buf, `,"message":`...)
			r.buf = jsonx.AppendString(r.buf, ae.message)
			r.buf = append(r.buf, "}}\n\n"...)
		}
		r.buf = append(endChunk(r.buf), lastChunk...)
		complete = r.emit(r.buf, true) == nil
		r.finish(usage, http.StatusOK, ae.code)
	}
	return complete
}

// writeDelta queues one delta event as one chunk.
func (r *relay) writeDelta(d []byte) error {
	if a := r.x.api; a != nil {
		r.buf = a.appendDelta(beginChunk(r.buf), r.x, r.st, d)
		return r.emit(endChunk(r.buf), false)
	}
	r.buf = append(beginChunk(r.buf), deltaPrefix...)
	r.buf = jsonx.AppendString(r.buf, d)
	return r.emit(endChunk(append(r.buf, "}\n\n"...)), false)
}

// emit queues whole chunks and writes the queue unless the relay is
// coalescing, the queue is small and the stream goes on (last is false).
func (r *relay) emit(chunks []byte, last bool) error {
	r.out = append(r.out, chunks...)
	if r.coalesce && !last && len(r.out) < maxCoalesced {
		return nil
	}
	return r.flush()
}

// flush writes the queued chunks, if any.
func (r *relay) flush() error {
	if len(r.out) == 0 {
		return nil
	}
	err := r.write(r.out)
	r.out = r.out[:0]
	return err
}

// write sends whole chunks, under mu so a heartbeat never interleaves,
// moving the write deadline forward first.
func (r *relay) write(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return errClientGone
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.opts.StreamWriteTimeout))
	r.headSent = true
	if _, err := r.conn.Write(b); err != nil {
		r.gone = true
		return errClientGone
	}
	r.ping.Reset(r.s.opts.PingInterval)
	return nil
}

// heartbeat runs on the timer's goroutine after a silence. A failed ping
// means the client left: abort the upstream so it stops generating.
//
// Abort is called after mu is released: it waits for a read of the
// upstream in progress to return, and that read may be inside the relay's
// NotifyWait flush, waiting for mu.
func (r *relay) heartbeat() {
	if r.writePing() {
		r.st.Abort()
	}
}

// writePing writes one ping under mu and reports whether the client is gone.
func (r *relay) writePing() (gone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished || r.gone {
		return false
	}
	if !r.headSent {
		return false // nothing sent yet: the first event is about to go
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.opts.StreamWriteTimeout))
	if _, err := r.conn.Write(pingChunk); err != nil {
		r.gone = true
		return true
	}
	r.ping.Reset(r.s.opts.PingInterval)
	return false
}

// clientGone reports whether the client left: a write failed, or the
// client-gone watcher saw it close or reset its connection.
func (r *relay) clientGone() bool {
	if r.x.gone.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// shutdown aborts the stream because the server is stopping. It takes no
// lock: the relay may hold mu for a while, writing to a slow client.
func (r *relay) shutdown() {
	r.stopping.Store(true)
	r.st.Abort()
}

// finish releases the upstream, records usage and unregisters the relay.
// Called exactly once, by run.
func (r *relay) finish(u providers.Usage, status int, code string) {
	r.mu.Lock()
	r.finished = true
	if r.ping != nil {
		r.ping.Stop()
	}
	r.mu.Unlock()
	r.st.Close()
	r.s.finish(r.x, u, status, code, r.s.now())
	r.s.mu.Lock()
	delete(r.s.streams, r)
	r.s.mu.Unlock()
}
