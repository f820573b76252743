package providers

import (
	"io"

	"github.com/moonborn/edge/internal/sse"
)

// StreamBase is the part of an HTTP wire protocol's Stream that does not
// depend on the protocol: the upstream event stream, the deltas
// delivered, the sticky final error, and Abort, NotifyWait and Close,
// which pass through to the SSEBody. A protocol's stream embeds it and
// adds the reading of its own events. Like SSEBody, it belongs to the
// stream's owner goroutine; only Abort may come from another.
type StreamBase struct {
	// Name is the deployment's, for errors.
	Name string
	// Body is the upstream's event stream.
	Body *SSEBody
	// InputEstimate is the prompt's estimated size in tokens, the input
	// of usage the upstream never reported.
	InputEstimate int64
	// Deltas counts the text deltas delivered, one output token each in
	// estimates.
	Deltas int64
	// Err, once set, is the stream's end: io.EOF at the end marker, else
	// the failure. Next returns it from then on.
	Err error
}

// NewStreamBase is the common part of a stream of r read from body.
func NewStreamBase(name string, body *SSEBody, r *Request) StreamBase {
	return StreamBase{Name: name, Body: body, InputEstimate: EstimateInputTokens(r)}
}

// End is Next's answer once Err is set: ErrAborted instead of the cut
// read's error when Abort ended the stream, so that no breaker counts
// the owner's leaving against the upstream.
func (s *StreamBase) End() ([]byte, error) {
	if s.Err != io.EOF && s.Body.Aborted() {
		s.Err = ErrAborted
	}
	return nil, s.Err
}

// NextEvent reads the next upstream event for a protocol's Next. When the
// body ended cleanly before the protocol's end marker (named by marker,
// for the error: a cut stream, KindTruncated) or the read failed, it sets
// Err and reports false.
func (s *StreamBase) NextEvent(marker string) (sse.Event, bool) {
	ev, err := s.Body.Next()
	if err != nil {
		if err == io.EOF {
			err = &UpstreamError{Kind: KindTruncated, Provider: s.Name, Detail: "stream ended without " + marker}
		}
		s.Err = err
		return ev, false
	}
	return ev, true
}

// Finish ends the stream at the protocol's end marker: Err becomes
// io.EOF and the connection may be reused (Body.Finish).
func (s *StreamBase) Finish() {
	s.Body.Finish()
	s.Err = io.EOF
}

// ErrorEvent is the stream's end at an upstream error event whose type
// is errType: KindProtocol, its Detail naming the type only in the safe
// form of SafeErrorType.
func (s *StreamBase) ErrorEvent(errType []byte) *UpstreamError {
	return &UpstreamError{Kind: KindProtocol, Provider: s.Name, Detail: "error event: " + SafeErrorType(errType)}
}

// Abort interrupts the stream from any goroutine.
func (s *StreamBase) Abort() { s.Body.Abort() }

// NotifyWait implements WaitNotifier.
func (s *StreamBase) NotifyWait(f func() bool) bool { return s.Body.NotifyWait(f) }

// Close releases the upstream reply; the connection is reused only when
// the protocol's end marker was read (Body.Finish).
func (s *StreamBase) Close() { s.Body.Close() }
