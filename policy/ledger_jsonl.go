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
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Ledger defaults and bounds.
const (
	// DefaultLedgerDriver is the embedded database: durable, queryable
	// (the admin usage API) and needing no server.
	DefaultLedgerDriver        = LedgerDriverSQLite
	DefaultLedgerPath          = "data/usage.jsonl"
	DefaultSQLiteLedgerPath    = "data/usage.db"
	DefaultLedgerSpoolPath     = "data/usage-spool.jsonl"
	DefaultLedgerQueueSize     = 10_000
	DefaultLedgerFlushInterval = 200 * time.Millisecond
	DefaultLedgerBatchSize     = 500
	DefaultLedgerWriteTimeout  = 5 * time.Second
	DefaultLedgerRetryInterval = time.Second
	maxLedgerQueueSize         = 1_000_000
	maxLedgerFlushInterval     = time.Minute
	maxLedgerBatchSize         = 10_000
	ledgerBufferSize           = 64 << 10
)

// Ledger drivers, the values of LedgerConfig.Driver.
const (
	LedgerDriverJSONL    = "jsonl"
	LedgerDriverSQLite   = "sqlite"
	LedgerDriverPostgres = "postgres"
)

// LedgerConfig configures the usage ledger. Driver picks the store; the
// queue settings apply to every driver, the batch, spool and retry
// settings to the SQL drivers only.
type LedgerConfig struct {
	// Driver is jsonl (an append-only file, no queries beyond a scan),
	// sqlite (embedded database, one node) or postgres (shared by a
	// fleet). Default jsonl.
	Driver string `yaml:"driver"`
	// Path of the JSON-lines file (jsonl) or the database file (sqlite),
	// created (mode 0600, directories 0700) if missing. Default
	// "data/usage.jsonl" for jsonl, "data/usage.db" for sqlite; must be
	// empty for postgres. A sqlite path must not contain '?'.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (URL or key=value form),
	// required for postgres and rejected otherwise. It is a secret: it
	// is never logged nor put in errors; use ${ENV} in the config file.
	DSN string `yaml:"dsn"`
	// QueueSize is how many records may wait for the writer before Record
	// blocks. Each waiting record holds about 250 bytes, so the default
	// 10000 is ~2.5 MB and absorbs a few seconds of a slow disk at
	// thousands of requests per second. Range 1..1000000.
	QueueSize int `yaml:"queueSize"`
	// FlushInterval is how often the writer writes what it has buffered
	// (sooner when a batch is full), so it bounds how long a record waits
	// and what a kill -9 loses. Default 200ms, range 1ms..1m.
	FlushInterval time.Duration `yaml:"flushInterval"`
	// BatchSize is the most records written in one transaction (sql
	// drivers). Default 500, range 1..10000.
	BatchSize int `yaml:"batchSize"`
	// SpoolPath is the local append-only file that keeps batches the
	// store refused until it is back (sql drivers). Default
	// "data/usage-spool.jsonl"; each gateway process needs its own.
	SpoolPath string `yaml:"spoolPath"`
	// WriteTimeout bounds one batch transaction; past it the batch is
	// spooled (sql drivers). Default 5s, range 10ms..1m.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// RetryInterval is how often spooled records are offered to the store
	// again (sql drivers). Default 1s, range 10ms..10m.
	RetryInterval time.Duration `yaml:"retryInterval"`
}

// SetDefaults fills zero fields with their defaults.
func (c *LedgerConfig) SetDefaults() {
	if c.Driver == "" {
		c.Driver = DefaultLedgerDriver
	}
	if c.Path == "" {
		switch c.Driver {
		case LedgerDriverJSONL:
			c.Path = DefaultLedgerPath
		case LedgerDriverSQLite:
			c.Path = DefaultSQLiteLedgerPath
		}
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultLedgerQueueSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultLedgerFlushInterval
	}
	if c.Driver == LedgerDriverJSONL {
		return
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultLedgerBatchSize
	}
	if c.SpoolPath == "" {
		c.SpoolPath = DefaultLedgerSpoolPath
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultLedgerWriteTimeout
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultLedgerRetryInterval
	}
}

