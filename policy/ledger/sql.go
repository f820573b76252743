package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQL stores usage records in a SQL database, SQLite (one node) or
// PostgreSQL (a fleet), in the table usage_records keyed by request id.
//
// Record hands the record to a bounded queue read by one writer goroutine,
// which commits a batch when BatchSize records are waiting and otherwise
// every FlushInterval (one commit, hence one fsync, per interval rather
// than per request). Inserts are idempotent
// (a stored request id is skipped), so any batch may be written twice.
// When a batch cannot be committed (store down, WriteTimeout passed) it
// is appended to the spool file and fsynced, the store is marked down,
// and later batches go straight to the spool; a second goroutine offers
// the spool to the store every RetryInterval and truncates it only after
// everything in it was committed. A full queue makes Record wait
// (counted and logged), never drop. Close writes everything accepted, to
// the store or else to the spool, which the next ledger opened on the
// same spool delivers.
//
// Crash window: a kill -9 loses the records accepted by Record but neither
// committed nor fsynced into the spool: those in the queue and the batch
// being written. While the writer keeps up, that is the records of at
// most the last FlushInterval;
// it can grow to QueueSize+BatchSize records only while the store is
// slower than the traffic (which WaitedFull shows). Committed rows
// survive (SQLite runs with synchronous=FULL), and so does the spool.
//
// Safe for concurrent use. Usage reads the committed rows; spooled
// records appear once redelivered.
type SQL struct {
	q       recordQueue
	log     *slog.Logger
	db      *sql.DB
	dialect Dialect
	spool   *spool

	batchSize     int
	flushInterval time.Duration
	writeTimeout  time.Duration
	retryInterval time.Duration

	// down is set, under the spool lock, when a batch was spooled, and
	// cleared, under the same lock, once the spool was emptied into the
	// store: while set, the writer spools without trying the store.
	down atomic.Bool

	done          chan struct{} // closed when the writer has finished
	stop          chan struct{} // tells the redelivery loop to end
	redeliverDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	written, batches, storeErrors, writeErrors, redelivered atomic.Uint64
	latencyNanos, latencyMaxNanos                           atomic.Int64

	// Owned by the writer goroutine.
	batch []UsageRecord
	args  []any
	// insertFull caches the statement for the dialect's rowsPerInsert rows.
	insertFull string

	// stmts are the insert statements prepared so far, by row count (see
	// prepared). The writer and the redelivery loop share them.
	stmtMu sync.Mutex
	stmts  map[int]*sql.Stmt
}

// newSQL migrates db, opens the spool and starts the writer and the
// redelivery loop. It closes db on failure.
func newSQL(ctx context.Context, cfg Config, log *slog.Logger, db *sql.DB, d Dialect) (*SQL, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := migrate(ctx, db, d); err != nil {
		db.Close()
		// pgx's errors name host, user and database, never the password.
		return nil, fmt.Errorf("usage ledger: %s: %w", d.name, err)
	}
	sp, err := openSpool(cfg.SpoolPath, log)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	l := &SQL{
		log:           log,
		db:            db,
		dialect:       d,
		spool:         sp,
		batchSize:     cfg.BatchSize,
		flushInterval: cfg.FlushInterval,
		writeTimeout:  cfg.WriteTimeout,
		retryInterval: cfg.RetryInterval,
		done:          make(chan struct{}),
		stop:          make(chan struct{}),
		redeliverDone: make(chan struct{}),
		batch:         make([]UsageRecord, 0, cfg.BatchSize),
		insertFull:    d.insertSQL(d.rowsPerInsert),
	}
	if n := sp.pending.Load(); n > 0 {
		log.Info("usage ledger: spool holds records from an earlier run, delivering", "path", cfg.SpoolPath, "records", n)
	}
	l.q.init(cfg.QueueSize, log)
	go l.run()
	go l.redeliverLoop()
	return l, nil
}

// Record queues r. It never drops an accepted record: when the queue is
// full it waits for the writer (counted in WaitedFull, logged). After
// Close it logs and counts the drop instead.
func (l *SQL) Record(r UsageRecord) { l.q.put(r) }

// Close stops accepting records and writes everything accepted, to the
// store or, if it is down, to the spool; offers the spool to the store
// once more if the store is up; then closes spool and database. It is
// idempotent: later calls wait for the first and return its result. The
// error reports records lost (refused by both store and spool) and close
// failures; records left in the spool are logged, not an error.
func (l *SQL) Close() error {
	l.closeOnce.Do(func() {
		l.q.close()
		<-l.done
		close(l.stop)
		<-l.redeliverDone
		if l.spool.pending.Load() > 0 && !l.down.Load() {
			l.redeliver()
		}
		if n := l.spool.pending.Load(); n > 0 {
			l.log.Warn("usage ledger: records left in the spool, delivered by the next start",
				"path", l.spool.path, "records", n)
		}
		var errs []error
		if n := l.writeErrors.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("usage ledger: %d records could not be stored nor spooled", n))
		}
		if err := l.spool.close(); err != nil {
			errs = append(errs, fmt.Errorf("usage ledger: spool: %w", err))
		}
		l.stmtMu.Lock()
		for _, st := range l.stmts {
			_ = st.Close()
		}
		l.stmts = nil
		l.stmtMu.Unlock()
		if err := l.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("usage ledger: close database: %w", err))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// Stats returns a snapshot of the counters.
func (l *SQL) Stats() Stats {
	st := l.q.stats(l.written.Load(), l.writeErrors.Load()+l.spool.lostUnencodable.Load())
	st.Batches = l.batches.Load()
	st.BatchLatency = time.Duration(l.latencyNanos.Load())
	st.BatchLatencyMax = time.Duration(l.latencyMaxNanos.Load())
	st.StoreErrors = l.storeErrors.Load()
	st.Spooled = l.spool.spooled.Load()
	st.Redelivered = l.redelivered.Load()
	st.SpoolPending = l.spool.pending.Load()
	st.SpoolCorrupt = l.spool.corrupt.Load()
	return st
}
