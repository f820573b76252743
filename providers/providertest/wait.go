package providertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

// TimeoutCase is an upstream that stalls somewhere, and what the provider
// got before its timeout fired.
type TimeoutCase struct {
	// Name names the subtest.
	Name string
	// Handler is the stalling upstream.
	Handler Handler
	// Stream calls Stream (and drains it); otherwise Complete.
	Stream bool
	// Deltas is the text read before the timeout.
	Deltas string
}

// Timeouts runs the stalls every protocol shares (a silent upstream for
// Complete and for Stream, headers but no token, idle after the first
// token), then extra: each ends in a timeout within about the limit
// (100ms) and closes the upstream connection.
func Timeouts(t *testing.T, p Protocol, extra ...TimeoutCase) {
	cases := append([]TimeoutCase{
		{Name: "complete total timeout", Handler: func(u *Upstream, _ http.ResponseWriter, r *http.Request) { u.WaitGone(r) }},
		{Name: "no headers within first-token timeout", Stream: true, Handler: func(u *Upstream, _ http.ResponseWriter, r *http.Request) { u.WaitGone(r) }},
		{Name: "headers but no first token", Stream: true, Handler: func(u *Upstream, w http.ResponseWriter, r *http.Request) {
			StartSSE(w)
			for _, e := range p.Head { // not a token: the first-token deadline still runs
				Send(w, e)
			}
			u.WaitGone(r)
		}},
		{Name: "idle after first token", Stream: true, Deltas: "a", Handler: func(u *Upstream, w http.ResponseWriter, r *http.Request) {
			StartSSE(w)
			for _, e := range p.Head {
				Send(w, e)
			}
			Send(w, p.Delta("a"))
			u.WaitGone(r)
		}},
	}, extra...)
	const limit = 100 * time.Millisecond
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := NewUpstream(t, p.Path, c.Handler)
			prov := p.New(t, u.URL, func(h *providers.HTTPConfig) { h.Timeout, h.FirstTokenTimeout, h.IdleTimeout = limit, limit, limit })
			start := time.Now()
			var err error
			if !c.Stream {
				_, err = prov.Complete(context.Background(), p.Req)
			} else {
				var s providers.Stream
				if s, err = prov.Stream(context.Background(), p.Req); err == nil {
					var text string
					text, err = testkit.Drain(s)
					if text != c.Deltas {
						t.Errorf("got %q before the timeout, want %q", text, c.Deltas)
					}
					s.Close()
				}
			}
			if KindOf(err) != providers.KindTimeout {
				t.Fatalf("err = %v, want timeout", err)
			}
			if el := time.Since(start); el < limit || el > limit+900*time.Millisecond {
				t.Fatalf("timed out after %v, want about %v", el, limit)
			}
			u.checkGone(t, "upstream connection was not closed after the timeout")
		})
	}
}

