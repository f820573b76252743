package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DB is the ledger's SQL database opened for a table the ledger's
// migrations create but another package owns: policy's managed API keys
// live beside the usage records, so one database and one schema version
// serve both.
type DB struct {
	// DB is the handle; its pool limits are the caller's to set.
	*sql.DB
	// Dialect builds the database's placeholders and multi-row VALUES.
	Dialect Dialect
	// Postgres is the parsed connection config (for a LISTEN connection
	// of its own); nil on SQLite.
	Postgres *pgx.ConnConfig
}

// OpenDB opens the database cfg names (driver sqlite or postgres; cfg
// gets defaults applied) and migrates it under the migration lock, so it
// may run beside a ledger opening the same database. Errors read as
// "ledger.<field>: ..." or "<driver>: ...", for the caller to prefix
// with its own name; they never quote the DSN.
func OpenDB(ctx context.Context, cfg Config) (*DB, error) {
	cfg.SetDefaults()
	var d DB
	switch cfg.Driver {
	case DriverSQLite:
		if err := makeParentDir(cfg.Path); err != nil {
			return nil, err
		}
		db, err := sql.Open("sqlite", sqliteDSN(cfg.Path))
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		d.DB, d.Dialect = db, sqliteDialect
	case DriverPostgres:
		pc, err := pgx.ParseConfig(cfg.DSN)
		if err != nil {
			return nil, errors.New("ledger.dsn: not a valid PostgreSQL connection string")
		}
		if pc.ConnectTimeout == 0 || pc.ConnectTimeout > cfg.WriteTimeout {
			pc.ConnectTimeout = cfg.WriteTimeout
		}
		d.DB, d.Dialect, d.Postgres = stdlib.OpenDB(*pc), postgresDialect, pc
	default:
		return nil, fmt.Errorf("needs ledger.driver sqlite or postgres, not %s", cfg.Driver)
	}
	if err := migrate(ctx, d.DB, d.Dialect); err != nil {
		d.DB.Close()
		return nil, fmt.Errorf("%s: %w", d.Dialect.name, err)
	}
	return &d, nil
}

// Name is the driver the dialect belongs to: sqlite or postgres.
func (d Dialect) Name() string { return d.name }

// Placeholder appends the n-th (1-based) parameter marker.
func (d Dialect) Placeholder(b []byte, n int) []byte { return d.placeholder(b, n) }

// AppendRow appends one parenthesised row of n parameter markers
// numbered from first, for a multi-row VALUES list.
func (d Dialect) AppendRow(b []byte, first, n int) []byte { return d.appendRow(b, first, n) }
