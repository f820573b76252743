package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

// refEvent reads an event with encoding/json by the rules parseEvent
// follows: null is absent, wrong types are errors.
func refEvent(data []byte) (event, bool) {
	var e event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return e, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, false
	}
	m, ok := top.(map[string]any)
	if !ok {
		return e, false
	}
	str := func(v any) ([]byte, bool) {
		if v == nil {
			return nil, true
		}
		s, ok := v.(string)
		return []byte(s), ok
	}
	obj := func(v any) (map[string]any, bool) {
		if v == nil {
			return nil, true
		}
		o, ok := v.(map[string]any)
		return o, ok
	}
	usage := func(v any) bool {
		u, ok := obj(v)
		if !ok || u == nil {
			return ok
		}
		e.usage = usageFields{}
		for key, f := range map[string]struct {
			dst *int64
			bit uint8
		}{"input_tokens": {&e.usage.input, hasInput}, "cache_creation_input_tokens": {&e.usage.cacheCreation, hasCacheCreation},
			"cache_read_input_tokens": {&e.usage.cacheRead, hasCacheRead}, "output_tokens": {&e.usage.output, hasOutput}} {
			if x := u[key]; x != nil {
				n, ok := x.(json.Number)
				if !ok {
					return false
				}
				i, err := strconv.ParseInt(string(n), 10, 64)
				if err != nil {
					return false
				}
				*f.dst, e.usage.has = i, e.usage.has|f.bit
			}
		}
		return true
	}
	if e.typ, ok = str(m["type"]); !ok {
		return e, false
	}
	d, ok := obj(m["delta"])
	if !ok {
		return e, false
	}
	if e.deltaType, ok = str(d["type"]); !ok {
		return e, false
	}
	if e.text, ok = str(d["text"]); !ok {
		return e, false
	}
	if !usage(m["usage"]) {
		return e, false
	}
	msg, ok := obj(m["message"])
	if !ok || !usage(msg["usage"]) {
		return e, false
	}
	er, ok := obj(m["error"])
	if !ok {
		return e, false
	}
	if e.errType, ok = str(er["type"]); !ok {
		return e, false
	}
	return e, true
}

func dataOf(ev string) string {
	_, data, _ := strings.Cut(ev, "data: ")
	return strings.TrimSuffix(data, "\n\n")
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{msgStart, textDelta("Hel\"lo\u00e9\n"), msgDelta, overloaded, thinking, jsonDelta, ping, msgStop} {
		f.Add([]byte(dataOf(s)))
	}
	f.Add([]byte(`{"type":null,"delta":{"type":"text_delta","text":"\ud83d\ude00"},"usage":{"output_tokens":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got event
		err := parseEvent(data, &got)
		if bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > 500 || testkit.HasDuplicateKeys(data) {
			return
		}
		want, ok := refEvent(data)
		if ok != (err == nil) {
			t.Fatalf("parseEvent err = %v, reference ok = %v", err, ok)
		}
		if !ok {
			return
		}
		bothUsages := bytes.Contains(data, []byte(`"message"`)) && bytes.Contains(data, []byte(`"usage"`))
		if string(got.typ) != string(want.typ) || string(got.deltaType) != string(want.deltaType) || string(got.text) != string(want.text) ||
			string(got.errType) != string(want.errType) || (!bothUsages && got.usage != want.usage) {
			t.Fatalf("parseEvent = %+v; reference %+v", got, want)
		}
	})
}

func streamEvents(deltas int) []string {
	events := []string{msgStart, blockStart, ping}
	for i := range deltas {
		events = append(events, textDelta("tok"+strconv.Itoa(i%10)+" "))
	}
	return append(events, blockStop, msgDelta, msgStop)
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
	for range 100 {
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
// upstream per op: allocs/op is the per-stream cost; the deltas add none
// (TestDeltaAllocs).
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
			b.Fatal("usage missed")
		}
		s.Close()
	}
	b.ReportMetric(float64(deltas)/float64(b.N), "deltas/op")
}

func BenchmarkParseEvent(b *testing.B) {
	data := []byte(dataOf(textDelta("Hello")))
	var e event
	b.ReportAllocs()
	for b.Loop() {
		if err := parseEvent(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// The stream passes NotifyWait through: its hook runs before the wait for
// the next event, and a false answer abandons that wait at once.
func TestNotifyWaitAbandonsWait(t *testing.T) {
	resp := testkit.ChunkedSSE(msgStart, blockStart, textDelta("Hi"))
	resp = resp[:len(resp)-len("0\r\n\r\n")] // then silence, the stream still open
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
