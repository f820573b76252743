package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestStreamArrivesIncrementally proves deltas are relayed as they come:
// the first event reaches the client while the upstream is still
// generating, and all events are whole and in API.md's shape.
func TestStreamArrivesIncrementally(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 10, TokenDelay: 50 * time.Millisecond})
	g := newWorld(t, up).start()
	for _, model := range []string{"oa-1", "an-1"} {
		t.Run(model, func(t *testing.T) {
			before := up.Srv.Stats().StreamsCompleted
			_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"`+model+`"}`)
			ev, err := sr.Next()
			if err != nil || ev.Name != "delta" {
				t.Fatalf("first event %q: %v", ev.Raw, err)
			}
			if up.Srv.Stats().StreamsCompleted != before {
				t.Fatal("the first delta arrived only after the upstream finished: events are batched")
			}
			ev, n := sr.UntilDone(t)
			n++ // the first delta, read above
			if n != 10 || int(ev.Data["outputTokens"].(float64)) != 10 {
				t.Fatalf("%d deltas, done %s", n, ev.Raw)
			}
			if _, err := sr.Next(); err != io.EOF {
				t.Fatalf("after done: %v", err)
			}
		})
	}
}

// TestStreamClientDisconnectClosesUpstream: a client that leaves mid-stream
// makes the gateway close its upstream connection, so the upstream stops.
func TestStreamClientDisconnectClosesUpstream(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 200, TokenDelay: 20 * time.Millisecond})
	w := newWorld(t, up)
	w.Limits.PingInterval = 50 * time.Millisecond
	g := w.start()
	for i, model := range []string{"oa-1", "an-1"} {
		resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"`+model+`"}`)
		for j := 0; j < 3; j++ {
			if ev, err := sr.Next(); err != nil || ev.Name != "delta" {
				t.Fatalf("%s: event %q: %v", model, ev.Raw, err)
			}
		}
		resp.Body.Close()
		testkit.Eventually(t, 5*time.Second, "the upstream to see its stream aborted", func() bool {
			return up.Srv.Stats().StreamsAborted == int64(i+1)
		})
	}
	if s := up.Srv.Stats(); s.StreamsCompleted != 0 || s.OpenStreams != 0 {
		t.Fatalf("upstream stats %+v", s)
	}
	recs := g.readLedger()
	if len(recs) != 2 {
		t.Fatalf("%d ledger records", len(recs))
	}
	for _, r := range recs {
		if r["status"].(float64) != 499 || r["outputTokens"].(float64) < 3 {
			t.Fatalf("record %v", r)
		}
	}
}

// TestStreamUpstreamCut: an upstream that drops the connection after 10
// tokens gives the client 10 deltas and then an error event, never a
// clean done, and the 10 tokens are recorded.
func TestStreamUpstreamCut(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 50, CutAfterTokens: 10})
	g := newWorld(t, up).start()
	for _, model := range []string{"oa-1", "an-1"} {
		t.Run(model, func(t *testing.T) {
			_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"`+model+`"}`)
			deltas := 0
			for {
				ev, err := sr.Next()
				if err != nil {
					t.Fatalf("after %d deltas: %v", deltas, err)
				}
				if ev.Name == "delta" {
					deltas++
					continue
				}
				if ev.Name != "error" {
					t.Fatalf("stream ended with %q", ev.Raw)
				}
				e := ev.Data["error"].(map[string]any)
				if e["code"] != "upstream_error" || e["message"] == "" {
					t.Fatalf("error event %s", ev.Raw)
				}
				break
			}
			if deltas != 10 {
				t.Fatalf("%d deltas before the error, want 10", deltas)
			}
		})
	}
	recs := g.readLedger()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if r["outputTokens"].(float64) != 10 || r["errorCode"] != "upstream_error" || r["costUsdMicros"].(float64) <= 0 {
			t.Fatalf("record %v", r)
		}
	}
}

// TestStreamMidStreamErrorEvent: an upstream error event mid-stream ends
// the client's stream with event: error.
func TestStreamMidStreamErrorEvent(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 50, ErrorEventAfterTokens: 4})
	g := newWorld(t, up).start()
	for _, model := range []string{"oa-1", "an-1"} {
		_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"`+model+`"}`)
		var last testkit.SSEEvent
		n := 0
		for {
			ev, err := sr.Next()
			if err != nil {
				t.Fatalf("%s: %v", model, err)
			}
			if ev.Name != "delta" {
				last = ev
				break
			}
			n++
		}
		if last.Name != "error" || n != 4 {
			t.Fatalf("%s: %d deltas then %q", model, n, last.Raw)
		}
	}
}

