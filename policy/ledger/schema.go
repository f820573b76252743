package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Dialect is what differs between SQLite and PostgreSQL; the schema,
// the statements and the code around them are shared. The zero value is
// not usable: a Dialect comes with a DB from OpenDB.
type Dialect struct {
	name string
	// timeType is the column type of usage_records.at: TIMESTAMPTZ on
	// PostgreSQL (readable, microseconds), INTEGER Unix nanoseconds on
	// SQLite (which has no time type).
	timeType string
	// timeArg converts a time to the at column's parameter.
	timeArg func(time.Time) any
	// placeholder appends the n-th (1-based) parameter marker.
	placeholder func(b []byte, n int) []byte
	// lockMigrations runs first in the migration transaction so that
	// gateways starting together migrate one after the other. SQLite
	// needs none: the transaction is BEGIN IMMEDIATE (the DSN's
	// _txlock), which already excludes other writers.
	lockMigrations string
	// rowsPerInsert is the most rows one INSERT statement carries.
	rowsPerInsert int
	// yield, when positive, is how long the writer parks between two
	// statements of a batch. SQLite runs in the writer's goroutine: a
	// 400-row batch is about 3 ms of CPU, and on a gateway pinned to one
	// core the requests arriving meanwhile would wait for all of it
	// (p99 +2 ms at 2,000 req/s). Neither runtime.Gosched nor a short
	// sleep helps: Go polls the network only when it has nothing else
	// to run, and a yielding goroutine, or one whose timer has already
	// fired, is picked again first. Parking long enough for the core
	// to go idle lets the scheduler poll and serve those requests
	// between statements (SQL.shouldYield says when). PostgreSQL's
	// statements wait on the network anyway.
	yield time.Duration
}

// migrationLockKey is the PostgreSQL advisory lock every gateway takes
// while migrating: the first 8 bytes of "moonbornledger" read as a
// big-endian integer, a fixed value other applications are unlikely to use.
const migrationLockKey = 0x6d6f6f6e626f726e

var (
	sqliteDialect = Dialect{
		name:     DriverSQLite,
		timeType: "INTEGER",
		timeArg:  func(t time.Time) any { return t.UnixNano() },
		placeholder: func(b []byte, _ int) []byte {
			return append(b, '?')
		},
		// About 0.25 ms of CPU per statement; a 400-row batch takes
		// some 13 ms longer, in wall time only.
		rowsPerInsert: 32,
		yield:         time.Millisecond,
	}
	postgresDialect = Dialect{
		name:     DriverPostgres,
		timeType: "TIMESTAMPTZ",
		timeArg:  func(t time.Time) any { return t.UTC() },
		placeholder: func(b []byte, n int) []byte {
			return strconv.AppendInt(append(b, '$'), int64(n), 10)
		},
		lockMigrations: "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(migrationLockKey, 10) + ")",
		rowsPerInsert:  maxRowsPerInsert,
	}
)

// migrations are applied in order, each once, recorded in
// schema_migrations. Append new versions; never edit an applied one.
// {{time}} is the dialect's time column type.
var migrations = []struct {
	version int64
	stmts   []string
}{
	{1, []string{
		`CREATE TABLE IF NOT EXISTS usage_records (
			request_id      TEXT PRIMARY KEY,
			at              {{time}} NOT NULL,
			workspace       TEXT NOT NULL,
			credential_id   TEXT NOT NULL,
			persona         TEXT NOT NULL,
			model           TEXT NOT NULL,
			provider        TEXT NOT NULL,
			stream          BOOLEAN NOT NULL,
			input_tokens    BIGINT NOT NULL,
			output_tokens   BIGINT NOT NULL,
			estimated       BOOLEAN NOT NULL,
			cost_usd_micros BIGINT NOT NULL,
			latency_ms      BIGINT NOT NULL,
			status          INTEGER NOT NULL,
			error_code      TEXT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS usage_records_workspace_at ON usage_records (workspace, at)`,
	}},
	// The key store (policy/keystore.go): managed API keys, only their hashes.
	{2, []string{
		`CREATE TABLE IF NOT EXISTS api_keys (
			id                        TEXT PRIMARY KEY,
			workspace                 TEXT NOT NULL,
			name                      TEXT NOT NULL,
			prefix                    TEXT NOT NULL,
			sha256                    TEXT NOT NULL UNIQUE,
			created_at                BIGINT NOT NULL,
			expires_at                BIGINT NOT NULL,
			revoked_at                BIGINT NOT NULL,
			rotated_to                TEXT NOT NULL,
			own_limits                BOOLEAN NOT NULL,
			requests_per_minute       BIGINT NOT NULL,
			request_burst             BIGINT NOT NULL,
			tokens_per_minute         BIGINT NOT NULL,
			monthly_budget_usd_micros BIGINT NOT NULL,
			monthly_tokens            BIGINT NOT NULL,
			rev                       BIGINT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS api_keys_rev ON api_keys (rev)`,
		`CREATE INDEX IF NOT EXISTS api_keys_workspace ON api_keys (workspace)`,
	}},
	// The route of SDK-compatible requests (empty: the persona route).
	{3, []string{
		`ALTER TABLE usage_records ADD COLUMN route TEXT NOT NULL DEFAULT ''`,
	}},
	// Prompt-cache tokens and what caching saved; rows written before
	// read as no caching.
	{4, []string{
		`ALTER TABLE usage_records ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_records ADD COLUMN cache_write_5m_tokens BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_records ADD COLUMN cache_savings_usd_micros BIGINT NOT NULL DEFAULT 0`,
	}},
}

