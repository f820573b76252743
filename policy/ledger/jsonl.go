package ledger

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonborn/edge/internal/jsonx"
)

// ledgerFile is what the writer needs from *os.File; tests substitute a
// failing one.
type ledgerFile interface {
	io.Writer
	Sync() error
	Close() error
}

// JSONL appends one JSON object per line to a file. Record hands the
// record to a bounded queue read by one writer goroutine, which owns the
// file. Safe for concurrent use. Lines are whole records; after a write
// error a newline is written first, so a reader skipping blank and invalid
// lines never sees two records merged. A kill -9 loses what is queued or
// buffered: the records of about the last FlushInterval.
type JSONL struct {
	q    recordQueue
	log  *slog.Logger
	done chan struct{} // closed when the writer has finished

	closeOnce sync.Once
	closeErr  error

	written, writeErrors atomic.Uint64

	// Owned by the writer goroutine.
	file          ledgerFile
	path          string
	buf           *bufio.Writer
	line          []byte // scratch for one encoded record
	flushInterval time.Duration
	pending       uint64 // records in buf not yet flushed
	needNewline   bool   // a failed write or a crash may have left a partial line
}

// NewJSONL opens (creating) cfg.Path for appending and starts the
// writer. cfg gets defaults applied and is validated; its driver must be
// jsonl or empty. log may be nil.
func NewJSONL(cfg Config, log *slog.Logger) (*JSONL, error) {
	if cfg.Driver == "" {
		cfg.Driver = DriverJSONL
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	if cfg.Driver != DriverJSONL {
		return nil, fmt.Errorf("usage ledger: driver %s is not jsonl; use Open", cfg.Driver)
	}
	if err := makeParentDir(cfg.Path); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	f, err := os.OpenFile(cfg.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	return newJSONL(cfg, log, f, endsTorn(cfg.Path)), nil
}

// endsTorn reports whether the file at path ends inside a line: a
// process killed mid-write left half a record, and the next record must
// start on a line of its own rather than complete that one.
func endsTorn(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false
	}
	var last [1]byte
	_, err = f.ReadAt(last[:], st.Size()-1)
	return err == nil && last[0] != '\n'
}

// makeParentDir creates path's directory (mode 0700) if missing.
func makeParentDir(path string) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	return nil
}

func newJSONL(cfg Config, log *slog.Logger, f ledgerFile, torn bool) *JSONL {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &JSONL{
		log:           log,
		done:          make(chan struct{}),
		file:          f,
		path:          cfg.Path,
		buf:           bufio.NewWriterSize(f, ledgerBufferSize),
		line:          make([]byte, 0, 512),
		flushInterval: cfg.FlushInterval,
		needNewline:   torn,
	}
	l.q.init(cfg.QueueSize, log)
	go l.run()
	return l
}

// Record queues r. It never drops an accepted record: when the queue is
// full it waits for the writer (counted in WaitedFull, logged). After
// Close it logs and counts the drop instead.
func (l *JSONL) Record(r UsageRecord) { l.q.put(r) }

// Close stops accepting records, writes everything already accepted,
// flushes, fsyncs and closes the file. It is idempotent: later calls wait
// for the first and return its result. The error reports lost records and
// flush, sync or close failures.
func (l *JSONL) Close() error {
	l.closeOnce.Do(func() {
		l.q.close()
		<-l.done
	})
	return l.closeErr
}

// Stats returns a snapshot of the counters.
func (l *JSONL) Stats() Stats {
	return l.q.stats(l.written.Load(), l.writeErrors.Load())
}

// run is the writer goroutine, the only user of file and buf.
func (l *JSONL) run() {
	defer close(l.done)
	defer func() {
		// A panic here would kill the process. Count what is lost, keep
		// draining so Record never blocks forever, then release the file.
		if p := recover(); p != nil {
			l.log.Error("usage ledger writer panicked", "panic", p)
			l.writeErrors.Add(l.pending + 1)
			for range l.q.ch {
				l.writeErrors.Add(1)
			}
			l.closeErr = errors.Join(fmt.Errorf("usage ledger: writer panicked: %v", p), l.file.Close())
		}
	}()
	l.q.drain(l.flushInterval, func(r *UsageRecord) bool { l.write(r); return false }, l.flush)
	l.closeErr = l.finish()
}

