package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
	"github.com/valyala/fasthttp"
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

// relay streams the response on c and reports whether all of it, the
// last chunk included, was written.
func (r *relay) relay(c net.Conn) (complete bool) {
	defer r.s.streams.done()
	defer func() {
		if v := recover(); v != nil {
			r.s.log.Error("stream relay panic", "panic", fmt.Sprint(v), "request_id", r.x.requestID)
			r.st.Abort()
			r.finish(providers.Usage{}, http.StatusInternalServerError, codeInternal)
		}
	}()
	r.start(c)
	m := r.s.opts.Metrics
	m.streamOpened()
	defer m.streamClosed()
	err := io.EOF
	if !r.emptyOK {
		err = r.pump()
	}
	usage := r.st.Usage()
	switch {
	case err == io.EOF:
		return r.endDone(usage)
	case r.clientGone():
		r.finish(usage, statusClientClosed, codeClientClosed)
		return false
	default:
		return r.endError(err, usage)
	}
}

// start takes the connection, arms the ping timer and queues the
// response head.
func (r *relay) start(c net.Conn) {
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
}

// pump relays the first delta and every next one until the upstream
// ends (io.EOF) or a read or write fails.
func (r *relay) pump() error {
	m := r.s.opts.Metrics
	err := r.writeDelta(r.first)
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
	return err
}

// endDone writes the done event and the last chunk of a stream the
// upstream finished.
func (r *relay) endDone(usage providers.Usage) bool {
	end := r.s.now()
	if a := r.x.api; a != nil {
		r.buf = a.appendEnd(beginChunk(r.buf), r.x, r.st, usage)
	} else {
		r.buf = append(beginChunk(r.buf), donePrefix...)
		r.buf = appendUsageFields(r.buf, usage, costOf(r.x.model, usage), r.x.model.ID, end.Sub(r.x.start).Milliseconds())
		r.buf = append(r.buf, "}\n\n"...)
	}
	r.buf = append(endChunk(r.buf), lastChunk...)
	if werr := r.emit(r.buf, true); werr != nil {
		r.finish(usage, statusClientClosed, codeClientClosed)
		return false
	}
	r.finish(usage, http.StatusOK, "")
	return true
}

// endError writes the error event and the last chunk of a stream that
// failed after its first byte (the status stays 200: it was sent).
func (r *relay) endError(err error, usage providers.Usage) bool {
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
	complete := r.emit(r.buf, true) == nil
	r.finish(usage, http.StatusOK, ae.code)
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
	r.s.streams.remove(r)
}

// startStream serves stream: true. Nothing is written until the first
// delta arrives, so every earlier failure is an ordinary JSON error. Once
// a delta is in hand the relay takes ownership of the upstream stream.
func (s *Server) startStream(ctx *fasthttp.RequestCtx, x *exchange) {
	callStart := s.now()
	st, err := x.model.Provider.Stream(x.ctx, &x.req)
	if err != nil {
		x.upstreamWait = s.now().Sub(callStart)
		s.fail(ctx, x, providers.Usage{}, err, s.now())
		return
	}
	first, err := st.Next()
	x.upstreamWait = s.now().Sub(callStart)
	if err != nil && err != io.EOF {
		u := st.Usage()
		st.Close()
		s.fail(ctx, x, u, err, s.now())
		return
	}
	if sv, ok := st.(providers.Served); ok {
		x.deployment = sv.Deployment()
	}
	r := newRelay(s, x, st, first, err == io.EOF)
	ctx.SetStatusCode(http.StatusOK)
	ctx.Response.Header.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.Header.SetContentLength(-1) // chunked
	r.head = append(r.head, ctx.Response.Header.Header()...)
	s.streams.add(r)
	// The relay writes the response itself on the hijacked connection:
	// one goroutine per stream and a write per burst of events, instead of
	// fasthttp's stream writer, which adds a goroutine and an in-memory
	// pipe that copies every event twice more. After a complete stream
	// the relay serves the connection's next requests (keep-alive). It
	// runs on a reused worker goroutine (see relayWorkers).
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(r.hijacked)
}
