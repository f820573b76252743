package mock

import (
	"bufio"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// holdUntilGone is the hijack handler of StallFor < 0: it never answers,
// and returns when the client closes the connection or the server shuts
// down (fasthttp then closes the connection).
func (s *Server) holdUntilGone(c net.Conn) {
	s.openStalls.Add(1)
	defer s.openStalls.Add(-1)
	stop := make(chan struct{})
	watcher := make(chan struct{})
	// The watcher must be gone before the connection goes back to
	// fasthttp, or its deadline call races with the connection's reuse.
	defer func() { close(stop); <-watcher }()
	go func() {
		defer close(watcher)
		select {
		case <-s.done:
			_ = c.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	var b [512]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// wait sleeps for d on *t (created on first use) unless the server shuts
// down first; it reports whether the full time passed.
func (s *Server) wait(t **time.Timer, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-s.done:
			return false
		default:
			return true
		}
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-s.done:
		(*t).Stop()
		return false
	}
}

// eventWriter is where a stream's events go: fasthttp's body writer, or
// chunkWriter on a hijacked connection.
type eventWriter interface {
	Write(p []byte) (int, error)
	Flush() error
}

// streamJob is one stream's state, copied out of the request context
// because the stream writer runs after the handler returned. Jobs are
// pooled by the Server.
type streamJob struct {
	s            *Server
	a            answer
	model        []byte
	created      int64
	includeUsage bool
	choicesNull  bool
	wait         time.Duration
	delay        time.Duration
	cutAfter     int
	errorAfter   int
	buf          []byte
	prefix       []byte // OpenAI chunk prefix, up to and including `"delta":`
	timer        *time.Timer
}

// streamEnd is how a stream writer ended.
type streamEnd uint8

func (s *Server) stream(ctx *fasthttp.RequestCtx, cfg *ServerConfig, a *answer, r *wireRequest) {
	j, _ := s.jobs.Get().(*streamJob)
	if j == nil {
		j = &streamJob{s: s}
	}
	j.a = *a
	j.model = append(j.model[:0], r.model...)
	j.created = time.Now().Unix()
	j.includeUsage = r.includeUsage
	j.choicesNull = cfg.ChoicesNull
	j.wait = cfg.StallFor + cfg.TimeToFirstToken
	j.delay = cfg.TokenDelay
	j.cutAfter = cfg.CutAfterTokens
	j.errorAfter = cfg.ErrorEventAfterTokens

	if j.cutAfter > 0 {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			w := &chunkWriter{c: c, header: []byte(
				"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
					"Cache-Control: no-cache\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")}
			if s.runJob(j, w) == endDone {
				_ = w.finish()
			}
		})
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeSSE)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) { s.runJob(j, w) })
}

// runJob runs a stream writer and keeps the counters; it owns j and returns
// it to the pool.
func (s *Server) runJob(j *streamJob, w eventWriter) (end streamEnd) {
	s.streamsStarted.Add(1)
	end = endGone
	defer func() {
		if p := recover(); p != nil {
			end = endGone
		}
		if end == endGone {
			s.streamsAborted.Add(1)
		} else {
			s.streamsCompleted.Add(1)
		}
		s.jobs.Put(j)
	}()
	return j.run(w)
}

func (j *streamJob) run(w eventWriter) streamEnd {
	if !j.s.wait(&j.timer, j.wait) {
		return endGone
	}
	if j.a.proto == protoOpenAI {
		return j.runOpenAI(w)
	}
	return j.runAnthropic(w)
}

// emit writes j.buf as one event and flushes it.
func (j *streamJob) emit(w eventWriter) bool {
	if _, err := w.Write(j.buf); err != nil {
		return false
	}
	return w.Flush() == nil
}

// knob reports whether a configured cut or error event is due before delta
// i.
func (j *streamJob) knob(i int) (cut, errEvent bool) {
	return j.cutAfter > 0 && i == j.cutAfter, j.errorAfter > 0 && i == j.errorAfter
}

// chunkWriter frames events as HTTP/1.1 chunks on a hijacked connection,
// sending the response header with the first one, so a stream can be cut
// without the final chunk.
type chunkWriter struct {
	c      net.Conn
	header []byte
	buf    []byte
	out    []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *chunkWriter) Flush() error {
	w.out = append(w.out[:0], w.header...)
	w.header = nil
	if len(w.buf) > 0 {
		w.out = strconv.AppendInt(w.out, int64(len(w.buf)), 16)
		w.out = append(w.out, "\r\n"...)
		w.out = append(w.out, w.buf...)
		w.out = append(w.out, "\r\n"...)
	}
	w.buf = w.buf[:0]
	_, err := w.c.Write(w.out)
	return err
}

// finish sends the last chunk.
func (w *chunkWriter) finish() error {
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := w.c.Write([]byte("0\r\n\r\n"))
	return err
}

const (
	endDone streamEnd = iota // end marker sent
	endKnob                  // cut or error event, as configured
	endGone                  // a write failed or the server shut down
)
