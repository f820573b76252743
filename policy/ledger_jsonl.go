package policy

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
	"unicode/utf8"
)

// Ledger defaults and bounds.
const (
	DefaultLedgerPath          = "data/usage.jsonl"
	DefaultLedgerQueueSize     = 10_000
	DefaultLedgerFlushInterval = 200 * time.Millisecond
	maxLedgerQueueSize         = 1_000_000
	maxLedgerFlushInterval     = time.Minute
	ledgerBufferSize           = 64 << 10
)

// LedgerConfig configures the JSON-lines usage ledger.
type LedgerConfig struct {
	// Path of the append-only file, created (mode 0600, directories 0700)
	// if missing. Default "data/usage.jsonl".
	Path string `yaml:"path"`
	// QueueSize is how many records may wait for the writer before Record
	// blocks. Each waiting record holds about 250 bytes, so the default
	// 10000 is ~2.5 MB and absorbs a few seconds of a slow disk at
	// thousands of requests per second. Range 1..1000000.
	QueueSize int `yaml:"queueSize"`
	// FlushInterval bounds how long a written record may sit in the
	// buffer while records keep arriving; the buffer is also flushed
	// whenever the queue drains. Default 200ms, range 1ms..1m.
	FlushInterval time.Duration `yaml:"flushInterval"`
}

// SetDefaults fills zero fields with their defaults.
func (c *LedgerConfig) SetDefaults() {
	if c.Path == "" {
		c.Path = DefaultLedgerPath
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultLedgerQueueSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultLedgerFlushInterval
	}
}

// Validate reports every problem at once, with paths relative to the
// ledger section.
func (c *LedgerConfig) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if c.QueueSize < 1 || c.QueueSize > maxLedgerQueueSize {
		errs = append(errs, fmt.Errorf("queueSize: must be between 1 and %d", maxLedgerQueueSize))
	}
	if c.FlushInterval < time.Millisecond || c.FlushInterval > maxLedgerFlushInterval {
		errs = append(errs, fmt.Errorf("flushInterval: must be between 1ms and %s", maxLedgerFlushInterval))
	}
	return errors.Join(errs...)
}

// LedgerStats are the ledger's counters since it was opened.
type LedgerStats struct {
	// Written is the number of records flushed to the file.
	Written uint64
	// WaitedFull counts Record calls that found the queue full and had to
	// wait for the writer (backpressure, not loss).
	WaitedFull uint64
	// DroppedAfterClose counts records offered after Close; each is logged.
	DroppedAfterClose uint64
	// WriteErrors counts records lost to an encoding or I/O error; each
	// failure is logged. After Close, Written+WriteErrors equals the
	// records accepted.
	WriteErrors uint64
}

// ledgerFile is what the writer needs from *os.File; tests substitute a
// failing one.
type ledgerFile interface {
	io.Writer
	Sync() error
	Close() error
}

// JSONLLedger appends one JSON object per line to a file. Record hands the
// record to a bounded queue read by one writer goroutine, which owns the
// file. Safe for concurrent use. Lines are whole records; after a write
// error a newline is written first, so a reader skipping blank and invalid
// lines never sees two records merged.
type JSONLLedger struct {
	log   *slog.Logger
	queue chan UsageRecord
	done  chan struct{} // closed when the writer has finished

	// mu makes "closed? else send" atomic with respect to Close, so no
	// Record ever sends on the closed queue. Record holds it shared.
	mu     sync.RWMutex
	closed bool

	closeOnce sync.Once
	closeErr  error

	written, waitedFull, droppedAfterClose, writeErrors atomic.Uint64

	// Owned by the writer goroutine.
	file          ledgerFile
	path          string
	buf           *bufio.Writer
	line          []byte // scratch for one encoded record
	flushInterval time.Duration
	pending       uint64 // records in buf not yet flushed
	needNewline   bool   // a failed write may have left a partial line
}

// NewJSONLLedger opens (creating) cfg.Path for appending and starts the
// writer. cfg gets defaults applied and is validated. log may be nil.
func NewJSONLLedger(cfg LedgerConfig, log *slog.Logger) (*JSONLLedger, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("usage ledger: create directory: %w", err)
		}
	}
	f, err := os.OpenFile(cfg.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	return newJSONLLedger(cfg, log, f), nil
}

func newJSONLLedger(cfg LedgerConfig, log *slog.Logger, f ledgerFile) *JSONLLedger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &JSONLLedger{
		log:           log,
		queue:         make(chan UsageRecord, cfg.QueueSize),
		done:          make(chan struct{}),
		file:          f,
		path:          cfg.Path,
		buf:           bufio.NewWriterSize(f, ledgerBufferSize),
		line:          make([]byte, 0, 512),
		flushInterval: cfg.FlushInterval,
	}
	go l.run()
	return l
}

