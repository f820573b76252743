package anthropic

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/moonborn/edge/providers/providertest"
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
	var seeds []string
	for _, s := range []string{msgStart, textDelta("Hel\"lo\u00e9\n"), msgDelta, overloaded, thinking, jsonDelta, ping, msgStop} {
		seeds = append(seeds, dataOf(s))
	}
	seeds = append(seeds, `{"type":null,"delta":{"type":"text_delta","text":"\ud83d\ude00"},"usage":{"output_tokens":null}}`)
	providertest.FuzzOracle(f, seeds, "parseEvent", parseEvent, refEvent, func(data []byte, got *event, want event) bool {
		bothUsages := bytes.Contains(data, []byte(`"message"`)) && bytes.Contains(data, []byte(`"usage"`))
		return string(got.typ) == string(want.typ) && string(got.deltaType) == string(want.deltaType) && string(got.text) == string(want.text) &&
			string(got.errType) == string(want.errType) && (bothUsages || got.usage == want.usage)
	})
}

// TestConformance runs the suite's protocol-agnostic behaviours.
func TestConformance(t *testing.T) { providertest.Run(t, proto) }

// BenchmarkStreamRelay: allocs/op is the per-stream cost; the deltas add
// none (TestConformance/DeltaAllocs).
func BenchmarkStreamRelay(b *testing.B) { providertest.BenchStreamRelay(b, proto) }

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
