package persona

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testOrigin is a real loopback persona origin whose answers tests can
// change between steps.
type testOrigin struct {
	srv   *httptest.Server
	calls atomic.Int64

	mu       sync.Mutex
	personas map[string]Persona
	status   int           // when non-zero, answer this status instead
	delay    time.Duration // before answering
	block    bool          // wait for the client to give up
	rawBody  string        // when non-empty, answer 200 with this body
	lastReq  *http.Request
}

func newTestOrigin(t *testing.T, personas ...Persona) *testOrigin {
	t.Helper()
	o := &testOrigin{personas: make(map[string]Persona)}
	for _, p := range personas {
		o.personas[p.ID] = p
	}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *testOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.calls.Add(1)
	o.mu.Lock()
	o.lastReq = r.Clone(r.Context())
	status, delay, block, raw := o.status, o.delay, o.block, o.rawBody
	id, found := strings.CutPrefix(r.URL.Path, "/personas/")
	p, ok := o.personas[id]
	o.mu.Unlock()
	if block {
		<-r.Context().Done()
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	switch {
	case status != 0:
		w.WriteHeader(status)
	case raw != "":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(raw))
	case !found || !ok:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	}
}

func (o *testOrigin) set(f func(o *testOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func (o *testOrigin) source(t *testing.T, timeout time.Duration, token string) *HTTPSource {
	t.Helper()
	s, err := NewHTTPSource(HTTPConfig{BaseURL: o.srv.URL, Timeout: timeout, BearerToken: token})
	if err != nil {
		t.Fatalf("NewHTTPSource: %v", err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func demo(id, workspace string) Persona {
	return Persona{
		ID: id, Workspace: workspace, Name: "Demo",
		SystemPrompt: "You are a concise, friendly assistant.",
		DefaultModel: "mock-1", Temperature: ptr(0.7), MaxOutputTokens: 256,
	}
}
