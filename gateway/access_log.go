package gateway

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/moonborn/edge/internal/jsonx"
)

// accessLine collects one access line's fields, in order, and writes
// them either as a JSON line of its own making, into Options.AccessWriter,
// or as slog attributes through Options.Log when there is no such
// writer. The field list is written once (Server.accessLog) for both.
//
// The JSON line is the one slog's JSON handler writes for the same
// record ({"time","level","msg", then the fields}), built without slog's
// Record, attribute values and handler state: slog was most of the
// access log's cost per request. Lines come from a pool and are reused.
type accessLine struct {
	json  bool
	msg   string // slog's message (the JSON line has it in buf)
	buf   []byte
	attrs []slog.Attr
}

var accessLines = sync.Pool{New: func() any { return &accessLine{buf: make([]byte, 0, 512)} }}

// newAccessLine starts the access line with message msg, at Info level.
func (s *Server) newAccessLine(msg string) *accessLine {
	l := accessLines.Get().(*accessLine)
	l.json = s.opts.AccessWriter != nil
	l.buf, l.attrs = l.buf[:0], l.attrs[:0]
	if l.json {
		l.buf = append(l.buf, `{"time":"`...)
		l.buf = time.Now().AppendFormat(l.buf, time.RFC3339Nano)
		l.buf = append(l.buf, `","level":"INFO","msg":`...)
		l.buf = jsonx.AppendString(l.buf, msg)
	}
	l.msg = msg
	return l
}

func (l *accessLine) key(k string) {
	l.buf = append(l.buf, ',', '"')
	l.buf = append(l.buf, k...)
	l.buf = append(l.buf, '"', ':')
}

// str adds a string field. Keys are the gateway's own constants: plain
// JSON names, written unescaped.
func (l *accessLine) str(k, v string) {
	if !l.json {
		l.attrs = append(l.attrs, slog.String(k, v))
		return
	}
	l.key(k)
	l.buf = jsonx.AppendString(l.buf, v)
}

// int adds an integer field.
func (l *accessLine) int(k string, v int64) {
	if !l.json {
		l.attrs = append(l.attrs, slog.Int64(k, v))
		return
	}
	l.key(k)
	l.buf = strconv.AppendInt(l.buf, v, 10)
}

// bool adds a boolean field.
func (l *accessLine) bool(k string, v bool) {
	if !l.json {
		l.attrs = append(l.attrs, slog.Bool(k, v))
		return
	}
	l.key(k)
	l.buf = strconv.AppendBool(l.buf, v)
}

// write ends the line, writes it in one Write and returns it to the pool.
func (s *Server) writeAccess(l *accessLine) {
	if l.json {
		l.buf = append(l.buf, '}', '\n')
		_, _ = s.opts.AccessWriter.Write(l.buf)
	} else {
		s.log.LogAttrs(context.Background(), slog.LevelInfo, l.msg, l.attrs...)
		clear(l.attrs) // drop string references
	}
	if cap(l.buf) <= 4<<10 {
		accessLines.Put(l)
	}
}
