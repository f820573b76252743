package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/anthropic"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
	"github.com/moonborn/edge/providers/openai"
)

// Request lifecycle: whoever ends a request — its client leaving, its
// deadline, a hedge decided — closes every upstream connection of it at
// once. A timestamping TCP proxy between the gateway and mockllm tells
// when the gateway closed each upstream connection. Bounds are generous
// (a shared, -race machine), but each is far below what the old
// write-driven detection or the upstream's own pace would give, so a
// regression fails them.

// stampProxy forwards to backend and records when the gateway closed each
// connection it opened through the proxy.
type stampProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	opened  int
	closed  []time.Time
}

func startStampProxy(t *testing.T, backend string) *stampProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stampProxy{ln: ln, backend: backend}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *stampProxy) addr() string { return p.ln.Addr().String() }

func (p *stampProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.opened++
		p.mu.Unlock()
		go func() { _, _ = io.Copy(c, b); c.Close() }()
		go func() {
			_, _ = io.Copy(b, c) // ends when the gateway closes its side
			p.mu.Lock()
			p.closed = append(p.closed, time.Now())
			p.mu.Unlock()
			b.Close()
		}()
	}
}

// open is how many connections the gateway holds open through the proxy.
func (p *stampProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened - len(p.closed)
}

// waitClosed waits until the gateway closed n connections and returns
// when the last of them closed.
func (p *stampProxy) waitClosed(t *testing.T, n int, within time.Duration) time.Time {
	t.Helper()
	var last time.Time
	testkit.Eventually(t, within, fmt.Sprintf("%d upstream connections closed", n), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.closed) < n {
			return false
		}
		last = p.closed[n-1]
		return true
	})
	return last
}

// lifecycleWorld is the standard world with providers oa and an pointed at the
// proxy instead of the upstream.
func lifecycleWorld(t *testing.T, p *stampProxy) *world {
	return newWorld(t, &mocktest.Upstream{Addr: p.addr()})
}

// rawRequest sends a chat request on a raw connection (so the test can
// close it exactly as it likes) and returns the connection and a reader.
func rawRequest(t *testing.T, g *gw, body string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", mocktest.KeyDemo, len(body), body)
	return c.(*net.TCPConn), bufio.NewReader(c)
}

