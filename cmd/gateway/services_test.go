package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/moonborn/edge/internal/testkit"
)

// The machine's own Redis and PostgreSQL; CI makes sure both run. Tests
// fail, never skip, when they are unreachable (they skip under -short
// only, through testkit).
func testRedisAddr(t *testing.T) string {
	t.Helper()
	addr := testkit.RedisAddr(t)
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("Redis at %s unreachable (set MOONBORN_TEST_REDIS): %v", addr, err)
	}
	c.Close()
	return addr
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testPostgres creates a schema of its own on the machine's PostgreSQL and
// returns a DSN whose search_path points at it; the schema is dropped
// after the test.
func testPostgres(t *testing.T) (dsn string, db *sql.DB) {
	t.Helper()
	base := testkit.PostgresDSN(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("PostgreSQL unreachable (set MOONBORN_TEST_POSTGRES_DSN): %v", err)
	}
	schema := "gw_" + randomSuffix()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err = sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return u.String(), db
}