// StreamOutlivesFirstTokenTimeout: a stream may last far longer than its
// first-token timeout as long as deltas keep coming within the idle
// timeout.
func StreamOutlivesFirstTokenTimeout(t *testing.T, p Protocol) {
	u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
		StartSSE(w)
		for _, e := range p.Head {
			Send(w, e)
		}
		for range 12 {
			Send(w, p.Delta("x"))
			time.Sleep(50 * time.Millisecond)
		}
		for _, e := range p.Tail {
			Send(w, e)
		}
	})
	// The stream lasts 600ms, twice the first-token timeout; the gaps are
	// 50ms, well within the idle timeout even on a loaded machine.
	prov := p.New(t, u.URL, func(h *providers.HTTPConfig) {
		h.FirstTokenTimeout, h.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	s, err := prov.Stream(context.Background(), p.Req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if text, err := testkit.Drain(s); err != io.EOF || text != "xxxxxxxxxxxx" {
		t.Fatalf("got %q, %v", text, err)
	}
}

// SaturatedQueues: with every connection busy a request waits for one,
// up to its deadline, then fails as saturated (never a breaker failure);
// a connection freed meanwhile serves it.
func SaturatedQueues(t *testing.T, p Protocol) {
	release := make(chan struct{})
	u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, r *http.Request) {
		StartSSE(w)
		Send(w, p.Delta("a"))
		select {
		case <-release:
			for _, e := range p.Tail {
				Send(w, e)
			}
		case <-r.Context().Done():
		}
	})
	prov := p.New(t, u.URL, func(h *providers.HTTPConfig) { h.MaxConns, h.FirstTokenTimeout = 1, 300*time.Millisecond })
	s, err := prov.Stream(context.Background(), p.Req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Stream(context.Background(), p.Req); KindOf(err) != providers.KindSaturated {
		t.Fatalf("second stream while the only connection is busy: %v, want saturated after waiting", err)
	}
	// Queued again, and served once the first stream ends and frees the
	// connection.
	got := make(chan error, 1)
	go func() {
		s2, err := prov.Stream(context.Background(), p.Req)
		if err == nil {
			_, err = s2.Next()
			s2.Close()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it queue
	close(release)
	for {
		if _, err := s.Next(); err != nil {
			break
		}
	}
	s.Close()
	if err := <-got; err != nil {
		t.Fatalf("queued stream: %v, want served by the freed connection", err)
	}
}

// openThenSilent is a stream that sent its head and one delta ("Hi") and
// then nothing, still open.
func openThenSilent(t *testing.T, p Protocol) providers.Stream {
	t.Helper()
	resp := testkit.ChunkedSSE(append(append([]string(nil), p.Head...), p.Delta("Hi"))...)
	resp = resp[:len(resp)-len("0\r\n\r\n")]
	s, err := p.provider(t, testkit.RawUpstream(t, resp)).Stream(context.Background(), p.Req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if d, err := s.Next(); err != nil || string(d) != "Hi" {
		t.Fatalf("first Next = %q, %v", d, err)
	}
	return s
}

// NotifyWaitAbandonsWait: the NotifyWait hook runs right before the
// stream would wait on the upstream, and a false answer abandons that
// wait at once instead of waiting for the next event (or the idle
// timeout).
func NotifyWaitAbandonsWait(t *testing.T, p Protocol) {
	s := openThenSilent(t, p)
	calls := 0
	if !s.(providers.WaitNotifier).NotifyWait(func() bool { calls++; return false }) {
		t.Fatal("NotifyWait not supported on an HTTP stream")
	}
	// ErrAborted, not an upstream failure: the owner's reader left, and
	// a breaker must not count that against the deployment.
	if _, err := s.Next(); calls != 1 || !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("after the hook said stop: %d calls, err %v; want 1 call and ErrAborted", calls, err)
	}
}

// NotifyWaitEndsWithStream: Close unregisters the hook; the connection
// goes back to the pool, and the next request's reads must not call the
// previous stream's owner.
func NotifyWaitEndsWithStream(t *testing.T, p Protocol) {
	prov := p.provider(t, testkit.RawUpstream(t, testkit.ChunkedSSE(p.Events(3)...)))
	calls := 0
	for i := range 2 {
		s, err := prov.Stream(context.Background(), p.Req)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && !s.(providers.WaitNotifier).NotifyWait(func() bool { calls++; return true }) {
			t.Fatal("NotifyWait not supported")
		}
		for err == nil {
			_, err = s.Next()
		}
		if err != io.EOF {
			t.Fatalf("stream %d: %v", i, err)
		}
		s.Close()
		if i == 0 {
			calls = 0
		}
	}
	if calls != 0 {
		t.Fatalf("the first stream's hook ran %d times during the second", calls)
	}
}

// AbortDoesNotWaitForTheOwner: with the owner blocked inside its
// NotifyWait hook (a slow client), Abort still cuts the upstream at once,
// and the owner's Next then ends with ErrAborted.
func AbortDoesNotWaitForTheOwner(t *testing.T, p Protocol) {
	s := openThenSilent(t, p)
	inHook, release := make(chan struct{}), make(chan struct{})
	s.(providers.WaitNotifier).NotifyWait(func() bool { close(inHook); <-release; return true })
	next := make(chan error, 1)
	go func() { _, err := s.Next(); next <- err }()
	<-inHook
	aborted := make(chan struct{})
	go func() { s.Abort(); close(aborted) }()
	select {
	case <-aborted:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("Abort waited for the owner's hook")
	}
	close(release)
	if err := <-next; !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("Next after Abort: %v, want ErrAborted", err)
	}
}
