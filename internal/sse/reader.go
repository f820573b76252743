// Package sse reads server-sent event streams (text/event-stream, as the
// WHATWG HTML standard defines them) into events, without allocating per
// event: the framing half of an upstream's streamed reply, below any
// protocol. What the events mean (OpenAI chunks, Anthropic events) is the
// wire packages' business; reading them under deadlines from a connection
// is providers' (sse_body.go). The gateway writes its own events as
// precomputed byte prefixes (gateway/stream_chunk.go, sdk_openai.go,
// sdk_anthropic.go) with no framing layer to share.
//
// It imports nothing of the gateway's.
package sse

import (
	"bytes"
	"errors"
	"io"
)

// ErrEventTooLarge is returned by Reader.Next when one event (or one
// line) is longer than the reader's limit: an upstream that never sends a
// blank line must not make the gateway buffer without bound.
var ErrEventTooLarge = errors.New("sse: event too large")

// DefaultMaxEvent is the event size limit NewReader uses when given
// zero or less: far above any chat delta, small enough to bound memory.
const DefaultMaxEvent = 1 << 20

// initialBuf is the first read buffer size; it grows (up to the event
// limit) only when a single line does not fit.
const initialBuf = 4096

// Event is one dispatched server-sent event. Name is the last `event:`
// value (empty when the event had none; the spec's default type is
// "message"). Data is the `data:` lines joined by "\n". Both slices belong
// to the reader and are valid only until its next Next or Reset.
type Event struct {
	Name []byte
	Data []byte
}

// Reader splits an event stream (text/event-stream, as the WHATWG HTML
// standard defines it) into events. Lines end in "\n", "\r\n" or "\r";
// comments (":" lines) and the id and retry fields are skipped, since the
// gateway never reconnects an upstream stream. An event with no data line
// is not dispatched, and an unfinished event at end of input is dropped:
// whether the stream was complete is the protocol layer's decision.
//
// The zero value is not usable; build one with NewReader or Reset. A
// reader reuses its buffers across events and across Reset, so a pooled
// reader reads a stream without allocating. It is not safe for concurrent
// use.
type Reader struct {
	r        io.Reader
	max      int
	buf      []byte // read buffer; unread bytes are buf[start:end]
	start    int
	end      int
	scan     int   // buf[start:scan] holds no line terminator
	err      error // sticky error from r, returned once buf is drained
	skipLF   bool  // the last line ended in '\r': a following '\n' is part of it
	sawLine  bool  // a line was read, so a leading BOM is no longer possible
	name     []byte
	data     []byte
	hasData  bool
	eventLen int // raw bytes of the pending event's field lines
}

// NewReader returns a reader of r that rejects events over maxEvent
// bytes (DefaultMaxEvent when maxEvent ≤ 0).
func NewReader(r io.Reader, maxEvent int) *Reader {
	s := &Reader{}
	s.Reset(r, maxEvent)
	return s
}

// Reset makes the reader read a new stream from r, keeping its buffers.
func (s *Reader) Reset(r io.Reader, maxEvent int) {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	if s.buf == nil {
		s.buf = make([]byte, min(initialBuf, maxEvent+2))
	}
	*s = Reader{r: r, max: maxEvent, buf: s.buf, name: s.name[:0], data: s.data[:0]}
}

// Next returns the next dispatched event. At the end of the input it
// returns io.EOF (an unfinished event is discarded); a read error from the
// underlying reader is returned as is, and an oversized event as
// ErrEventTooLarge. After an error every call returns an error.
func (s *Reader) Next() (Event, error) {
	for {
		line, err := s.line()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !s.hasData {
				s.name = s.name[:0]
				s.eventLen = 0
				continue
			}
			ev := Event{Name: s.name, Data: s.data[:len(s.data)-1]}
			s.name = s.name[:0]
			s.data = s.data[:0]
			s.hasData = false
			s.eventLen = 0
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		s.eventLen += len(line)
		if s.eventLen > s.max {
			s.err = ErrEventTooLarge
			return Event{}, s.err
		}
		field, value := line, line[len(line):]
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			s.data = append(s.data, value...)
			s.data = append(s.data, '\n')
			s.hasData = true
		case "event":
			s.name = append(s.name[:0], value...)
		}
	}
}

// line returns the next line without its terminator. The slice points into
// the read buffer and is valid until the next call.
func (s *Reader) line() ([]byte, error) {
	for {
		if s.skipLF && s.start < s.end {
			if s.buf[s.start] == '\n' {
				s.start++
			}
			s.skipLF = false
		}
		if s.start < s.end {
			if i := s.terminator(); i >= 0 {
				line := s.buf[s.start:i]
				s.skipLF = s.buf[i] == '\r'
				s.start = i + 1
				s.scan = s.start
				if !s.sawLine {
					s.sawLine = true
					line = bytes.TrimPrefix(line, utf8BOM)
				}
				return line, nil
			}
		}
		if s.err != nil {
			return nil, s.err
		}
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// terminator returns the index in buf of the first '\r' or '\n' at or
// after the scan mark, or -1, moving the mark so that a long line arriving
// in many reads is scanned once.
func (s *Reader) terminator() int {
	from := max(s.scan, s.start)
	window := s.buf[from:s.end]
	nl := bytes.IndexByte(window, '\n')
	if nl >= 0 {
		window = window[:nl]
	}
	if cr := bytes.IndexByte(window, '\r'); cr >= 0 {
		return from + cr
	}
	if nl >= 0 {
		return from + nl
	}
	s.scan = s.end
	return -1
}

// fill reads more input, compacting or growing the buffer first. It
// returns an error only when the line in progress can never fit.
func (s *Reader) fill() error {
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		s.scan -= s.start
		s.start, s.end = 0, n
	}
	if s.end == len(s.buf) {
		// One line fills the buffer: allow it up to the event limit plus its
		// terminator (a "\r\n" may straddle reads, skipLF handles that).
		limit := s.max + 1
		if len(s.buf) >= limit {
			s.err = ErrEventTooLarge
			return s.err
		}
		nb := make([]byte, min(2*len(s.buf), limit))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for range 100 {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
			return nil
		}
		if n > 0 {
			return nil
		}
	}
	s.err = io.ErrNoProgress
	return nil
}
