// Package mocktest is test support: the mock upstream (the server behind
// cmd/mockllm, speaking the OpenAI and Anthropic wire protocols) on
// loopback for a test, and the credentials the gateway's test worlds
// accept. The gateway's behaviour tests and cmd/gateway's wiring tests
// both run against it.
package mocktest

import (
	"net"
	"testing"

	"github.com/moonborn/edge/providers/mock"
)

// The keys the gateway's test worlds accept (only their hashes are
// configured) and the HS256 secret of their session JWTs.
const (
	KeyDemo    = "mb_test_demo"
	KeyOther   = "mb_test_other"
	KeyRevoked = "mb_test_revoked"
	JWTSecret  = "test-secret-of-at-least-thirty-two-bytes!"
)

// Upstream is a mock upstream serving on loopback.
type Upstream struct {
	// Srv is the server, for its recorded requests, statistics and fault
	// knobs (SetConfig).
	Srv *mock.Server
	// Addr is its host:port.
	Addr string
}

// Start serves a mock upstream configured by cfg until the test ends.
func Start(t testing.TB, cfg mock.ServerConfig) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mock.NewServer(cfg)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return &Upstream{Srv: s, Addr: ln.Addr().String()}
}