// readFirstDelta reads a stream's head and its first delta event.
func readFirstDelta(t *testing.T, br *bufio.Reader) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"delta"`) {
			return
		}
		if strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("stream refused: %s", line)
		}
	}
}

// lastRecord waits for the ledger's n-th record (the JSONL file is
// flushed every 10ms) while the gateway keeps serving.
func lastRecord(t *testing.T, g *gw, n int) map[string]any {
	t.Helper()
	var rec map[string]any
	testkit.Eventually(t, 5*time.Second, "the ledger record", func() bool {
		data, err := os.ReadFile(g.ledger)
		if err != nil {
			return false
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) < n || lines[0] == "" {
			return false
		}
		rec = nil
		return json.Unmarshal([]byte(lines[n-1]), &rec) == nil
	})
	return rec
}

// TestClientGoneDuringSlowStreamClosesUpstream: a client that half-closes
// (FIN) or resets (RST) its connection while the upstream is between two
// slow tokens is noticed without waiting for the next token: the upstream
// connection closes within milliseconds, and the request is recorded as
// 499 with the tokens seen so far.
func TestClientGoneDuringSlowStreamClosesUpstream(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 50, TokenDelay: 2 * time.Second})
	p := startStampProxy(t, up.Addr)
	g := lifecycleWorld(t, p).start()
	for i, tc := range []struct {
		name  string
		model string
		leave func(c *net.TCPConn)
	}{
		{"FIN openai", "oa-1", func(c *net.TCPConn) { _ = c.CloseWrite() }},
		{"RST anthropic", "an-1", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }},
		{"FIN anthropic", "an-1", func(c *net.TCPConn) { _ = c.CloseWrite() }},
		{"RST openai", "oa-1", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawRequest(t, g, `{"userText":"hi","stream":true,"modelId":"`+tc.model+`"}`)
			readFirstDelta(t, br)
			left := time.Now()
			tc.leave(c)
			closed := p.waitClosed(t, i+1, 3*time.Second)
			d := closed.Sub(left)
			t.Logf("upstream closed %v after the client left", d)
			if d > 500*time.Millisecond {
				t.Errorf("upstream closed %v after the client left; want well under the 2s token gap", d)
			}
			r := lastRecord(t, g, i+1)
			if r["status"].(float64) != 499 || r["errorCode"] != "client_closed" || r["outputTokens"].(float64) < 1 {
				t.Errorf("ledger record %v, want 499 client_closed with the tokens seen", r)
			}
		})
	}
}

// TestClientGoneDuringSlowCompletionClosesUpstream: the same for a
// non-streaming request whose upstream takes seconds to answer.
func TestClientGoneDuringSlowCompletionClosesUpstream(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5, TimeToFirstToken: 3 * time.Second})
	p := startStampProxy(t, up.Addr)
	g := lifecycleWorld(t, p).start()
	for i, model := range []string{"oa-1", "an-1"} {
		t.Run(model, func(t *testing.T) {
			c, _ := rawRequest(t, g, `{"userText":"hi","modelId":"`+model+`"}`)
			testkit.Eventually(t, 3*time.Second, "the upstream call to start", func() bool { return p.open() == 1 })
			left := time.Now()
			_ = c.CloseWrite()
			closed := p.waitClosed(t, i+1, 5*time.Second)
			d := closed.Sub(left)
			t.Logf("upstream closed %v after the client left", d)
			if d > 500*time.Millisecond {
				t.Errorf("upstream closed %v after the client left; want well under the upstream's 3s", d)
			}
			r := lastRecord(t, g, i+1)
			if r["status"].(float64) != 499 || r["errorCode"] != "client_closed" {
				t.Errorf("ledger record %v, want 499 client_closed", r)
			}
		})
	}
}

// TestRequestTimeoutEndsEveryAttempt: a non-streaming request past
// server.requestTimeout gets 504 at its deadline, whatever its attempts'
// own timeouts, and leaves no upstream connection open; a stream past
// server.maxStreamDuration ends with an upstream_timeout error event.
func TestRequestTimeoutEndsEveryAttempt(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 50, TimeToFirstToken: 1500 * time.Millisecond, TokenDelay: 100 * time.Millisecond})
	p := startStampProxy(t, up.Addr)
	w := lifecycleWorld(t, p)
	w.Limits.RequestTimeout, w.Limits.MaxStreamDuration = 400*time.Millisecond, 2500*time.Millisecond
	// Attempts may each take 5s: only the request's deadline can end it.
	w.AddProtocols(p.addr(), func(_ string, h *providers.HTTPConfig) { h.Timeout, h.FirstTokenTimeout = 5*time.Second, 5*time.Second })
	g := w.start()

	start := time.Now()
	r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"oa-1"}`)
	took := time.Since(start)
	if r.Status != http.StatusGatewayTimeout || testkit.DecodeErr(t, r).Error.Code != "upstream_timeout" {
		t.Fatalf("past requestTimeout: %d %s", r.Status, r.Body)
	}
	if took > 1400*time.Millisecond {
		t.Errorf("504 after %v; the deadline was 400ms", took)
	}
	testkit.Eventually(t, time.Second, "no upstream connection left open", func() bool { return p.open() == 0 })

	resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"an-1"}`)
	defer resp.Body.Close()
	var last testkit.SSEEvent
	for {
		ev, err := sr.Next()
		if err != nil {
			break
		}
		last = ev
		if ev.Name != "delta" {
			break
		}
	}
	code := ""
	if e, ok := last.Data["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
	}
	if last.Name != "error" || code != "upstream_timeout" {
		t.Fatalf("stream past maxStreamDuration ended with %q", last.Raw)
	}
	testkit.Eventually(t, time.Second, "no upstream connection left open", func() bool { return p.open() == 0 })
}

// TestHedgeLoserWaitingForHeadersIsCancelled: the primary answers its
// headers only with its first token, seconds away; the hedge on the
// secondary wins, and the primary's connection is closed as the winner
// is chosen, not when the primary would have answered.
func TestHedgeLoserWaitingForHeadersIsCancelled(t *testing.T) {
	slow := mocktest.Start(t, mock.ServerConfig{OutputTokens: 20, TimeToFirstToken: 3 * time.Second})
	fast := mocktest.Start(t, mock.ServerConfig{OutputTokens: 20, TokenDelay: 20 * time.Millisecond})
	pa, pb := startStampProxy(t, slow.Addr), startStampProxy(t, fast.Addr)
	g := hedgeWorld(t, pa.addr(), pb.addr(), 100*time.Millisecond).start()
	for i := range 3 {
		resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"hedged-1"}`)
		if ev, err := sr.Next(); err != nil || ev.Name != "delta" {
			t.Fatalf("first event %q: %v", ev.Raw, err)
		}
		first := time.Now()
		closed := pa.waitClosed(t, i+1, 2*time.Second)
		d := closed.Sub(first)
		t.Logf("loser closed %v after the winner's first delta reached the client", d)
		if d > 200*time.Millisecond {
			t.Errorf("loser closed %v after the winner's first delta reached the client", d)
		}
		for {
			ev, err := sr.Next()
			if err != nil || ev.Name != "delta" {
				if ev.Name != "done" {
					t.Fatalf("stream ended with %q: %v", ev.Raw, err)
				}
				break
			}
		}
		resp.Body.Close()
	}
	if s := slow.Srv.Stats(); s.StreamsCompleted != 0 {
		t.Errorf("the slow primary completed streams: %+v", s)
	}
}

