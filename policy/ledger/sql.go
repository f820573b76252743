package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
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

// Open opens the ledger cfg.Driver names: jsonl, sqlite or postgres.
// cfg gets defaults applied and is validated. For the SQL drivers ctx
// bounds connecting and migrating; the store must be reachable at start.
// log may be nil.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (UsageLedger, error) {
	cfg.SetDefaults()
	switch cfg.Driver {
	case DriverSQLite:
		return NewSQLite(ctx, cfg, log)
	case DriverPostgres:
		return NewPostgres(ctx, cfg, log)
	default:
		return NewJSONL(cfg, log)
	}
}

// NewSQLite opens (creating, mode 0600, directories 0700) the SQLite
// database at cfg.Path in WAL mode, migrates it and starts the writer.
// The driver must be sqlite or empty.
func NewSQLite(ctx context.Context, cfg Config, log *slog.Logger) (*SQL, error) {
	if cfg.Driver == "" {
		cfg.Driver = DriverSQLite
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	if cfg.Driver != DriverSQLite {
		return nil, fmt.Errorf("usage ledger: driver %s is not sqlite", cfg.Driver)
	}
	if err := makeParentDir(cfg.Path); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	// Create the file first so it gets our mode; SQLite gives the -wal
	// and -shm files the database's permissions.
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", sqliteDSN(cfg.Path))
	if err != nil {
		return nil, fmt.Errorf("usage ledger: sqlite: %w", err)
	}
	// One writer and the redelivery loop write; queries read beside them
	// (WAL lets readers run during a write).
	db.SetMaxOpenConns(4)
	return newSQL(ctx, cfg, log, db, sqliteDialect)
}

// sqliteDSN opens path with the ledger's settings: busy_timeout covers a
// concurrent reader checkpointing; IMMEDIATE transactions take the write
// lock at BEGIN, so two writers never deadlock upgrading a read lock;
// synchronous=FULL makes a commit durable across power loss, not only
// across a process crash.
func sqliteDSN(path string) string {
	return path + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)"
}

// NewPostgres connects to cfg.DSN, migrates the schema and starts
// the writer. The driver must be postgres. It uses pgx through
// database/sql so both dialects share one code path; the writer commits
// one batch at a time, so pgxpool's extra throughput would buy nothing.
func NewPostgres(ctx context.Context, cfg Config, log *slog.Logger) (*SQL, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	if cfg.Driver != DriverPostgres {
		return nil, fmt.Errorf("usage ledger: driver %s is not postgres", cfg.Driver)
	}
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, errors.New("usage ledger: dsn: not a valid PostgreSQL connection string")
	}
	if pc.ConnectTimeout == 0 || pc.ConnectTimeout > cfg.WriteTimeout {
		pc.ConnectTimeout = cfg.WriteTimeout
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return newSQL(ctx, cfg, log, db, postgresDialect)
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
	return Stats{
		Written:           l.written.Load(),
		WaitedFull:        l.q.waitedFull.Load(),
		DroppedAfterClose: l.q.droppedAfterClose.Load(),
		WriteErrors:       l.writeErrors.Load() + l.spool.lostUnencodable.Load(),
		QueueDepth:        len(l.q.ch),
		Batches:           l.batches.Load(),
		BatchLatency:      time.Duration(l.latencyNanos.Load()),
		BatchLatencyMax:   time.Duration(l.latencyMaxNanos.Load()),
		StoreErrors:       l.storeErrors.Load(),
		Spooled:           l.spool.spooled.Load(),
		Redelivered:       l.redelivered.Load(),
		SpoolPending:      l.spool.pending.Load(),
		SpoolCorrupt:      l.spool.corrupt.Load(),
	}
}

// run is the writer goroutine, the only user of batch and args.
func (l *SQL) run() {
	defer close(l.done)
	l.q.drain(l.flushInterval, func(r *UsageRecord) bool {
		l.batch = append(l.batch, *r)
		return len(l.batch) >= l.batchSize
	}, l.flush)
	l.flush()
}

// flush commits the batch, or spools it when the store is down or the
// commit fails.
func (l *SQL) flush() {
	if len(l.batch) == 0 {
		return
	}
	defer func() {
		clear(l.batch) // drop string references
		l.batch = l.batch[:0]
	}()
	tried := false
	for {
		if !tried && !l.down.Load() {
			tried = true
			if l.tryStore() {
				return
			}
		}
		l.spool.mu.Lock()
		if !tried && !l.down.Load() {
			// The spool was emptied while we waited for it: the store is
			// back, try it first.
			l.spool.mu.Unlock()
			continue
		}
		break
	}
	l.down.Store(true)
	n, bad, err := l.spool.appendLocked(l.batch)
	l.spool.mu.Unlock()
	if err != nil {
		// bad records are counted by the spool; count the rest here.
		l.writeErrors.Add(uint64(len(l.batch) - n - bad))
		l.log.Error("usage ledger: spool write failed, records lost", "path", l.spool.path,
			"records", len(l.batch)-n, "err", err)
	}
}

