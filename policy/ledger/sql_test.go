package ledger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
)

// ledgerCost varies per record so a lost or doubled record changes sums.
func ledgerRecord(i int) UsageRecord {
	r := testRecord(i)
	r.RequestID = fmt.Sprintf("req_%06d", i)
	r.Time = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second)
	r.CostUsdMicros = int64(i%97 + 1)
	r.OutputTokens = int64(i % 13)
	return r
}

// testStore is one empty store for one test: a SQLite file in a temp
// directory, or a fresh schema in the machine's PostgreSQL, dropped at the
// end. verify is a separate connection for assertions.
type testStore struct {
	cfg    Config
	verify *sql.DB
	// pgURL is the base DSN with the schema selected, for rewriting the
	// address (postgres only).
	pgURL *url.URL
}

func newTestStore(t *testing.T, driver string) *testStore {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Driver: driver, SpoolPath: filepath.Join(dir, "spool.jsonl"),
		FlushInterval: 5 * time.Millisecond, WriteTimeout: 5 * time.Second, RetryInterval: 20 * time.Millisecond,
	}
	switch driver {
	case DriverSQLite:
		cfg.Path = filepath.Join(dir, "data", "usage.db")
		return &testStore{cfg: cfg}
	case DriverPostgres:
		dsn := testkit.PostgresDSN(t)
		u, err := url.Parse(dsn)
		if err != nil || u.Scheme == "" {
			t.Fatalf("MOONBORN_TEST_POSTGRES_DSN must be a postgres:// URL")
		}
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "t_" + hex.EncodeToString(b[:])
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("PostgreSQL at %s is required for this test: %v", u.Redacted(), err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		cfg.DSN = u.String()
		verify, err := sql.Open("pgx", cfg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { verify.Close() })
		return &testStore{cfg: cfg, verify: verify, pgURL: u}
	}
	t.Fatalf("unknown driver %q", driver)
	return nil
}

func (s *testStore) open(t *testing.T, cfg Config) *SQL {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	sl, ok := l.(*SQL)
	if !ok {
		t.Fatalf("Open returned %T", l)
	}
	return sl
}

// db is the verification connection, opened lazily for SQLite so it sees
// the file after the ledger created it.
func (s *testStore) db(t *testing.T) *sql.DB {
	t.Helper()
	if s.verify == nil {
		db, err := sql.Open("sqlite", s.cfg.Path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s.verify = db
	}
	return s.verify
}

// counts returns rows, distinct request ids and the cost sum.
func (s *testStore) counts(t *testing.T) (rows, distinct, cost int64) {
	t.Helper()
	err := s.db(t).QueryRow(`SELECT COUNT(*), COUNT(DISTINCT request_id), CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT)
		FROM usage_records`).Scan(&rows, &distinct, &cost)
	if err != nil {
		t.Fatal(err)
	}
	return rows, distinct, cost
}

func sumCost(from, to int) int64 {
	var s int64
	for i := from; i < to; i++ {
		s += ledgerRecord(i).CostUsdMicros
	}
	return s
}

// recordRange records ledgerRecord(from..to-1) from several goroutines.
func recordRange(l Ledger, from, to int) {
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for i := from + w; i < to; i += workers {
				l.Record(ledgerRecord(i))
			}
		})
	}
	wg.Wait()
}

var sqlDrivers = []string{DriverSQLite, DriverPostgres}

