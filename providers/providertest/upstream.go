// Package providertest is the conformance suite of the HTTP wire
// protocols (providers/openai, providers/anthropic): each behaviour every
// protocol must have (how a stream ends, errors by status, timeouts,
// abort, connection reuse, zero allocations per delta) is asserted once
// here, and each protocol's tests call it with their own wire fixtures
// (a Protocol, and case tables of wire bodies and expected results).
//
// It is test support: only _test.go files import it. It imports
// providers and internal/testkit.
package providertest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/providers"
)

// Handler answers one request on an Upstream.
type Handler func(u *Upstream, w http.ResponseWriter, r *http.Request)

// Upstream is a loopback server writing a protocol's wire bytes; it
// records what it received and how many connections it saw. Its URL is
// the embedded server's.
type Upstream struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	headers  []http.Header
	conns    atomic.Int64
	gone     chan struct{} // closed when a handler saw its client leave
	goneOnce sync.Once
}

// NewUpstream starts an Upstream that answers with h, failing the test
// when a request is not a POST to path or its body is not JSON. It is
// closed when the test ends.
func NewUpstream(t *testing.T, path string, h Handler) *Upstream {
	t.Helper()
	u := &Upstream{gone: make(chan struct{})}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("request body is not JSON: %v: %s", err, raw)
		}
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		if r.URL.Path != path || r.Method != http.MethodPost {
			t.Errorf("request to %s %s", r.Method, r.URL.Path)
		}
		h(u, w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// Last returns the body and headers of the last request received.
func (u *Upstream) Last() (map[string]any, http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[len(u.bodies)-1], u.headers[len(u.headers)-1]
}

// Conns is how many connections the server accepted.
func (u *Upstream) Conns() int64 { return u.conns.Load() }

// WaitGone blocks the handler until the client closed the connection
// (at most 5s) and records that it did.
func (u *Upstream) WaitGone(r *http.Request) {
	select {
	case <-r.Context().Done():
		u.goneOnce.Do(func() { close(u.gone) })
	case <-time.After(5 * time.Second):
	}
}

// checkGone fails the test unless a handler saw its client leave within
// 2s: the provider closed the upstream connection.
func (u *Upstream) checkGone(t *testing.T, what string) {
	t.Helper()
	select {
	case <-u.gone:
	case <-time.After(2 * time.Second):
		t.Fatal(what)
	}
}

// StartSSE writes an event stream's status and headers.
func StartSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

// Send writes s and flushes it.
func Send(w http.ResponseWriter, s string) {
	_, _ = io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

// UpstreamErr is the *providers.UpstreamError in err's chain, or nil.
func UpstreamErr(err error) *providers.UpstreamError {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) {
		return ue
	}
	return nil
}

// KindOf is the Kind of the UpstreamError in err's chain; 0 when none.
func KindOf(err error) providers.ErrorKind {
	if ue := UpstreamErr(err); ue != nil {
		return ue.Kind
	}
	return 0
}
