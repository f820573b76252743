package providers

// The stream a pool hands its caller.

import "context"

// poolStream is the stream handed to the caller: one deployment's stream
// with its first delta buffered. Its owner's Close ends the attempt:
// closes the upstream stream, reports the outcome to the breaker and
// frees the in-flight slot.
type poolStream struct {
	p       *Pool
	d       *Deployment
	done    func(error)
	cancel  context.CancelFunc // the attempt's own context (hedging); nil if none
	span    attemptSpan        // the attempt's span; none without tracing
	st      Stream
	first   []byte
	pending bool  // first (or firstErr) not yet handed out
	err     error // the last error Next returned
	closed  bool
}

func newPoolStream(p *Pool, d *Deployment, done func(error), st Stream, first []byte, err error) *poolStream {
	return &poolStream{p: p, d: d, done: done, st: st, first: first, pending: true, err: err}
}

// Next implements Stream.
func (s *poolStream) Next() ([]byte, error) {
	if s.pending {
		s.pending = false
		if s.err != nil {
			return nil, s.err
		}
		return s.first, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	b, err := s.st.Next()
	if err != nil {
		s.err = err
	}
	return b, err
}

// Usage implements Stream.
func (s *poolStream) Usage() Usage { return s.st.Usage() }

// Deployment implements Served.
func (s *poolStream) Deployment() string { return s.d.name }

// Abort implements Stream.
func (s *poolStream) Abort() { s.st.Abort() }

// NotifyWait implements WaitNotifier when the deployment's stream does.
func (s *poolStream) NotifyWait(f func() bool) bool {
	w, ok := s.st.(WaitNotifier)
	return ok && w.NotifyWait(f)
}

// Close implements Stream: a stream the owner left before its end
// without an error (the caller stopped reading) counts as a success for
// the breaker; ErrAborted is excluded.
func (s *poolStream) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.span.endStream(s.st, s.err)
	s.st.Close()
	if s.cancel != nil {
		s.cancel()
	}
	s.d.finish(s.done, s.err, s.p.now())
}
