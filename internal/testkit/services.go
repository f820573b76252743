package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// Defaults of the machine's services, overridden by MOONBORN_TEST_REDIS
// and MOONBORN_TEST_POSTGRES_DSN.
const (
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// NeedsService marks a test that needs something beyond Go: a server of
// the machine (Redis, PostgreSQL) or a program (Prometheus, Node, curl).
// Under -short it skips the test, so `go test -short ./...` runs with
// only Go installed; this is the one place a test skips. Without -short
// it does nothing, and the test fails, never skips, when the service is
// missing: the full suite (README, .ci/run) proves the real thing.
func NeedsService(t testing.TB, name string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: needs %s", name)
	}
}

// RedisAddr is the Redis the tests use: MOONBORN_TEST_REDIS, default
// 127.0.0.1:6379. It calls NeedsService first.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return service(t, "Redis", "MOONBORN_TEST_REDIS", DefaultRedisAddr)
}

// PostgresDSN is the PostgreSQL the tests use: MOONBORN_TEST_POSTGRES_DSN,
// default the machine's database test. It calls NeedsService first.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	return service(t, "PostgreSQL", "MOONBORN_TEST_POSTGRES_DSN", DefaultPostgresDSN)
}

// service is where a test finds a server: env overrides def.
func service(t testing.TB, name, env, def string) string {
	t.Helper()
	NeedsService(t, name)
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// Tool returns the path of an installed program the test runs, after
// NeedsService; a missing one fails the test with hint (how to install
// it).
func Tool(t testing.TB, name, hint string) string {
	t.Helper()
	NeedsService(t, name)
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%s): %v", name, hint, err)
	}
	return p
}