// TestStreamPing: a silent upstream makes the gateway send ": ping".
func TestStreamPing(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 3, TokenDelay: 400 * time.Millisecond})
	w := newWorld(t, up)
	w.Limits.PingInterval = 50 * time.Millisecond
	g := w.start()
	_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"oa-1"}`)
	sr.UntilDone(t)
	if sr.Pings == 0 {
		t.Fatal("no ping during 400ms silences with a 50ms ping interval")
	}
}

// TestStreamErrorsBeforeFirstTokenAreJSON: a failure before the first token
// is an ordinary JSON error with its status, not a 200 stream.
func TestStreamErrorsBeforeFirstTokenAreJSON(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{FailStatus: 500})
	g := newWorld(t, up).start()
	r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true,"modelId":"an-1"}`)
	if e := testkit.DecodeErr(t, r); r.Status != 502 || e.Error.Code != "upstream_error" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	r = g.Chat("", "psn_demo", `{"userText":"hi","stream":true}`)
	if r.Status != 401 || !strings.Contains(r.Header.Get("Content-Type"), "json") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

// TestLedgerRecordsEveryRequest: each authenticated request, success or
// failure, is one ledger line whose cost equals what the client was told.
func TestLedgerRecordsEveryRequest(t *testing.T) {
	g := newWorld(t, nil).start()
	var sum int64
	for i := 0; i < 20; i++ {
		sum += testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"question number `+strings.Repeat("x", i)+`"}`)).CostUsdMicros
	}
	g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":""}`) // 422, recorded
	g.Chat("nope", "psn_demo", `{"userText":"hi"}`)         // 401, not recorded: no workspace
	recs := g.readLedger()
	if len(recs) != 21 {
		t.Fatalf("%d records, want 21", len(recs))
	}
	var got int64
	ids := map[string]bool{}
	for _, r := range recs[:20] {
		got += int64(r["costUsdMicros"].(float64))
		if r["workspace"] != "wsp_demo" || r["credentialId"] != "key_demo" || r["persona"] != "psn_demo" ||
			r["model"] != "mock-1" || r["provider"] != "mock" || r["status"].(float64) != 200 {
			t.Fatalf("record %v", r)
		}
		ids[r["requestId"].(string)] = true
	}
	if got != sum || len(ids) != 20 {
		t.Fatalf("ledger cost %d, replies %d; %d distinct ids", got, sum, len(ids))
	}
	if last := recs[20]; last["status"].(float64) != 422 || last["errorCode"] != "validation_error" {
		t.Fatalf("refusal record %v", last)
	}
}

// TestStreamKeepsConnection: after a complete stream the same connection
// serves the next request (HTTP/1.1 keep-alive), stream or not.
func TestStreamKeepsConnection(t *testing.T) {
	g := newWorld(t, nil).start()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, body := range []string{`{"userText":"hi","stream":true}`, `{"userText":"hi","stream":true}`, `{"userText":"hi"}`} {
		fmt.Fprintf(conn, "POST /v1/personas/psn_demo/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
			mocktest.KeyDemo, len(body), body)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the kept connection: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: %d close=%v %v", i, resp.StatusCode, resp.Close, err)
		}
		if strings.Contains(body, "stream") != strings.Contains(string(b), "event: done") {
			t.Fatalf("request %d body %q", i, b)
		}
	}
}

// TestShutdownClosesKeptConnections: a keep-alive connection a complete
// stream handed back, idle in the client's pool, does not hold Shutdown:
// fasthttp would count it idle only 5 s after the hand-over, so the
// gateway wakes it itself. (Half that grace bounds it here; it takes
// about fasthttp's 100 ms shutdown tick.)
func TestShutdownClosesKeptConnections(t *testing.T) {
	g := newWorld(t, nil).start()
	resp, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","stream":true}`)
	sr.UntilDone(t)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // back to the client's pool, still open
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("shutdown with one idle kept connection took %v", took)
	}
}
