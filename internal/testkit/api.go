package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The client side of the gateway's public API as its tests speak it:
// one exchange, the two body shapes of API.md, and its event stream.
// The gateway's own behaviour tests and the binary's wiring tests both
// drive a gateway this way.

// Client sends requests to the gateway serving at Base
// ("http://host:port").
type Client struct {
	T    testing.TB
	Base string
}

// Reply is a finished HTTP exchange.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// Post sends body as JSON to path with a bearer token (none when empty)
// and the header pairs in hdr.
func (c Client) Post(path, token, body string, hdr ...string) Reply {
	c.T.Helper()
	req, err := http.NewRequest(http.MethodPost, c.Base+path, strings.NewReader(body))
	if err != nil {
		c.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.Do(req)
}

// Do sends req and reads its whole reply, failing the test on a
// transport error.
func (c Client) Do(req *http.Request) Reply {
	c.T.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.T.Fatalf("read body: %v", err)
	}
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Chat posts body to persona's chat route.
func (c Client) Chat(token, persona, body string) Reply {
	c.T.Helper()
	return c.Post("/v1/personas/"+persona+"/chat", token, body)
}

// OpenStream posts a streaming chat and returns the response (closed
// when the test ends) and a reader of its events.
func (c Client) OpenStream(token, persona, body string) (*http.Response, *SSEReader) {
	c.T.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Base+"/v1/personas/"+persona+"/chat", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.T.Fatal(err)
	}
	c.T.Cleanup(func() { resp.Body.Close() })
	return resp, NewSSEReader(resp.Body)
}

// ChatOK is the 200 body of API.md.
type ChatOK struct {
	Content       string `json:"content"`
	InputTokens   int64  `json:"inputTokens"`
	OutputTokens  int64  `json:"outputTokens"`
	CostUsdMicros int64  `json:"costUsdMicros"`
	Model         string `json:"model"`
	LatencyMs     int64  `json:"latencyMs"`
}

// DecodeOK decodes a 200 chat body and fails the test unless it is
// JSON with exactly API.md's six fields, integers as integers.
func DecodeOK(t testing.TB, r Reply) ChatOK {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("status %d body %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	for _, f := range []string{"content", "inputTokens", "outputTokens", "costUsdMicros", "model", "latencyMs"} {
		if _, ok := raw[f]; !ok {
			t.Fatalf("field %s missing in %s", f, r.Body)
		}
	}
	if len(raw) != 6 {
		t.Fatalf("unexpected fields in %s", r.Body)
	}
	var ok ChatOK
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ok); err != nil { // integers must decode as int64
		t.Fatalf("body %s: %v", r.Body, err)
	}
	return ok
}

// APIError is the error body of API.md.
type APIError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// DecodeErr decodes an error body and fails the test unless it is
// API.md's shape, with a code and a message, served as JSON.
func DecodeErr(t testing.TB, r Reply) APIError {
	t.Helper()
	var e APIError
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d: body %q is not the error shape (%v)", r.Status, r.Body, err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q", ct)
	}
	return e
}

// SSEEvent is one API.md event as a client reads it.
type SSEEvent struct {
	Name string
	Data map[string]any
	Raw  string
}

// SSEReader reads API.md events (and counts ping comments) off a stream.
type SSEReader struct {
	br *bufio.Reader
	// Pings counts the ": ping" comments read so far.
	Pings int
}

// NewSSEReader reads events from r.
func NewSSEReader(r io.Reader) *SSEReader { return &SSEReader{br: bufio.NewReader(r)} }

// Next reads one event. An event that is not exactly one "event:" line
// and one "data:" line of JSON whose type is the event's name is an
// error.
func (r *SSEReader) Next() (SSEEvent, error) {
	var ev SSEEvent
	var lines []string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(lines) == 0 {
				continue
			}
			break
		}
		if line == ": ping" {
			r.Pings++
			continue
		}
		lines = append(lines, line)
	}
	ev.Raw = strings.Join(lines, "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
		return ev, fmt.Errorf("malformed event %q", ev.Raw)
	}
	ev.Name = strings.TrimPrefix(lines[0], "event: ")
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &ev.Data); err != nil {
		return ev, fmt.Errorf("event data %q: %v", lines[1], err)
	}
	if ev.Data["type"] != ev.Name {
		return ev, fmt.Errorf("event %q has type %v", ev.Name, ev.Data["type"])
	}
	return ev, nil
}

// UntilDone reads events up to the done event, failing the test on a
// read error, and returns the done event and how many came before it.
func (r *SSEReader) UntilDone(t testing.TB) (SSEEvent, int) {
	t.Helper()
	for n := 0; ; n++ {
		ev, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "done" {
			return ev, n
		}
	}
}