// hedgeWorld serves hedged-1 from deployments a (primary, OpenAI
// protocol) and b (the hedge, Anthropic protocol), with the hedge started
// after delay.
func hedgeWorld(t *testing.T, a, b string, delay time.Duration) *world {
	t.Helper()
	w := newWorld(t, nil)
	w.AddOpenAI("a", a, func(c *openai.Config) { c.APIKey, c.Timeout, c.FirstTokenTimeout = "k", 10*time.Second, 10*time.Second })
	w.AddAnthropic("b", b, func(c *anthropic.Config) {
		c.APIKey, c.Timeout, c.FirstTokenTimeout = "k", 10*time.Second, 10*time.Second
	})
	w.AddModel("hedged-1", providers.PoolConfig{Strategy: providers.StrategyPriority, MaxAttempts: 2,
		Hedge: providers.HedgeConfig{Enabled: true, Delay: delay}}, prices(t, "1", "2"), 4096,
		deployment{Provider: "a", Model: "gpt-a"}, deployment{Provider: "b", Model: "claude-b", Priority: 1})
	return w
}

// TestHedgedTrafficRace drives hedged streams whose losers answer just
// too late (so their usage is recorded from the race's goroutines while
// the handlers go on) and hedged non-streaming requests, concurrently,
// for -race to watch.
func TestHedgedTrafficRace(t *testing.T) {
	a := mocktest.Start(t, mock.ServerConfig{OutputTokens: 10, TimeToFirstToken: 60 * time.Millisecond, TokenDelay: time.Millisecond})
	b := mocktest.Start(t, mock.ServerConfig{OutputTokens: 10, TimeToFirstToken: 20 * time.Millisecond, TokenDelay: time.Millisecond})
	w := hedgeWorld(t, a.Addr, b.Addr, 40*time.Millisecond)
	g := w.start()
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%3 == 0 {
				if r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi `+fmt.Sprint(i)+`","modelId":"hedged-1"}`); r.Status != 200 {
					errs <- fmt.Sprintf("non-streaming %d: %s", r.Status, r.Body)
				}
				return
			}
			resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi `+fmt.Sprint(i)+`","stream":true,"modelId":"hedged-1"}`)
			defer resp.Body.Close()
			for {
				ev, err := sr.Next()
				if err != nil {
					errs <- fmt.Sprintf("stream: %v", err)
					return
				}
				if ev.Name == "done" {
					return
				}
				if ev.Name != "delta" {
					errs <- "stream ended with " + ev.Raw
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var hedges int64
	for _, p := range w.pools() {
		if p.Model() == "hedged-1" {
			hedges = p.Snapshot(time.Now()).HedgesStarted
		}
	}
	if hedges == 0 {
		t.Error("no hedge started: the test exercised nothing")
	}
}