func TestSQLLedgerTenThousand(t *testing.T) {
	for _, driver := range sqlDrivers {
		t.Run(driver, func(t *testing.T) {
			const n = 10_000
			s := newTestStore(t, driver)
			cfg := s.cfg
			cfg.QueueSize, cfg.BatchSize = 64, 200 // small: forces waits and many batches
			l := s.open(t, cfg)
			recordRange(l, 0, n)
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st := l.Stats()
			if st.Written != n || st.WriteErrors != 0 || st.Spooled != 0 || st.Batches < n/200 || st.QueueDepth != 0 {
				t.Fatalf("stats = %+v", st)
			}
			if st.BatchLatency <= 0 || st.BatchLatencyMax <= 0 {
				t.Fatalf("batch latency not observed: %+v", st)
			}
			rows, distinct, cost := s.counts(t)
			if rows != n || distinct != n || cost != sumCost(0, n) {
				t.Fatalf("rows %d, distinct %d, cost %d; want %d, %d, %d", rows, distinct, cost, n, n, sumCost(0, n))
			}
			// Round trip of one row, field by field.
			want := ledgerRecord(4242)
			var got UsageRecord
			var at any
			var status int64
			err := s.db(t).QueryRow(`SELECT request_id, at, workspace, credential_id, persona, model, provider, stream,
				input_tokens, output_tokens, estimated, cost_usd_micros, latency_ms, status, error_code
				FROM usage_records WHERE request_id = 'req_004242'`).Scan(&got.RequestID, &at, &got.Workspace,
				&got.CredentialID, &got.Persona, &got.Model, &got.Provider, &got.Stream, &got.InputTokens,
				&got.OutputTokens, &got.Estimated, &got.CostUsdMicros, &got.LatencyMs, &status, &got.ErrorCode)
			if err != nil {
				t.Fatal(err)
			}
			switch v := at.(type) {
			case int64:
				got.Time = time.Unix(0, v)
			case time.Time:
				got.Time = v
			}
			got.Status = int(status)
			if !got.Time.Equal(want.Time) {
				t.Fatalf("time %v, want %v", got.Time, want.Time)
			}
			got.Time = want.Time
			if got != want {
				t.Fatalf("row = %+v\nwant  %+v", got, want)
			}
		})
	}
}

func TestSQLLedgerIdempotentRedelivery(t *testing.T) {
	for _, driver := range sqlDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newTestStore(t, driver)
			l := s.open(t, s.cfg)
			defer l.Close()
			batch := make([]UsageRecord, 1200) // more than one statement
			for i := range batch {
				batch[i] = ledgerRecord(i)
			}
			var args []any
			for range 2 {
				if err := l.insert(context.Background(), batch, &args); err != nil {
					t.Fatal(err)
				}
			}
			// The same ids through Record as well.
			recordRange(l, 1000, 1300)
			testkit.Eventually(t, 30*time.Second, "the condition", func() bool { return l.Stats().Written == 300 })
			if rows, distinct, cost := s.counts(t); rows != 1300 || distinct != 1300 || cost != sumCost(0, 1300) {
				t.Fatalf("rows %d, distinct %d, cost %d", rows, distinct, cost)
			}
		})
	}
}

func TestSQLLedgerMigrationsIdempotent(t *testing.T) {
	for _, driver := range sqlDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newTestStore(t, driver)
			for round := range 2 {
				l := s.open(t, s.cfg)
				l.Record(ledgerRecord(round))
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// Gateways starting together: concurrent migrations on
			// separate connections must all succeed and change nothing.
			d := sqliteDialect
			if driver == DriverPostgres {
				d = postgresDialect
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					db, err := sql.Open("pgx", s.cfg.DSN)
					if driver == DriverSQLite {
						db, err = sql.Open("sqlite", sqliteDSN(s.cfg.Path))
					}
					if err != nil {
						errs <- err
						return
					}
					defer db.Close()
					errs <- migrate(context.Background(), db, d)
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("concurrent migrate: %v", err)
				}
			}
			var versions, maxVersion int64
			if err := s.db(t).QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&versions, &maxVersion); err != nil {
				t.Fatal(err)
			}
			if latest := migrations[len(migrations)-1].version; versions != int64(len(migrations)) || maxVersion != latest {
				t.Fatalf("schema_migrations has %d rows up to %d", versions, maxVersion)
			}
			if rows, _, _ := s.counts(t); rows != 2 {
				t.Fatalf("%d rows after reopening, want 2", rows)
			}
			// A schema from the future is refused, not written into.
			if _, err := s.db(t).Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(context.Background(), s.cfg, nil); !errors.Is(err, ErrSchemaTooNew) {
				t.Fatalf("Open on a newer schema: %v", err)
			}
		})
	}
}

