package ledger

// Opening the SQL ledger on each database.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

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
