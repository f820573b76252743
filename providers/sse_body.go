package providers

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/moonborn/edge/internal/sse"
	"github.com/valyala/fasthttp"
)

// SSEBody is the event stream of one streamed upstream reply, read under
// the first-token and idle deadlines and the request context. Its owner
// (the protocol package's Stream) calls Next, Delivered, Finish and Close
// from one goroutine; Abort may come from any goroutine, before or after
// Close. Timeouts, Abort and the context's end interrupt a blocked read by
// cutting the connection's lease, which closes the connection itself (so
// the read returns at once, without waiting for the owner) and tells the
// upstream to stop generating.
type SSEBody struct {
	h     *UpstreamHTTP
	l     *lease
	req   *fasthttp.Request
	resp  *fasthttp.Response
	rd    *sse.Reader
	timer *time.Timer
	state atomic.Uint32

	started bool // a text delta was delivered: the idle deadline applies
	ended   bool // the protocol's end marker was read
	closed  bool
	err     error
}

const (
	bodyLive uint32 = iota
	bodyAborted
	bodyExpired
)

var (
	errSSEExpired = errors.New("stream deadline passed")
	errAbort      = errors.New("stream aborted by its owner")
)

// Next returns the next event. It returns io.EOF when the body ended
// cleanly (the protocol decides whether that was complete), ErrAborted
// after Abort or the request context's cancellation, and an
// *UpstreamError for a deadline (KindTimeout: first token, idle gap or
// the request's own), an oversized event (KindProtocol) or a broken
// connection (KindTruncated). Errors are sticky.
func (b *SSEBody) Next() (sse.Event, error) {
	if b.err != nil {
		return sse.Event{}, b.err
	}
	if b.state.Load() == bodyLive && b.l.cause() == nil {
		ev, err := b.rd.Next()
		if err == nil {
			if b.started {
				b.timer.Reset(b.h.opts.IdleTimeout)
			}
			return ev, nil
		}
		b.err = err
	}
	switch b.state.Load() {
	case bodyAborted:
		b.err = ErrAborted
	case bodyExpired:
		detail := "no first token within " + b.h.opts.FirstTokenTimeout.String()
		if b.started {
			detail = "no event within idle timeout " + b.h.opts.IdleTimeout.String()
		}
		b.err = &UpstreamError{Kind: KindTimeout, Provider: b.h.name, Detail: detail}
	default:
		switch {
		case b.l.cause() != nil:
			b.err = b.h.leaseError(b.l, b.err)
		case b.err == io.EOF:
		case errors.Is(b.err, errWaitAbandoned):
			// The owner's reader left (its NotifyWait hook said so): the
			// owner ended the stream, the upstream did nothing wrong, and
			// breakers must not count it.
			b.err = ErrAborted
		case errors.Is(b.err, sse.ErrEventTooLarge):
			b.err = &UpstreamError{Kind: KindProtocol, Provider: b.h.name, Detail: "event too large", Err: b.err}
		default:
			b.err = b.h.readError(b.err, "stream broke")
			if ue, ok := b.err.(*UpstreamError); ok && ue.Kind != KindTimeout {
				ue.Kind = KindTruncated
			}
		}
	}
	return sse.Event{}, b.err
}

// Delivered records that a text delta went out: the first-token deadline
// is met and the idle deadline applies from now on.
func (b *SSEBody) Delivered() {
	if !b.started {
		b.started = true
		b.timer.Reset(b.h.opts.IdleTimeout)
	}
}

// NotifyWait implements WaitNotifier: f runs before each read from the
// upstream connection, which is where Next may block (bytes already
// buffered are parsed without a read).
func (b *SSEBody) NotifyWait(f func() bool) bool {
	if b.closed {
		return false
	}
	b.l.raw.beforeRead = f
	return true
}

// Finish records that the protocol's end marker was read, so Close may
// return the connection to the pool.
func (b *SSEBody) Finish() { b.ended = true }

// Aborted reports whether the stream was aborted: by Abort, or by the
// cancellation of its request context (not by its deadline).
func (b *SSEBody) Aborted() bool {
	return b.state.Load() == bodyAborted || errors.Is(b.l.cause(), errAbort) ||
		errors.Is(b.l.cause(), context.Canceled)
}

// Abort interrupts the stream from any goroutine: a blocked Next returns
// ErrAborted and the connection is closed. Safe to call more than once
// and after Close.
func (b *SSEBody) Abort() {
	if b.state.CompareAndSwap(bodyLive, bodyAborted) {
		b.l.cut(errAbort)
	}
}

func (b *SSEBody) expire() {
	if b.state.CompareAndSwap(bodyLive, bodyExpired) {
		b.l.cut(errSSEExpired)
	}
}

// Close releases the reply and request. After Finish it reads the rest of
// the body (briefly) so the connection can be reused; otherwise the
// connection is closed. Called once by the owner after its last Next.
func (b *SSEBody) Close() {
	if b.closed {
		return
	}
	b.closed = true
	reusable := b.err == io.EOF
	if !reusable && b.ended && b.err == nil && b.state.Load() == bodyLive {
		b.timer.Reset(min(b.h.opts.IdleTimeout, time.Second))
		reusable = b.drain()
	}
	b.timer.Stop()
	reusable = reusable && b.state.Load() == bodyLive
	b.resp.CloseBodyStream()
	b.l.release(reusable)
	b.rd.Reset(nil, 0)
	b.h.readers.Put(b.rd)
	b.rd = nil
	fasthttp.ReleaseResponse(b.resp)
	fasthttp.ReleaseRequest(b.req)
	b.resp, b.req = nil, nil
}

// drain reads what follows the end marker, reporting whether the body
// ended within a few events.
func (b *SSEBody) drain() bool {
	for range 4 {
		if _, err := b.rd.Next(); err != nil {
			return err == io.EOF && b.state.Load() == bodyLive
		}
	}
	return false
}