// TestSQLLedgerCacheMigrationKeepsRows: a database last migrated before
// the prompt-cache columns keeps its rows, which read as no caching, and
// takes records with cache tokens afterwards.
func TestSQLLedgerCacheMigrationKeepsRows(t *testing.T) {
	for _, driver := range sqlDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newTestStore(t, driver)
			d := sqliteDialect
			if driver == DriverPostgres {
				d = postgresDialect
			}
			if driver == DriverSQLite {
				if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			db := s.db(t)
			if _, err := db.Exec(`CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			for _, m := range migrations[:3] {
				for _, st := range m.stmts {
					if _, err := db.Exec(strings.ReplaceAll(st, "{{time}}", d.timeType)); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (` + strconv.FormatInt(m.version, 10) + `, 0)`); err != nil {
					t.Fatal(err)
				}
			}
			base := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
			old := `INSERT INTO usage_records (request_id, at, workspace, credential_id, persona, model, provider, stream,
				input_tokens, output_tokens, estimated, cost_usd_micros, latency_ms, status, error_code, route) VALUES ` +
				string(d.appendRow(nil, 1, 16))
			if _, err := db.Exec(old, "old", d.timeArg(base), "w1", "k", "p1", "m1", "prov", false, int64(100), int64(10), false, int64(55), int64(1), int64(200), "", ""); err != nil {
				t.Fatal(err)
			}
			l := s.open(t, s.cfg)
			l.Record(UsageRecord{RequestID: "new", Time: base.Add(time.Second), Workspace: "w1", Persona: "p1", Model: "m1",
				InputTokens: 3004, OutputTokens: 7, CacheReadTokens: 3000, CostUsdMicros: 1017, CacheSavingsUsdMicros: 8100, Status: 200})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = s.open(t, s.cfg)
			defer l.Close()
			got, err := l.Usage(context.Background(), "w1", base, base.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			want := UsageTotals{Requests: 2, InputTokens: 3104, OutputTokens: 17, CacheReadTokens: 3000, CostUsdMicros: 1072, CacheSavingsUsdMicros: 8100}
			if got.Total != want {
				t.Fatalf("total = %+v, want %+v", got.Total, want)
			}
		})
	}
}

// viaProxy points s's DSN at a new proxy in front of its PostgreSQL.
func viaProxy(t *testing.T, s *testStore) (Config, *testkit.Proxy) {
	t.Helper()
	host := s.pgURL.Host
	if s.pgURL.Port() == "" {
		host = net.JoinHostPort(s.pgURL.Hostname(), "5432")
	}
	p := testkit.StartProxy(t, host)
	u := *s.pgURL
	u.Host = p.Addr()
	cfg := s.cfg
	cfg.DSN = u.String()
	return cfg, p
}

func TestPostgresLedgerOutage(t *testing.T) {
	const n = 10_000
	s := newTestStore(t, DriverPostgres)
	cfg, proxy := viaProxy(t, s)
	cfg.QueueSize, cfg.BatchSize = 256, 100
	l := s.open(t, cfg)

	recordRange(l, 0, 3000)
	testkit.Eventually(t, 30*time.Second, "the condition", func() bool { return l.Stats().Written == 3000 })
	proxy.Cut()
	recordRange(l, 3000, 7000)
	testkit.Eventually(t, 30*time.Second, "the condition", func() bool { st := l.Stats(); return st.Spooled > 0 && st.QueueDepth == 0 })
	if st := l.Stats(); st.StoreErrors == 0 || st.SpoolPending == 0 {
		t.Fatalf("outage not seen: %+v", st)
	}
	proxy.Restore()
	recordRange(l, 7000, n)
	testkit.Eventually(t, 30*time.Second, "the condition", func() bool { st := l.Stats(); return st.Written+st.Redelivered == n })
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := l.Stats()
	if st.Written+st.Redelivered != n || st.WriteErrors != 0 || st.Redelivered != st.Spooled || st.SpoolPending != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if rows, distinct, cost := s.counts(t); rows != n || distinct != n || cost != sumCost(0, n) {
		t.Fatalf("rows %d, distinct %d, cost %d; want %d, %d, %d", rows, distinct, cost, n, n, sumCost(0, n))
	}
	if info, err := os.Stat(cfg.SpoolPath); err != nil || info.Size() != 0 {
		t.Fatalf("spool not truncated: %v %v", info, err)
	}
}

