package ledger

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ledger defaults and bounds.
const (
	// DefaultDriver is the embedded database: durable, queryable
	// (the admin usage API) and needing no server.
	DefaultDriver        = DriverSQLite
	DefaultJSONLPath     = "data/usage.jsonl"
	DefaultSQLitePath    = "data/usage.db"
	DefaultSpoolPath     = "data/usage-spool.jsonl"
	DefaultQueueSize     = 10_000
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultBatchSize     = 500
	DefaultWriteTimeout  = 5 * time.Second
	DefaultRetryInterval = time.Second
	maxQueueSize         = 1_000_000
	maxFlushInterval     = time.Minute
	maxBatchSize         = 10_000
	ledgerBufferSize     = 64 << 10
)

// Ledger drivers, the values of Config.Driver.
const (
	DriverJSONL    = "jsonl"
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config configures the usage ledger. Driver picks the store; the
// queue settings apply to every driver, the batch, spool and retry
// settings to the SQL drivers only.
type Config struct {
	// Driver is jsonl (an append-only file, no queries beyond a scan),
	// sqlite (embedded database, one node) or postgres (shared by a
	// fleet). Default sqlite.
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
func (c *Config) SetDefaults() {
	if c.Driver == "" {
		c.Driver = DefaultDriver
	}
	if c.Path == "" {
		switch c.Driver {
		case DriverJSONL:
			c.Path = DefaultJSONLPath
		case DriverSQLite:
			c.Path = DefaultSQLitePath
		}
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Driver == DriverJSONL {
		return
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.SpoolPath == "" {
		c.SpoolPath = DefaultSpoolPath
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
}

// Validate reports every problem at once, with paths relative to the
// ledger section. It never quotes the DSN.
func (c *Config) Validate() error {
	var errs []error
	sql := false
	switch c.Driver {
	case DriverJSONL:
		if c.Path == "" {
			errs = append(errs, errors.New("path: required"))
		}
	case DriverSQLite:
		sql = true
		if c.Path == "" {
			errs = append(errs, errors.New("path: required"))
		} else if strings.ContainsRune(c.Path, '?') {
			errs = append(errs, errors.New("path: must not contain '?'"))
		}
	case DriverPostgres:
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
	if c.DSN != "" && c.Driver != DriverPostgres {
		errs = append(errs, errors.New("dsn: only used by driver postgres"))
	}
	if c.QueueSize < 1 || c.QueueSize > maxQueueSize {
		errs = append(errs, fmt.Errorf("queueSize: must be between 1 and %d", maxQueueSize))
	}
	if c.FlushInterval < time.Millisecond || c.FlushInterval > maxFlushInterval {
		errs = append(errs, fmt.Errorf("flushInterval: must be between 1ms and %s", maxFlushInterval))
	}
	if sql {
		if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
			errs = append(errs, fmt.Errorf("batchSize: must be between 1 and %d", maxBatchSize))
		}
		if c.SpoolPath == "" {
			errs = append(errs, errors.New("spoolPath: required"))
		} else if c.Driver == DriverSQLite && filepath.Clean(c.SpoolPath) == filepath.Clean(c.Path) {
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

// Stats are a ledger's counters since it was opened. Fields a
// driver does not have stay zero.
type Stats struct {
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
