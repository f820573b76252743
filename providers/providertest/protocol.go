package providertest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/moonborn/edge/providers"
)

// Protocol is what the suite needs to know of one wire protocol: how to
// build its provider, what every request carries, and the wire events of
// a plain stream.
type Protocol struct {
	// Path is the request path every call must reach ("/v1/messages").
	Path string
	// Key is the API key of the test config. No error text may carry it
	// (nor "SECRET", which every test key contains).
	Key string
	// New builds the provider for the loopback server at url from the
	// package's test config; edit, when not nil, changes the HTTP
	// settings first (timeouts, MaxConns).
	New func(tb testing.TB, url string, edit func(*providers.HTTPConfig)) providers.Provider
	// Headers checks what every request carries: credentials, version,
	// content type (Accept is checked by the suite).
	Headers func(t *testing.T, h http.Header)
	// StreamBody checks a streaming request's body beyond what the suite
	// checks ("stream": true, "max_tokens"); nil checks nothing more.
	StreamBody func(t *testing.T, body map[string]any)
	// Delta renders one text delta as a wire event.
	Delta func(text string) string
	// Head is what a stream sends before its first delta (no token);
	// Tail ends a stream cleanly, its usage included.
	Head, Tail []string
	// Req is the request most cases send.
	Req *providers.Request
}

// Events is a whole clean stream of n deltas ("tok0 ", "tok1 ", …).
func (p Protocol) Events(n int) []string {
	events := append([]string(nil), p.Head...)
	for i := range n {
		events = append(events, p.Delta("tok"+strconv.Itoa(i%10)+" "))
	}
	return append(events, p.Tail...)
}

// provider builds the provider with the package's test config.
func (p Protocol) provider(tb testing.TB, url string) providers.Provider {
	tb.Helper()
	return p.New(tb, url, nil)
}

// checkNoLeak fails the test when err's text carries the upstream's
// words: the key, or any of extra.
func (p Protocol) checkNoLeak(t *testing.T, err error, what string, extra ...string) {
	t.Helper()
	for _, s := range append([]string{p.Key, "SECRET"}, extra...) {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// Run runs, as subtests, the behaviours that need nothing of a protocol
// but its Protocol: connect refused, connection reuse, a reply that is
// not an event stream, saturation, long streams, zero allocations per
// delta, and the NotifyWait hook. The case tables (Streams,
// StatusErrors, Timeouts, Completes, Abort) are the protocol's own tests.
func Run(t *testing.T, p Protocol) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, Protocol)
	}{
		{"ConnectRefused", ConnectRefused},
		{"ConnectionReuse", ConnectionReuse},
		{"NotAnEventStream", NotAnEventStream},
		{"SaturatedQueues", SaturatedQueues},
		{"StreamOutlivesFirstTokenTimeout", StreamOutlivesFirstTokenTimeout},
		{"DeltaAllocs", DeltaAllocs},
		{"NotifyWaitAbandonsWait", NotifyWaitAbandonsWait},
		{"NotifyWaitEndsWithStream", NotifyWaitEndsWithStream},
		{"AbortDoesNotWaitForTheOwner", AbortDoesNotWaitForTheOwner},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, p) })
	}
}