func TestPostgresLedgerCloseWhileDown(t *testing.T) {
	const n = 1000
	s := newTestStore(t, DriverPostgres)
	cfg, proxy := viaProxy(t, s)
	cfg.WriteTimeout = 2 * time.Second
	l := s.open(t, cfg)
	proxy.Cut()
	recordRange(l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := l.Stats(); st.Spooled != n || st.SpoolPending != n || st.Written != 0 || st.WriteErrors != 0 {
		t.Fatalf("stats = %+v", st)
	}
	data, err := os.ReadFile(cfg.SpoolPath)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != n {
		t.Fatalf("spool has %d lines, want %d", lines, n)
	}
	if rows, _, _ := s.counts(t); rows != 0 {
		t.Fatalf("%d rows while the store was down", rows)
	}

	// The next process, store back, delivers the spool on start.
	proxy.Restore()
	l2 := s.open(t, cfg)
	testkit.Eventually(t, 30*time.Second, "the condition", func() bool { return l2.Stats().SpoolPending == 0 })
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l2.Stats(); st.Redelivered != n {
		t.Fatalf("stats = %+v", st)
	}
	if rows, distinct, cost := s.counts(t); rows != n || distinct != n || cost != sumCost(0, n) {
		t.Fatalf("rows %d, distinct %d, cost %d", rows, distinct, cost)
	}
}

func TestSQLLedgerUsage(t *testing.T) {
	base := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{RequestID: "a", Time: base, Workspace: "w1", Model: "m1", Persona: "p1", InputTokens: 10, OutputTokens: 1, CostUsdMicros: 100},
		{RequestID: "b", Time: base.Add(time.Hour), Workspace: "w1", Model: "m1", Persona: "p2", InputTokens: 20, OutputTokens: 2, CostUsdMicros: 200},
		{RequestID: "c", Time: base.Add(2 * time.Hour), Workspace: "w1", Model: "m2", Persona: "p1", InputTokens: 30, OutputTokens: 3, CostUsdMicros: 300},
		{RequestID: "d", Time: base.Add(2 * time.Hour), Workspace: "w2", Model: "m1", Persona: "p1", InputTokens: 99, OutputTokens: 9, CostUsdMicros: 999},
		{RequestID: "e", Time: base.Add(-time.Nanosecond), Workspace: "w1", Model: "m1", Persona: "p1", InputTokens: 7, CostUsdMicros: 7},
		{RequestID: "f", Time: base.Add(3 * time.Hour), Workspace: "w1", Model: "m3", Status: 401, ErrorCode: "unauthorized"},
	}
	tot := func(req, in, out, cost int64) UsageTotals {
		return UsageTotals{Requests: req, InputTokens: in, OutputTokens: out, CostUsdMicros: cost}
	}
	tests := []struct {
		name      string
		ws        string
		from, to  time.Time
		total     UsageTotals
		byModel   []UsageGroup
		byPersona []UsageGroup
	}{
		{"all of w1 from base", "w1", base, base.Add(24 * time.Hour), tot(4, 60, 6, 600),
			[]UsageGroup{{"m1", tot(2, 30, 3, 300)}, {"m2", tot(1, 30, 3, 300)}, {"m3", tot(1, 0, 0, 0)}},
			[]UsageGroup{{"", tot(1, 0, 0, 0)}, {"p1", tot(2, 40, 4, 400)}, {"p2", tot(1, 20, 2, 200)}}},
		{"to is exclusive", "w1", base, base.Add(2 * time.Hour), tot(2, 30, 3, 300),
			[]UsageGroup{{"m1", tot(2, 30, 3, 300)}},
			[]UsageGroup{{"p1", tot(1, 10, 1, 100)}, {"p2", tot(1, 20, 2, 200)}}},
		{"other workspace", "w2", base, base.Add(24 * time.Hour), tot(1, 99, 9, 999),
			[]UsageGroup{{"m1", tot(1, 99, 9, 999)}}, []UsageGroup{{"p1", tot(1, 99, 9, 999)}}},
		{"empty", "nobody", base, base.Add(time.Hour), UsageTotals{}, []UsageGroup{}, []UsageGroup{}},
	}
	check := func(t *testing.T, l UsageLedger) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := l.Usage(context.Background(), tc.ws, tc.from, tc.to)
				if err != nil {
					t.Fatal(err)
				}
				want := UsageSummary{Workspace: tc.ws, From: tc.from, To: tc.to, Total: tc.total, ByModel: tc.byModel, ByPersona: tc.byPersona}
				if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) || got.ByModel == nil || got.ByPersona == nil {
					t.Fatalf("got  %+v\nwant %+v", got, want)
				}
			})
		}
		if _, err := l.Usage(context.Background(), "w1", base, base); !errors.Is(err, ErrBadUsageRange) {
			t.Fatalf("empty range: %v", err)
		}
	}
	for _, driver := range sqlDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newTestStore(t, driver)
			l := s.open(t, s.cfg)
			defer l.Close()
			for _, r := range recs {
				l.Record(r)
			}
			testkit.Eventually(t, 30*time.Second, "the condition", func() bool { return l.Stats().Written == uint64(len(recs)) })
			check(t, l)
		})
	}
	t.Run(DriverJSONL, func(t *testing.T) {
		l, err := Open(context.Background(), Config{Driver: DriverJSONL, Path: filepath.Join(t.TempDir(), "u.jsonl")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for _, r := range recs {
			l.Record(r)
		}
		testkit.Eventually(t, 30*time.Second, "the condition", func() bool { return l.Stats().Written == uint64(len(recs)) })
		check(t, l)
	})
}

func TestSQLiteLedgerFiles(t *testing.T) {
	s := newTestStore(t, DriverSQLite)
	l := s.open(t, s.cfg)
	l.Record(ledgerRecord(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(s.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("database mode %v, want 0600", perm)
	}
	var mode string
	if err := s.db(t).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	l.Record(ledgerRecord(2)) // after Close: counted, not written
	if st := l.Stats(); st.DroppedAfterClose != 1 || st.Written != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLedgerConfigValidate(t *testing.T) {
	const secret = "postgres://u:hunter2@db.example:5432/x"
	tests := []struct {
		name string
		cfg  Config
		want []string // empty: valid
	}{
		{"jsonl default", Config{}, nil},
		{"sqlite", Config{Driver: "sqlite"}, nil},
		{"postgres", Config{Driver: "postgres", DSN: secret}, nil},
		{"unknown driver", Config{Driver: "mysql"}, []string{"driver: must be one of jsonl, sqlite, postgres"}},
		{"postgres without dsn", Config{Driver: "postgres"}, []string{"dsn: required for driver postgres"}},
		{"postgres with path", Config{Driver: "postgres", DSN: secret, Path: "x.db"}, []string{"path: not used by driver postgres"}},
		{"bad dsn", Config{Driver: "postgres", DSN: "postgres://u:hunter2@[::1"}, []string{"dsn: not a valid PostgreSQL connection string"}},
		{"dsn on sqlite", Config{Driver: "sqlite", DSN: secret}, []string{"dsn: only used by driver postgres"}},
		{"sqlite path with ?", Config{Driver: "sqlite", Path: "a?b"}, []string{"path: must not contain '?'"}},
		{"spool is the database", Config{Driver: "sqlite", Path: "d/u.db", SpoolPath: "d/./u.db"}, []string{"spoolPath: must differ from path"}},
		{"sql bounds", Config{Driver: "sqlite", BatchSize: 20_000, WriteTimeout: time.Millisecond, RetryInterval: time.Hour},
			[]string{"batchSize: must be between 1 and 10000", "writeTimeout: must be between 10ms and 1m0s", "retryInterval: must be between 10ms and 10m0s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.SetDefaults()
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("valid")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the DSN: %q", err)
			}
		})
	}
	var c Config
	c.Driver = DriverSQLite
	c.SetDefaults()
	if c.Path != "data/usage.db" || c.SpoolPath != "data/usage-spool.jsonl" || c.BatchSize != 500 ||
		c.WriteTimeout != 5*time.Second || c.RetryInterval != time.Second {
		t.Fatalf("sqlite defaults = %+v", c)
	}
}

func TestOpenLedgerPostgresUnreachable(t *testing.T) {
	addr := testkit.DeadAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{Driver: "postgres", DSN: "postgres://u:hunter2@" + addr + "/x?sslmode=disable",
		SpoolPath: filepath.Join(t.TempDir(), "s")}, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkSQLiteLedgerRecord(b *testing.B) {
	dir := b.TempDir()
	l, err := NewSQLite(context.Background(), Config{
		Path: filepath.Join(dir, "usage.db"), SpoolPath: filepath.Join(dir, "spool.jsonl"),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Ids repeat past len(recs); the store skips those, as it would a
	// redelivery, so Record's cost is what is measured.
	recs := make([]UsageRecord, 1<<14)
	for i := range recs {
		recs[i] = ledgerRecord(i)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(recs[next.Add(1)%uint64(len(recs))])
		}
	})
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if st := l.Stats(); st.WriteErrors != 0 || st.Spooled != 0 {
		b.Fatalf("stats = %+v", st)
	}
}

// The SQLite writer gives the core back between statements only when it
// helps requests and costs nothing that matters: on one P, with time left
// in the batch's budget, and while it keeps up with the queue.
func TestSQLiteWriterYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	l := &SQL{dialect: sqliteDialect, batchSize: 4, writeTimeout: time.Second}
	l.q.init(16, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !l.shouldYield(ctx) {
		t.Error("one P, idle queue, budget left: should yield")
	}
	near, cancelNear := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelNear()
	if l.shouldYield(near) {
		t.Error("less than half the write budget left: should not yield")
	}
	for range 4 {
		l.q.ch <- UsageRecord{}
	}
	if l.shouldYield(ctx) {
		t.Error("a batch's worth queued: should catch up, not yield")
	}
	for range 4 {
		<-l.q.ch
	}
	l.dialect = postgresDialect
	if l.shouldYield(ctx) {
		t.Error("postgres waits on the network: no yield")
	}
	l.dialect = sqliteDialect
	runtime.GOMAXPROCS(2)
	if l.shouldYield(ctx) {
		t.Error("two Ps: requests run on the other, no yield")
	}
}

// BenchmarkSQLiteLedgerWrite: what storing a record costs the process
// in all, the writer's batched insert and commit included (Record alone
// only queues): b.N records, then Close writes what is left.
func BenchmarkSQLiteLedgerWrite(b *testing.B) {
	dir := b.TempDir()
	l, err := NewSQLite(context.Background(), Config{
		Path: filepath.Join(dir, "usage.db"), SpoolPath: filepath.Join(dir, "spool.jsonl"),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.Record(ledgerRecord(i))
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := l.Stats(); st.Written != uint64(b.N) || st.WriteErrors != 0 {
		b.Fatalf("stats = %+v, want %d written", st, b.N)
	}
}
