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

// StreamCase is one stream served whole by the upstream and what the
// provider makes of it.
type StreamCase struct {
	// Name names the subtest.
	Name string
	// Events are the wire events the upstream sends, in order.
	Events []string
	// WantText is every delta joined.
	WantText string
	// WantKind is the final error's kind; 0 wants a clean io.EOF.
	WantKind providers.ErrorKind
	// WantStatus is the final error's Status (an upstream error event's).
	WantStatus int
	// WantUsage is the stream's Usage at its end.
	WantUsage providers.Usage
}

// streamReq is the request of every StreamCase: the estimates in the
// cases' usage are counted from it.
var streamReq = providers.Request{Model: "m", System: "1234", UserText: "12345", MaxOutputTokens: 10}

// Streams runs each case against a loopback upstream: the deltas, how the
// stream ends (the error sticks, and carries no upstream text), the
// usage, and the request the upstream saw.
func Streams(t *testing.T, p Protocol, cases []StreamCase) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
				StartSSE(w)
				for _, e := range c.Events {
					Send(w, e)
				}
			})
			s, err := p.provider(t, u.URL).Stream(context.Background(), &streamReq)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			text, err := testkit.Drain(s)
			if text != c.WantText {
				t.Errorf("text = %q, want %q", text, c.WantText)
			}
			if c.WantKind == 0 && err != io.EOF || c.WantKind != 0 && KindOf(err) != c.WantKind {
				t.Fatalf("err = %v, want kind %v", err, c.WantKind)
			}
			if ue := UpstreamErr(err); ue != nil && ue.Status != c.WantStatus {
				t.Errorf("status = %d, want %d", ue.Status, c.WantStatus)
			}
			if err != io.EOF {
				p.checkNoLeak(t, err, "error leaks upstream text")
			}
			if _, again := s.Next(); again != err {
				t.Errorf("error not sticky: %v then %v", err, again)
			}
			if got := s.Usage(); got != c.WantUsage {
				t.Errorf("usage = %+v, want %+v", got, c.WantUsage)
			}
			b, h := u.Last()
			p.Headers(t, h)
			if h.Get("Accept") != "text/event-stream" {
				t.Errorf("Accept = %q", h.Get("Accept"))
			}
			if b["stream"] != true || b["max_tokens"] != 10.0 {
				t.Errorf("stream body = %v", b)
			}
			if p.StreamBody != nil {
				p.StreamBody(t, b)
			}
		})
	}
}

// Abort: Abort from another goroutine ends a blocked Next at once with
// ErrAborted, is safe twice and after Close, keeps the usage seen so far
// (want), and closes the upstream connection.
func Abort(t *testing.T, p Protocol, req *providers.Request, want providers.Usage) {
	u := NewUpstream(t, p.Path, func(u *Upstream, w http.ResponseWriter, r *http.Request) {
		StartSSE(w)
		for _, e := range p.Head {
			Send(w, e)
		}
		Send(w, p.Delta("first"))
		u.WaitGone(r)
	})
	s, err := p.provider(t, u.URL).Stream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Next(); err != nil || string(d) != "first" {
		t.Fatalf("first delta: %q, %v", d, err)
	}
	timer := time.AfterFunc(50*time.Millisecond, s.Abort)
	defer timer.Stop()
	start := time.Now()
	if _, err = s.Next(); !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("err = %v, want ErrAborted", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("abort took %v", el)
	}
	s.Abort() // twice is fine
	if got := s.Usage(); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	s.Close()
	s.Abort() // after Close too
	u.checkGone(t, "upstream never saw the connection close")
}

// ConnectionReuse: three streams read to their end marker, one after the
// other, use one connection.
func ConnectionReuse(t *testing.T, p Protocol) {
	u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
		StartSSE(w)
		for _, e := range p.Events(1) {
			Send(w, e)
		}
	})
	prov := p.provider(t, u.URL)
	for i := range 3 {
		s, err := prov.Stream(context.Background(), p.Req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.Drain(s); err != io.EOF {
			t.Fatalf("round %d: %v", i, err)
		}
		s.Close()
	}
	if n := u.Conns(); n != 1 {
		t.Fatalf("%d connections for 3 finished streams, want 1 reused", n)
	}
}

// NotAnEventStream: a 200 that is not text/event-stream is a protocol
// error, not a stream.
func NotAnEventStream(t *testing.T, p Protocol) {
	u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"choices":[]}`)
	})
	if _, err := p.provider(t, u.URL).Stream(context.Background(), p.Req); KindOf(err) != providers.KindProtocol {
		t.Fatalf("err = %v, want protocol", err)
	}
}

// DeltaAllocs: relaying a delta allocates nothing, measured over a long
// stream so the stream's setup is not in the count.
func DeltaAllocs(t *testing.T, p Protocol) {
	url := testkit.RawUpstream(t, testkit.ChunkedSSE(p.Events(3000)...))
	s, err := p.provider(t, url).Stream(context.Background(), p.Req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 100 { // warm the buffers
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per delta, want 0", allocs)
	}
}

// BenchStreamRelay reads a whole 20-delta stream from a loopback
// upstream per op: allocs/op is the per-stream cost (request, stream,
// timer); the deltas themselves add none (DeltaAllocs).
func BenchStreamRelay(b *testing.B, p Protocol) {
	url := testkit.RawUpstream(b, testkit.ChunkedSSE(p.Events(20)...))
	prov := p.provider(b, url)
	b.ReportAllocs()
	deltas := 0
	for b.Loop() {
		s, err := prov.Stream(context.Background(), p.Req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := s.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
			deltas++
		}
		if s.Usage().Estimated {
			b.Fatal("usage missed")
		}
		s.Close()
	}
	b.ReportMetric(float64(deltas)/float64(b.N), "deltas/op")
}