// tryStore commits the batch, reporting success; a failure is counted
// and logged, and the caller spools.
func (l *SQL) tryStore() bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
	err := l.insert(ctx, l.batch, &l.args)
	cancel()
	l.observe(time.Since(start))
	if err == nil {
		l.written.Add(uint64(len(l.batch)))
		l.batches.Add(1)
		return true
	}
	l.storeErrors.Add(1)
	l.log.Warn("usage ledger: store write failed, spooling", "driver", l.dialect.name,
		"records", len(l.batch), "err", err)
	return false
}

func (l *SQL) observe(d time.Duration) {
	l.latencyNanos.Add(int64(d))
	for {
		m := l.latencyMaxNanos.Load()
		if int64(d) <= m || l.latencyMaxNanos.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// insert commits recs in one transaction, in statements of at most
// the dialect's rowsPerInsert rows, parking the dialect's yield between
// them. Request ids already stored are skipped.
// scratch is reused for the statement arguments.
func (l *SQL) insert(ctx context.Context, recs []UsageRecord, scratch *[]any) (err error) {
	defer func() {
		// A driver panic must not kill the process; the batch is spooled.
		if p := recover(); p != nil {
			err = fmt.Errorf("insert panicked: %v", p)
		}
	}()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for len(recs) > 0 {
		n := min(len(recs), l.dialect.rowsPerInsert)
		args := (*scratch)[:0]
		for i := range recs[:n] {
			args = l.dialect.appendUsageArgs(args, &recs[i])
		}
		if st := l.prepared(ctx, n); st != nil {
			_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		} else {
			stmt := l.insertFull
			if n < l.dialect.rowsPerInsert {
				stmt = l.dialect.insertSQL(n)
			}
			_, err = tx.ExecContext(ctx, stmt, args...)
		}
		clear(args)
		*scratch = args[:0]
		if err != nil {
			return err
		}
		recs = recs[n:]
		if len(recs) > 0 && l.shouldYield(ctx) {
			time.Sleep(l.dialect.yield)
		}
	}
	return tx.Commit()
}

// prepared returns the insert statement for n rows, prepared once for
// the life of the ledger, or nil to run the SQL text unprepared. SQLite
// (modernc) parses and plans every unprepared statement, and a 32-row
// insert's parse was a third of the writer's CPU; database/sql keeps the
// statement prepared on each connection it was used on, so a transaction
// on the same connection parses nothing. The full size is always
// prepared; the shorter tails of batches only while there are few sizes
// to hold (SQLite's 32), not PostgreSQL's thousands (pgx caches those by
// text itself). A failed prepare falls back to the text, which reports
// the error in the transaction as before.
func (l *SQL) prepared(ctx context.Context, n int) *sql.Stmt {
	if n != l.dialect.rowsPerInsert && l.dialect.rowsPerInsert > 64 {
		return nil
	}
	l.stmtMu.Lock()
	defer l.stmtMu.Unlock()
	if st, ok := l.stmts[n]; ok {
		return st
	}
	text := l.insertFull
	if n < l.dialect.rowsPerInsert {
		text = l.dialect.insertSQL(n)
	}
	st, err := l.db.PrepareContext(ctx, text)
	if err != nil {
		return nil
	}
	if l.stmts == nil {
		l.stmts = make(map[int]*sql.Stmt)
	}
	l.stmts[n] = st
	return st
}

// shouldYield reports whether to park between two statements of a batch
// (see Dialect.yield): only for an in-process engine, only when the
// process has one P (with more, requests run on the others), not while
// records pile up in the queue (then the writer catches up first), and
// never past half of the batch's WriteTimeout.
func (l *SQL) shouldYield(ctx context.Context) bool {
	if l.dialect.yield <= 0 || runtime.GOMAXPROCS(0) != 1 || len(l.q.ch) >= l.batchSize {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > l.writeTimeout/2
}

// redeliverLoop offers the spool to the store at start and then every
// retryInterval while it holds records or the store is marked down.
func (l *SQL) redeliverLoop() {
	defer close(l.redeliverDone)
	t := time.NewTicker(l.retryInterval)
	defer t.Stop()
	for {
		if l.spool.pending.Load() > 0 || l.down.Load() {
			l.redeliver()
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// redeliver runs one pass over the spool. With the spool empty it just
// clears down, and the writer's next batch tests the store.
func (l *SQL) redeliver() {
	var args []any // the writer's scratch is the writer's
	n, err := l.spool.deliver(l.batchSize, func(recs []UsageRecord) error {
		ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
		defer cancel()
		return l.insert(ctx, recs, &args)
	}, func() {
		if l.down.Swap(false) {
			l.log.Info("usage ledger: store is back", "driver", l.dialect.name)
		}
	})
	l.redelivered.Add(uint64(n))
	if n > 0 {
		l.log.Info("usage ledger: spooled records redelivered", "records", n)
	}
	if err != nil {
		l.log.Warn("usage ledger: redelivery failed, will retry", "driver", l.dialect.name,
			"retryIn", l.retryInterval, "err", err)
	}
}
