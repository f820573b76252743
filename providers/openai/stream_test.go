package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

type refResult struct {
	content  string
	usage    bool
	in, out  int64
	hasError bool
}

// refChunk reads a chunk with encoding/json, following the same rules as
// parseChunk: null is absent, wrong types are errors.
func refChunk(data []byte) (refResult, bool) {
	var r refResult
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil || dec.More() {
		return r, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, false
	}
	m, ok := top.(map[string]any)
	if !ok {
		return r, false
	}
	if ch, present := m["choices"]; present && ch != nil {
		arr, ok := ch.([]any)
		if !ok {
			return r, false
		}
		if len(arr) > 0 && arr[0] != nil {
			c0, ok := arr[0].(map[string]any)
			if !ok {
				return r, false
			}
			if d, present := c0["delta"]; present && d != nil {
				delta, ok := d.(map[string]any)
				if !ok {
					return r, false
				}
				if c, present := delta["content"]; present && c != nil {
					s, ok := c.(string)
					if !ok {
						return r, false
					}
					r.content = s
				}
			}
		}
	}
	if u, present := m["usage"]; present && u != nil {
		um, ok := u.(map[string]any)
		if !ok {
			return r, false
		}
		r.usage = true
		for key, dst := range map[string]*int64{"prompt_tokens": &r.in, "completion_tokens": &r.out} {
			if v, present := um[key]; present && v != nil {
				n, ok := v.(json.Number)
				if !ok {
					return r, false
				}
				i, err := strconv.ParseInt(string(n), 10, 64)
				if err != nil {
					return r, false
				}
				*dst = i
			}
		}
	}
	if e, present := m["error"]; present && e != nil {
		r.hasError = true
		if em, ok := e.(map[string]any); ok {
			_ = em
		}
	}
	return r, true
}

func FuzzParseChunk(f *testing.F) {
	for _, s := range []string{
		strings.TrimSuffix(strings.TrimPrefix(deltaChunk("Hel\"lo\u00e9\n"), "data: "), "\n\n"),
		strings.TrimSuffix(strings.TrimPrefix(usageEmpty, "data: "), "\n\n"),
		strings.TrimSuffix(strings.TrimPrefix(usageNull, "data: "), "\n\n"),
		`{"error":{"message":"x","type":"server_error"}}`,
		`{"choices":[{"delta":{"content":"\ud83d\ude00"}},{"delta":5}]}`,
		`{"choices":[{"delta":{"content":null}}],"usage":{"prompt_tokens":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c chunk
		err := parseChunk(data, &c)
		if bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > 500 || testkit.HasDuplicateKeys(data) {
			return
		}
		want, ok := refChunk(data)
		if ok != (err == nil) {
			t.Fatalf("parseChunk err = %v, reference ok = %v", err, ok)
		}
		if !ok {
			return
		}
		if string(c.content) != want.content || c.hasUsage != want.usage || c.promptTokens != want.in ||
			c.completionTokens != want.out || c.hasError != want.hasError {
			t.Fatalf("parseChunk = %q usage=%v %d/%d err=%v; reference %+v", c.content, c.hasUsage, c.promptTokens, c.completionTokens, c.hasError, want)
		}
	})
}

func streamEvents(deltas int) []string {
	events := []string{roleChunk}
	for i := range deltas {
		events = append(events, deltaChunk("tok"+strconv.Itoa(i%10)+" "))
	}
	return append(events, finishChunk, usageEmpty, done)
}

// Relaying a delta allocates nothing: measured over a long stream so the
// stream's setup is not in the count.
func TestDeltaAllocs(t *testing.T) {
	url := testkit.RawUpstream(t, testkit.ChunkedSSE(streamEvents(3000)...))
	s, err := newProvider(t, testConfig(url)).Stream(context.Background(), &baseReq)
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

// BenchmarkStreamRelay reads a whole 20-delta stream from a loopback
// upstream per op: allocs/op is the per-stream cost (request, stream,
// timer); the deltas themselves add none (TestDeltaAllocs).
func BenchmarkStreamRelay(b *testing.B) {
	url := testkit.RawUpstream(b, testkit.ChunkedSSE(streamEvents(20)...))
	p := newProvider(b, testConfig(url))
	b.ReportAllocs()
	deltas := 0
	for b.Loop() {
		s, err := p.Stream(context.Background(), &baseReq)
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
			b.Fatal("usage chunk missed")
		}
		s.Close()
	}
	b.ReportMetric(float64(deltas)/float64(b.N), "deltas/op")
}

func BenchmarkParseChunk(b *testing.B) {
	data := []byte(strings.TrimSuffix(strings.TrimPrefix(deltaChunk("Hello"), "data: "), "\n\n"))
	var c chunk
	b.ReportAllocs()
	for b.Loop() {
		if err := parseChunk(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// NotifyWait's hook runs right before the stream would wait on the
// upstream, and a false answer abandons that wait at once instead of
// waiting for the next event (or the idle timeout).
func TestNotifyWaitAbandonsWait(t *testing.T) {
	// Headers, the role chunk and one delta, then silence: the stream is
	// open but the next event never comes.
	resp := testkit.ChunkedSSE(roleChunk, deltaChunk("Hi"))
	resp = resp[:len(resp)-len("0\r\n\r\n")]
	s, err := newProvider(t, testConfig(testkit.RawUpstream(t, resp))).Stream(context.Background(), &baseReq)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d, err := s.Next(); err != nil || string(d) != "Hi" {
		t.Fatalf("first Next = %q, %v", d, err)
	}
	calls := 0
	if !s.(providers.WaitNotifier).NotifyWait(func() bool { calls++; return false }) {
		t.Fatal("NotifyWait not supported on an HTTP stream")
	}
	// ErrAborted, not an upstream failure: the owner's reader left, and
	// a breaker must not count that against the deployment.
	if _, err = s.Next(); calls != 1 || !errors.Is(err, providers.ErrAborted) {
		t.Fatalf("after the hook said stop: %d calls, err %v; want 1 call and ErrAborted", calls, err)
	}
}

// Close unregisters the hook: the connection goes back to the pool, and
// the next request's reads must not call the previous stream's owner.
func TestNotifyWaitEndsWithStream(t *testing.T) {
	p := newProvider(t, testConfig(testkit.RawUpstream(t, testkit.ChunkedSSE(streamEvents(3)...))))
	calls := 0
	for i := range 2 {
		s, err := p.Stream(context.Background(), &baseReq)
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

// Abort does not wait for the owner: with the owner blocked inside its
// NotifyWait hook (a slow client), Abort still cuts the upstream at once,
// and the owner's Next then ends with ErrAborted.
func TestAbortDoesNotWaitForTheOwner(t *testing.T) {
	resp := testkit.ChunkedSSE(roleChunk, deltaChunk("Hi"))
	resp = resp[:len(resp)-len("0\r\n\r\n")]
	s, err := newProvider(t, testConfig(testkit.RawUpstream(t, resp))).Stream(context.Background(), &baseReq)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
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