// Validate reports every problem at once, with paths relative to the
// ledger section. It never quotes the DSN.
func (c *LedgerConfig) Validate() error {
	var errs []error
	sql := false
	switch c.Driver {
	case LedgerDriverJSONL:
		if c.Path == "" {
			errs = append(errs, errors.New("path: required"))
		}
	case LedgerDriverSQLite:
		sql = true
		if c.Path == "" {
			errs = append(errs, errors.New("path: required"))
		} else if strings.ContainsRune(c.Path, '?') {
			errs = append(errs, errors.New("path: must not contain '?'"))
		}
	case LedgerDriverPostgres:
		sql = true
		if c.Path != "" {
			errs = append(errs, errors.New("path: not used by driver postgres (set dsn)"))
		}
		if c.DSN == "" {
			errs = append(errs, errors.New("dsn: required for driver postgres"))
		} else if _, err := pgx.ParseConfig(c.DSN); err != nil {
			// pgx's message may quote the string; ours must not.
			errs = append(errs, errors.New("dsn: not a valid PostgreSQL connection string"))
		}
	default:
		errs = append(errs, errors.New("driver: must be one of jsonl, sqlite, postgres"))
	}
	if c.DSN != "" && c.Driver != LedgerDriverPostgres {
		errs = append(errs, errors.New("dsn: only used by driver postgres"))
	}
	if c.QueueSize < 1 || c.QueueSize > maxLedgerQueueSize {
		errs = append(errs, fmt.Errorf("queueSize: must be between 1 and %d", maxLedgerQueueSize))
	}
	if c.FlushInterval < time.Millisecond || c.FlushInterval > maxLedgerFlushInterval {
		errs = append(errs, fmt.Errorf("flushInterval: must be between 1ms and %s", maxLedgerFlushInterval))
	}
	if sql {
		if c.BatchSize < 1 || c.BatchSize > maxLedgerBatchSize {
			errs = append(errs, fmt.Errorf("batchSize: must be between 1 and %d", maxLedgerBatchSize))
		}
		if c.SpoolPath == "" {
			errs = append(errs, errors.New("spoolPath: required"))
		} else if c.Driver == LedgerDriverSQLite && filepath.Clean(c.SpoolPath) == filepath.Clean(c.Path) {
			errs = append(errs, errors.New("spoolPath: must differ from path"))
		}
		if c.WriteTimeout < 10*time.Millisecond || c.WriteTimeout > time.Minute {
			errs = append(errs, errors.New("writeTimeout: must be between 10ms and 1m0s"))
		}
		if c.RetryInterval < 10*time.Millisecond || c.RetryInterval > 10*time.Minute {
			errs = append(errs, errors.New("retryInterval: must be between 10ms and 10m0s"))
		}
	}
	return errors.Join(errs...)
}

// LedgerStats are a ledger's counters since it was opened. Fields a
// driver does not have stay zero.
type LedgerStats struct {
	// Written is the number of records the writer stored: flushed to the
	// file (jsonl) or committed to the database (sql), duplicates
	// included.
	Written uint64
	// WaitedFull counts Record calls that found the queue full and had to
	// wait for the writer (backpressure, not loss).
	WaitedFull uint64
	// DroppedAfterClose counts records offered after Close; each is logged.
	DroppedAfterClose uint64
	// WriteErrors counts records lost to an encoding or I/O error; each
	// failure is logged. For jsonl, after Close Written+WriteErrors
	// equals the records accepted; for sql a record is lost only when
	// both the store and the spool refuse it.
	WriteErrors uint64
	// QueueDepth is how many records wait for the writer right now.
	QueueDepth int
	// Batches counts transactions the writer committed (sql).
	Batches uint64
	// BatchLatency is the total time of the writer's store attempts,
	// failed ones included, and BatchLatencyMax the longest; with
	// Batches+StoreErrors they give the mean (sql).
	BatchLatency, BatchLatencyMax time.Duration
	// StoreErrors counts failed batch writes to the store (sql); their
	// records went to the spool, they are not lost.
	StoreErrors uint64
	// Spooled counts records written to the spool file (sql).
	Spooled uint64
	// Redelivered counts spooled records later committed to the store
	// (sql). After Close, Written+Redelivered+SpoolPending+WriteErrors
	// equals the records accepted.
	Redelivered uint64
	// SpoolPending is how many records the spool holds now, including
	// those found at start (sql).
	SpoolPending int64
	// SpoolCorrupt counts spool lines that could not be decoded and were
	// skipped, each logged: only a crash mid-append leaves one (sql).
	SpoolCorrupt uint64
}

// recordQueue is the front half every ledger shares: a bounded queue read
// by one writer goroutine, backpressure instead of loss when it is full,
// and a close protocol under which no Record ever sends on the closed
// channel. The zero value is not usable; call init.
type recordQueue struct {
	log *slog.Logger
	ch  chan UsageRecord

	// mu makes "closed? else send" atomic with respect to close, so no
	// put ever sends on the closed channel. put holds it shared.
	mu     sync.RWMutex
	closed bool

	waitedFull, droppedAfterClose atomic.Uint64
}

