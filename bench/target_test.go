package bench

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	cases := []struct {
		name   string
		url    string
		remote bool // want ErrRemoteTarget
		bad    bool // want another error
	}{
		{"ipv4 loopback", "http://127.0.0.1:8080", false, false},
		{"other 127/8", "http://127.3.2.1:80/v1", false, false},
		{"ipv6 loopback", "http://[::1]:8080", false, false},
		{"localhost", "http://localhost:8080", false, false},
		{"private address", "http://10.0.0.5:8080", true, false},
		{"public address", "http://8.8.8.8", true, false},
		{"unspecified", "http://0.0.0.0:8080", true, false},
		{"unresolvable name", "http://no-such-host.invalid:80", true, false},
		{"https refused", "https://127.0.0.1", false, true},
		{"no host", "http://", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckLoopback(c.url)
			switch {
			case c.remote && !errors.Is(err, ErrRemoteTarget):
				t.Errorf("err = %v, want ErrRemoteTarget", err)
			case c.bad && (err == nil || errors.Is(err, ErrRemoteTarget)):
				t.Errorf("err = %v, want a usage error", err)
			case !c.remote && !c.bad && err != nil:
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}

// serve starts a real loopback HTTP server answering every request with h.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestTargetDo(t *testing.T) {
	cases := []struct {
		name       string
		stream     bool
		handler    http.HandlerFunc
		wantOK     bool
		wantStatus int
		wantCode   string
		wantTokens int
		wantInc    bool
	}{
		{"json 200", false, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"content":"hi"}`))
		}, true, 200, "", 0, false},
		{"json error by code", false, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(429)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"slow down"}}`))
		}, false, 429, "429 rate_limited", 0, false},
		{"stream complete", true, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for range 3 {
				w.Write([]byte("event: delta\ndata: {\"type\":\"delta\",\"content\":\"x\"}\n\n"))
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Millisecond)
			}
			w.Write([]byte("event: done\ndata: {\"type\":\"done\"}\n\n"))
		}, true, 200, "", 3, false},
		{"stream error event", true, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("event: delta\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"code\":\"upstream_timeout\"}}\n\n"))
		}, false, 200, "stream upstream_timeout", 1, true},
		{"stream cut", true, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("event: delta\ndata: {}\n\n"))
		}, false, 200, "stream_incomplete", 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var gotAuth, gotBody string
			base := serve(t, func(w http.ResponseWriter, r *http.Request) {
				gotAuth = r.Header.Get("Authorization")
				b := make([]byte, 512)
				n, _ := r.Body.Read(b)
				gotBody = string(b[:n])
				c.handler(w, r)
			})
			body := PersonaBody(RequestSpec{UserText: "hello", Stream: c.stream})
			tg, err := NewTarget("gateway", ProtoPersona, c.stream, []Variant{{URL: base + "/v1/personas/psn_x/chat", Auth: "Bearer k", Body: body}}, 4, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var gaps int
			due := time.Now()
			o := tg.Do(0, due, due.Add(5*time.Second), func(time.Duration) { gaps++ })
			if o.OK() != c.wantOK || o.Status != c.wantStatus || o.Code != c.wantCode || o.Tokens != c.wantTokens || o.Incomplete != c.wantInc {
				t.Fatalf("outcome %+v", o)
			}
			if gotAuth != "Bearer k" || !strings.Contains(gotBody, `"userText":"hello"`) {
				t.Errorf("request: auth %q body %q", gotAuth, gotBody)
			}
			if c.wantTokens > 1 && gaps != c.wantTokens-1 {
				t.Errorf("gaps %d, want %d", gaps, c.wantTokens-1)
			}
			if c.wantTokens > 0 && (o.FirstToken <= 0 || o.FirstToken > o.Done) {
				t.Errorf("first token %v, done %v", o.FirstToken, o.Done)
			}
		})
	}
}

func TestTargetTransportError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	tg, err := NewTarget("direct", ProtoOpenAI, false, []Variant{{URL: "http://" + addr + "/v1/chat/completions", Body: []byte("{}")}}, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	o := tg.Do(0, time.Now(), time.Now().Add(time.Second), nil)
	if o.OK() || o.Status != 0 || o.Code != "conn_refused" {
		t.Fatalf("outcome %+v, want conn_refused", o)
	}
}

func TestRunOpenLoopCounts(t *testing.T) {
	base := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) })
	mk := func(name string) *Target {
		tg, err := NewTarget(name, ProtoPersona, false, []Variant{{URL: base + "/x", Body: []byte("{}")}}, 64, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	stats, _, err := Run(Config{Rate: 400, Count: 80, Timeout: 5 * time.Second, MaxInFlight: 100, Slice: 50 * time.Millisecond},
		[]*Target{mk("direct"), mk("gateway")}, SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _, _, _, _ := stats[0].Counts()
	b, okB, _, _, _ := stats[1].Counts()
	if a+b != 80 || a != 40 || b != 40 || okB != 40 {
		t.Errorf("direct %d gateway %d (ok %d): want 40 each from 50ms slices at 400/s", a, b, okB)
	}
}

func TestParseStatCPU(t *testing.T) {
	cases := []struct {
		name string
		stat string
		want time.Duration
		err  bool
	}{
		{"plain", "1234 (gateway) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0", 3 * time.Second, false},
		{"name with spaces and parens", "7 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0", 30 * time.Millisecond, false},
		{"truncated", "7 (x) R 1 2", 0, true},
		{"no name", "garbage", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(c.stat))
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %v, %v; want %v, err=%v", got, err, c.want, c.err)
			}
		})
	}
}