// ErrSchemaTooNew means the database was migrated by a newer
// gateway; this one refuses to write into a schema it does not know.
var ErrSchemaTooNew = errors.New("usage ledger: database schema is newer than this gateway")

// migrate brings the schema to the latest version in one transaction. It
// is idempotent, and on PostgreSQL safe when several gateways start at
// once: the advisory lock makes them take turns, and each one after the
// first finds nothing to do.
func migrate(ctx context.Context, db *sql.DB, d Dialect) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if d.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, d.lockMigrations); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: schema_migrations: %w", err)
	}
	var current int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	latest := migrations[len(migrations)-1].version
	if current > latest {
		return fmt.Errorf("%w (database version %d, gateway knows %d)", ErrSchemaTooNew, current, latest)
	}
	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		for _, s := range m.stmts {
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(s, "{{time}}", d.timeType)); err != nil {
				return fmt.Errorf("migrate: version %d: %w", m.version, err)
			}
		}
		ins := `INSERT INTO schema_migrations (version, applied_at) VALUES ` + string(d.appendRow(nil, 1, 2))
		if _, err := tx.ExecContext(ctx, ins, m.version, time.Now().Unix()); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// usageColumns is the insert column list; usageArgs must match it.
const usageColumns = "request_id, at, workspace, credential_id, persona, model, provider, stream, " +
	"input_tokens, output_tokens, estimated, cost_usd_micros, latency_ms, status, error_code, route, " +
	"cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_savings_usd_micros"

const usageColumnCount = 20

// maxRowsPerInsert keeps one statement's parameters (20 per row) well
// below SQLite's 32766 and PostgreSQL's 65535.
const maxRowsPerInsert = 500

// insertSQL is the idempotent multi-row insert for n rows: a request id
// already stored is skipped, so redelivering a batch never duplicates.
func (d Dialect) insertSQL(n int) string {
	b := make([]byte, 0, 128+n*usageColumnCount*5)
	b = append(b, "INSERT INTO usage_records ("+usageColumns+") VALUES "...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = d.appendRow(b, i*usageColumnCount+1, usageColumnCount)
	}
	b = append(b, " ON CONFLICT (request_id) DO NOTHING"...)
	return string(b)
}

// appendRow appends "(p, p+1, ...)" with n parameter markers from the
// first-th.
func (d Dialect) appendRow(b []byte, first, n int) []byte {
	b = append(b, '(')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = d.placeholder(b, first+i)
	}
	return append(b, ')')
}

// appendUsageArgs appends r's values in usageColumns order. Text is made
// valid UTF-8 without NUL bytes, which PostgreSQL rejects: a record the
// store cannot take would otherwise sit in the spool forever.
func (d Dialect) appendUsageArgs(args []any, r *UsageRecord) []any {
	return append(args,
		storableText(r.RequestID), d.timeArg(r.Time), storableText(r.Workspace),
		storableText(r.CredentialID), storableText(r.Persona), storableText(r.Model),
		storableText(r.Provider), r.Stream, r.InputTokens, r.OutputTokens, r.Estimated,
		r.CostUsdMicros, r.LatencyMs, int64(r.Status), storableText(r.ErrorCode), storableText(r.Route),
		r.CacheReadTokens, r.CacheWrite5mTokens, r.CacheWrite1hTokens, r.CacheSavingsUsdMicros)
}

// storableText replaces invalid UTF-8 and NUL bytes with U+FFFD, as the
// spool's JSON encoding does for invalid UTF-8.
func storableText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// usageSQL sums one workspace's rows in [from, to) per (model, persona);
// the (workspace, at) index serves the WHERE. The casts keep PostgreSQL's
// SUM(BIGINT), a NUMERIC, scannable into int64.
func (d Dialect) usageSQL() string {
	p := func(n int) string { return string(d.placeholder(nil, n)) }
	return `SELECT model, persona, COUNT(*), CAST(SUM(input_tokens) AS BIGINT),
		CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cost_usd_micros) AS BIGINT),
		CAST(SUM(cache_read_tokens) AS BIGINT), CAST(SUM(cache_write_5m_tokens) AS BIGINT),
		CAST(SUM(cache_write_1h_tokens) AS BIGINT), CAST(SUM(cache_savings_usd_micros) AS BIGINT)
		FROM usage_records WHERE workspace = ` + p(1) + ` AND at >= ` + p(2) + ` AND at < ` + p(3) + `
		GROUP BY model, persona`
}