func (q *recordQueue) init(size int, log *slog.Logger) {
	q.log = log
	q.ch = make(chan UsageRecord, size)
}

// put queues r. It never drops an accepted record: when the queue is full
// it waits for the writer, counting and logging the wait (the log only on
// the 1st, 2nd, 4th, 8th... wait, so a saturated store cannot flood the
// log). After close it logs and counts the drop instead.
func (q *recordQueue) put(r UsageRecord) {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		q.droppedAfterClose.Add(1)
		q.log.Warn("usage ledger closed, record dropped", "requestId", r.RequestID, "workspace", r.Workspace)
		return
	}
	select {
	case q.ch <- r:
	default:
		if n := q.waitedFull.Add(1); n&(n-1) == 0 {
			q.log.Warn("usage ledger queue full, request waits for the writer", "queueSize", cap(q.ch), "waitsSoFar", n)
		}
		q.ch <- r // the writer drains even after write errors, so this ends
	}
	q.mu.RUnlock()
}

// close stops accepting records and closes the channel, so the writer's
// loop ends once it has read everything accepted. Call it once.
func (q *recordQueue) close() {
	q.mu.Lock() // waits for puts mid-send; the writer keeps draining
	q.closed = true
	close(q.ch)
	q.mu.Unlock()
}

// drain is the writer loop. It hands each record to add, and calls flush
// when add reports a full batch and on every tick, so a record waits at
// most one interval. It does not flush merely because the queue is
// momentarily empty: at a few thousand requests per second that would
// be one write (and one goroutine wake-up) per request, the largest
// avoidable cost on the request path, where a tick makes it one per
// interval. It returns once the queue is closed and empty, without a
// final flush: the caller's shutdown does that.
func (q *recordQueue) drain(interval time.Duration, add func(*UsageRecord) (full bool), flush func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case r, ok := <-q.ch:
			if !ok {
				return
			}
			if add(&r) {
				flush()
			}
		case <-ticker.C:
			flush()
		}
	}
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
// lines never sees two records merged. A kill -9 loses what is queued or
// buffered: the records of about the last FlushInterval.
type JSONLLedger struct {
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

// NewJSONLLedger opens (creating) cfg.Path for appending and starts the
// writer. cfg gets defaults applied and is validated; its driver must be
// jsonl or empty. log may be nil.
func NewJSONLLedger(cfg LedgerConfig, log *slog.Logger) (*JSONLLedger, error) {
	if cfg.Driver == "" {
		cfg.Driver = LedgerDriverJSONL
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	if cfg.Driver != LedgerDriverJSONL {
		return nil, fmt.Errorf("usage ledger: driver %s is not jsonl; use OpenLedger", cfg.Driver)
	}
	if err := makeParentDir(cfg.Path); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	f, err := os.OpenFile(cfg.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	return newJSONLLedger(cfg, log, f, endsTorn(cfg.Path)), nil
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

func newJSONLLedger(cfg LedgerConfig, log *slog.Logger, f ledgerFile, torn bool) *JSONLLedger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &JSONLLedger{
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
func (l *JSONLLedger) Record(r UsageRecord) { l.q.put(r) }

// Close stops accepting records, writes everything already accepted,
// flushes, fsyncs and closes the file. It is idempotent: later calls wait
// for the first and return its result. The error reports lost records and
// flush, sync or close failures.
func (l *JSONLLedger) Close() error {
	l.closeOnce.Do(func() {
		l.q.close()
		<-l.done
	})
	return l.closeErr
}

// Stats returns a snapshot of the counters.
func (l *JSONLLedger) Stats() LedgerStats {
	return LedgerStats{
		Written:           l.written.Load(),
		WaitedFull:        l.q.waitedFull.Load(),
		DroppedAfterClose: l.q.droppedAfterClose.Load(),
		WriteErrors:       l.writeErrors.Load(),
		QueueDepth:        len(l.q.ch),
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
			for range l.q.ch {
				l.writeErrors.Add(1)
			}
			l.closeErr = errors.Join(fmt.Errorf("usage ledger: writer panicked: %v", p), l.file.Close())
		}
	}()
	l.q.drain(l.flushInterval, func(r *UsageRecord) bool { l.write(r); return false }, l.flush)
	l.closeErr = l.finish()
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
	if r.Route != "" {
		b = append(b, `,"route":`...)
		b = appendJSONString(b, r.Route)
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