func (l *JSONL) write(r *UsageRecord) {
	if l.needNewline {
		if err := l.buf.WriteByte('\n'); err != nil {
			l.fail(err, 1)
			return
		}
		l.needNewline = false
	}
	line, err := appendUsageJSON(l.line[:0], r)
	if err != nil {
		// Only this record is lost; nothing was written.
		l.writeErrors.Add(1)
		l.log.Error("usage ledger: record not encodable", "requestId", r.RequestID, "err", err)
		return
	}
	l.line = line
	if l.buf.Available() < len(line) && l.buf.Buffered() > 0 {
		// Write whole lines only: a full buffer would otherwise go out
		// ending mid-record, and a kill -9 then would tear a line.
		l.flush()
	}
	if _, err := l.buf.Write(line); err != nil {
		l.fail(err, 1)
		return
	}
	l.pending++
}

func (l *JSONL) flush() {
	if l.buf.Buffered() == 0 {
		return
	}
	if err := l.buf.Flush(); err != nil {
		l.fail(err, 0)
		return
	}
	l.written.Add(l.pending)
	l.pending = 0
}

// fail accounts for a write error: the buffered records plus extra are
// lost, the sticky bufio error is cleared so later records can still be
// written once the disk recovers.
func (l *JSONL) fail(err error, extra uint64) {
	lost := l.pending + extra
	l.writeErrors.Add(lost)
	l.log.Error("usage ledger write failed", "path", l.path, "records", lost, "err", err)
	l.pending = 0
	l.buf.Reset(l.file)
	l.needNewline = true
}

func (l *JSONL) finish() error {
	l.flush()
	var errs []error
	if n := l.writeErrors.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("usage ledger: %d records could not be written", n))
	}
	if err := l.file.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("usage ledger: sync: %w", err))
	}
	if err := l.file.Close(); err != nil {
		errs = append(errs, fmt.Errorf("usage ledger: close: %w", err))
	}
	return errors.Join(errs...)
}

// appendUsageJSON appends r as one JSON object, byte for byte what
// json.Marshal produces for UsageRecord (strings through jsonx's one
// encoder, so <, > and & come out escaped as \u003c, \u003e, \u0026), without
// reflection or allocation (the fuzz test holds it to that). The time is
// written in UTC, RFC 3339 with nanoseconds.
func appendUsageJSON(b []byte, r *UsageRecord) ([]byte, error) {
	t := r.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("time %d-..: year outside of range [0,9999]", y)
	}
	b = append(b, `{"requestId":`...)
	b = jsonx.AppendString(b, r.RequestID)
	b = append(b, `,"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","workspace":`...)
	b = jsonx.AppendString(b, r.Workspace)
	b = append(b, `,"credentialId":`...)
	b = jsonx.AppendString(b, r.CredentialID)
	b = append(b, `,"persona":`...)
	b = jsonx.AppendString(b, r.Persona)
	b = append(b, `,"model":`...)
	b = jsonx.AppendString(b, r.Model)
	b = append(b, `,"provider":`...)
	b = jsonx.AppendString(b, r.Provider)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, r.Stream)
	b = append(b, `,"inputTokens":`...)
	b = strconv.AppendInt(b, r.InputTokens, 10)
	b = append(b, `,"outputTokens":`...)
	b = strconv.AppendInt(b, r.OutputTokens, 10)
	b = appendNonZero(b, `,"cacheReadTokens":`, r.CacheReadTokens)
	b = appendNonZero(b, `,"cacheWrite5mTokens":`, r.CacheWrite5mTokens)
	b = appendNonZero(b, `,"cacheWrite1hTokens":`, r.CacheWrite1hTokens)
	if r.Estimated {
		b = append(b, `,"estimated":true`...)
	}
	b = append(b, `,"costUsdMicros":`...)
	b = strconv.AppendInt(b, r.CostUsdMicros, 10)
	b = appendNonZero(b, `,"cacheSavingsUsdMicros":`, r.CacheSavingsUsdMicros)
	b = append(b, `,"latencyMs":`...)
	b = strconv.AppendInt(b, r.LatencyMs, 10)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	if r.ErrorCode != "" {
		b = append(b, `,"errorCode":`...)
		b = jsonx.AppendString(b, r.ErrorCode)
	}
	if r.Route != "" {
		b = append(b, `,"route":`...)
		b = jsonx.AppendString(b, r.Route)
	}
	return append(b, '}', '\n'), nil
}

// appendNonZero appends member (its `,"name":` text) and v, unless v is
// zero: json's omitempty, which keeps lines without caching as they were.
func appendNonZero(b []byte, member string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, member...), v, 10)
}
