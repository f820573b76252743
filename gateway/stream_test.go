package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/providers/mock"
)

// writeCounter is a listener whose connections count their writes, so a
// test sees how the relay split a stream into writes.
type writeCounter struct {
	net.Listener
	mu    sync.Mutex
	conns []*countingConn
}

type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.mu.Unlock()
	return cc, nil
}

func (l *writeCounter) writes() (n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		n += c.writes.Load()
	}
	return n
}

// streamOnce serves s on a counting loopback listener, reads one whole
// stream over real HTTP and returns its body and the server's writes.
func streamOnce(t *testing.T, s *Server) (string, int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Listener: ln}
	go func() { _ = s.Serve(wc) }()
	tr := &http.Transport{}
	t.Cleanup(func() { tr.CloseIdleConnections(); _ = s.Shutdown(context.Background()) })
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/personas/psn_x/chat",
		strings.NewReader(`{"userText":"Hello there","stream":true}`))
	req.Header.Set("Authorization", "Bearer key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, err %v: %s", resp.StatusCode, err, body)
	}
	return string(body), wc.writes()
}

// Events that are ready together leave in one write: a zero-delay
// upstream's whole answer, head included, is one write, not one per event.
func TestRelayCoalescesReadyEvents(t *testing.T) {
	body, writes := streamOnce(t, mockServer(t, false, mock.Config{OutputTokens: 20}))
	if n := strings.Count(body, "event: delta"); n != 20 || !strings.Contains(body, "event: done") {
		t.Fatalf("want 20 deltas and done, got %d: %s", n, body)
	}
	if writes != 1 {
		t.Errorf("zero-delay stream took %d writes, want 1", writes)
	}
}

// No event is held while the relay waits for the upstream: with a pause
// before every token each delta leaves on its own, before the wait (the
// last one with done).
func TestRelayFlushesBeforeWaiting(t *testing.T) {
	const tokens = 8
	body, writes := streamOnce(t, mockServer(t, false, mock.Config{OutputTokens: tokens, TokenDelay: 5 * time.Millisecond}))
	if n := strings.Count(body, "event: delta"); n != tokens {
		t.Fatalf("want %d deltas, got %d: %s", tokens, n, body)
	}
	if writes != tokens {
		t.Errorf("%d-token paced stream took %d writes, want %d", tokens, writes, tokens)
	}
}

// Bursts are bounded: a long zero-delay answer goes out in writes of about
// maxCoalesced bytes, never as one unbounded buffer.
func TestRelayBoundsCoalescedWrites(t *testing.T) {
	const tokens = 4000
	s := mockServer(t, false, mock.Config{OutputTokens: tokens})
	s.opts.Models["m"].MaxOutputTokens = tokens
	body, writes := streamOnce(t, s)
	if n := strings.Count(body, "event: delta"); n != tokens {
		t.Fatalf("want %d deltas, got %d", tokens, n)
	}
	if min := int64(len(body) / maxCoalesced); writes < min {
		t.Errorf("%d bytes in %d writes: more than %d bytes held back", len(body), writes, maxCoalesced)
	}
}

// Streams reuse relay workers: one after another, each on its own
// connection, they all run on the first worker instead of a fresh
// goroutine (and a fresh stack to grow) each.
func TestRelayWorkersAreReused(t *testing.T) {
	s := mockServer(t, false, mock.Config{OutputTokens: 5})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/personas/psn_x/chat",
			strings.NewReader(`{"userText":"Hello there","stream":true}`))
		req.Header.Set("Authorization", "Bearer key")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !strings.Contains(string(body), "event: done") {
			t.Fatalf("stream %d: %s", i, body)
		}
		// The client closed the connection: the worker comes back idle.
		deadline := time.Now().Add(5 * time.Second)
		for s.workers.idle.Load() != 1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if n := s.workers.started.Load(); n != 1 {
		t.Fatalf("5 sequential streams started %d relay workers, want 1", n)
	}
}

// fakeHijack stands for fasthttp's hijack wrapper: reads go through a
// buffered reader, UnsafeConn gives the connection under it.
type fakeHijack struct {
	net.Conn
	r *bufio.Reader
}

func (c *fakeHijack) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fakeHijack) UnsafeConn() net.Conn       { return c.Conn }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// After a stream the bare connection is served again, behind the bytes
// the hijack wrapper had buffered, in order, and without consuming what
// is still in the socket.
func TestUnwrapHijacked(t *testing.T) {
	client, server := tcpPair(t)
	if _, err := client.Write([]byte("abcdef")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(server)
	if _, err := br.Peek(6); err != nil { // "abcdef" buffered in the wrapper
		t.Fatal(err)
	}
	first := &fakeHijack{Conn: server, r: br}
	if _, err := client.Write([]byte("ghi")); err != nil {
		t.Fatal(err)
	}
	next, err := unwrapHijacked(first, make([]byte, 512))
	if err != nil {
		t.Fatal(err)
	}
	pc, ok := next.(*prefixConn)
	if !ok || pc.Conn != server || string(pc.prefix) != "abcdef" {
		t.Fatalf("unwrapped to %T %+v, want the server conn behind abcdef", next, next)
	}
	// The next stream's wrapper buffered part of the prefix; unwrapping
	// again must not nest: same bare connection, bytes still in order.
	br2 := bufio.NewReaderSize(next, 16)
	if b, err := br2.Peek(2); err != nil || string(b) != "ab" {
		t.Fatalf("peek %q %v", b, err)
	}
	if _, err := br2.Discard(1); err != nil {
		t.Fatal(err)
	}
	again, err := unwrapHijacked(&fakeHijack{Conn: next, r: br2}, make([]byte, 512))
	if err != nil {
		t.Fatal(err)
	}
	if pc, ok := again.(*prefixConn); !ok || pc.Conn != server {
		t.Fatalf("second unwrap gave %T, want a prefixConn on the server conn", again)
	}
	got := make([]byte, 8)
	if _, err := io.ReadFull(again, got); err != nil || string(got) != "bcdefghi" {
		t.Fatalf("read %q, %v; want bcdefghi", got, err)
	}
}

// Pipelined stream requests, then many more on the same keep-alive
// connection: every stream complete, in order.
func TestStreamsPipelinedOnOneConnection(t *testing.T) {
	s := mockServer(t, false, mock.Config{OutputTokens: 3})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = s.Shutdown(context.Background()) })
	req := func(id string) string {
		body := `{"userText":"Hello there","stream":true}`
		return "POST /v1/personas/psn_x/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key\r\nX-Request-Id: " + id +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	br := bufio.NewReader(c)
	readStream := func(id string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("stream %s: %v", id, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.Header.Get("X-Request-Id") != id || strings.Count(string(body), "event: delta") != 3 ||
			!strings.Contains(string(body), "event: done") {
			t.Fatalf("stream %s: id %q, err %v: %s", id, resp.Header.Get("X-Request-Id"), err, body)
		}
	}
	if _, err := c.Write([]byte(req("p1") + req("p2"))); err != nil {
		t.Fatal(err)
	}
	readStream("p1")
	readStream("p2")
	for i := range 100 {
		id := "s" + strconv.Itoa(i)
		if _, err := c.Write([]byte(req(id))); err != nil {
			t.Fatal(err)
		}
		readStream(id)
	}
}