// Record queues r. It never drops an accepted record: when the queue is
// full it waits for the writer (counted in WaitedFull). After Close it logs
// and counts the drop instead.
func (l *JSONLLedger) Record(r UsageRecord) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.droppedAfterClose.Add(1)
		l.log.Warn("usage ledger closed, record dropped", "requestId", r.RequestID, "workspace", r.Workspace)
		return
	}
	select {
	case l.queue <- r:
	default:
		l.waitedFull.Add(1)
		l.queue <- r // the writer drains even after write errors, so this ends
	}
	l.mu.RUnlock()
}

// Close stops accepting records, writes everything already accepted,
// flushes, fsyncs and closes the file. It is idempotent: later calls wait
// for the first and return its result. The error reports lost records and
// flush, sync or close failures.
func (l *JSONLLedger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock() // waits for Records mid-send; the writer keeps draining
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		<-l.done
	})
	return l.closeErr
}

// Stats returns a snapshot of the counters.
func (l *JSONLLedger) Stats() LedgerStats {
	return LedgerStats{
		Written:           l.written.Load(),
		WaitedFull:        l.waitedFull.Load(),
		DroppedAfterClose: l.droppedAfterClose.Load(),
		WriteErrors:       l.writeErrors.Load(),
	}
}

// run is the writer goroutine, the only user of file and buf.
func (l *JSONLLedger) run() {
	defer close(l.done)
	defer func() {
		// A panic here would kill the process. Count what is lost, keep
		// draining so Record never blocks forever, then release the file.
		if p := recover(); p != nil {
			l.log.Error("usage ledger writer panicked", "panic", p)
			l.writeErrors.Add(l.pending + 1)
			for range l.queue {
				l.writeErrors.Add(1)
			}
			l.closeErr = errors.Join(fmt.Errorf("usage ledger: writer panicked: %v", p), l.file.Close())
		}
	}()
	ticker := time.NewTicker(l.flushInterval)
	defer ticker.Stop()
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				l.closeErr = l.finish()
				return
			}
			l.write(&r)
			if len(l.queue) == 0 {
				l.flush()
			}
		case <-ticker.C:
			l.flush()
		}
	}
}

func (l *JSONLLedger) write(r *UsageRecord) {
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
	if _, err := l.buf.Write(line); err != nil {
		l.fail(err, 1)
		return
	}
	l.pending++
}

func (l *JSONLLedger) flush() {
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
func (l *JSONLLedger) fail(err error, extra uint64) {
	lost := l.pending + extra
	l.writeErrors.Add(lost)
	l.log.Error("usage ledger write failed", "path", l.path, "records", lost, "err", err)
	l.pending = 0
	l.buf.Reset(l.file)
	l.needNewline = true
}

func (l *JSONLLedger) finish() error {
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
// encoding/json produces for UsageRecord with HTML escaping off, without
// reflection or allocation (the fuzz test holds it to that). The time is
// written in UTC, RFC 3339 with nanoseconds.
func appendUsageJSON(b []byte, r *UsageRecord) ([]byte, error) {
	t := r.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("time %d-..: year outside of range [0,9999]", y)
	}
	b = append(b, `{"requestId":`...)
	b = appendJSONString(b, r.RequestID)
	b = append(b, `,"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","workspace":`...)
	b = appendJSONString(b, r.Workspace)
	b = append(b, `,"credentialId":`...)
	b = appendJSONString(b, r.CredentialID)
	b = append(b, `,"persona":`...)
	b = appendJSONString(b, r.Persona)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, r.Model)
	b = append(b, `,"provider":`...)
	b = appendJSONString(b, r.Provider)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, r.Stream)
	b = append(b, `,"inputTokens":`...)
	b = strconv.AppendInt(b, r.InputTokens, 10)
	b = append(b, `,"outputTokens":`...)
	b = strconv.AppendInt(b, r.OutputTokens, 10)
	if r.Estimated {
		b = append(b, `,"estimated":true`...)
	}
	b = append(b, `,"costUsdMicros":`...)
	b = strconv.AppendInt(b, r.CostUsdMicros, 10)
	b = append(b, `,"latencyMs":`...)
	b = strconv.AppendInt(b, r.LatencyMs, 10)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	if r.ErrorCode != "" {
		b = append(b, `,"errorCode":`...)
		b = appendJSONString(b, r.ErrorCode)
	}
	return append(b, '}', '\n'), nil
}

// appendJSONString quotes s as encoding/json does with HTML escaping off:
// control characters escaped, invalid UTF-8 replaced by U+FFFD, U+2028 and
// U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
