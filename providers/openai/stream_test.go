package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/moonborn/edge/providers/providertest"
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
	seeds := []string{
		strings.TrimSuffix(strings.TrimPrefix(deltaChunk("Hel\"lo\u00e9\n"), "data: "), "\n\n"),
		strings.TrimSuffix(strings.TrimPrefix(usageEmpty, "data: "), "\n\n"),
		strings.TrimSuffix(strings.TrimPrefix(usageNull, "data: "), "\n\n"),
		`{"error":{"message":"x","type":"server_error"}}`,
		`{"choices":[{"delta":{"content":"\ud83d\ude00"}},{"delta":5}]}`,
		`{"choices":[{"delta":{"content":null}}],"usage":{"prompt_tokens":null}}`,
	}
	providertest.FuzzOracle(f, seeds, "parseChunk", parseChunk, refChunk, func(_ []byte, c *chunk, want refResult) bool {
		return string(c.content) == want.content && c.hasUsage == want.usage && c.promptTokens == want.in &&
			c.completionTokens == want.out && c.hasError == want.hasError
	})
}

// TestConformance runs the suite's protocol-agnostic behaviours.
func TestConformance(t *testing.T) { providertest.Run(t, proto) }

// BenchmarkStreamRelay: allocs/op is the per-stream cost (request,
// stream, timer); the deltas add none (TestConformance/DeltaAllocs).
func BenchmarkStreamRelay(b *testing.B) { providertest.BenchStreamRelay(b, proto) }

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
