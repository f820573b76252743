package gateway

import (
	"testing"
)

func benchSDK(b *testing.B, path, body string, hdr ...string) {
	benchRoute(b, benchServer(b, true), path, body, hdr...)
}

// BenchmarkOpenAIChat is BenchmarkChat's request on /v1/chat/completions.
func BenchmarkOpenAIChat(b *testing.B) {
	benchSDK(b, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"Hello there, how are you today?"}]}`)
}

// BenchmarkOpenAIChatPersona names the persona in the model field.
func BenchmarkOpenAIChatPersona(b *testing.B) {
	benchSDK(b, "/v1/chat/completions", `{"model":"persona/psn_x","messages":[{"role":"user","content":"Hello there, how are you today?"}]}`)
}

// BenchmarkAnthropicMessages is BenchmarkChat's request on /v1/messages.
func BenchmarkAnthropicMessages(b *testing.B) {
	benchSDK(b, "/v1/messages", `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"Hello there, how are you today?"}]}`,
		"anthropic-version", "2023-06-01")
}

// A relayed delta in either SDK shape allocates nothing once the stream
// has started (its prefix is built with the first event).
func TestSDKWriteDeltaAllocs(t *testing.T) {
	for _, kind := range []apiKind{apiOpenAI, apiAnthropic} {
		r := sseWriterRelay(t)
		r.x = &exchange{model: &Model{ID: "m"}, api: &sdkAPI{kind: kind, id: "req_1", created: 1}}
		r.st = nil
		d := []byte(`Hello "world" \ 1`)
		r.x.api.started = true
		r.x.api.prefix = r.x.api.appendOpenAIHead(append(r.x.api.prefix, "data: "...), "chat.completion.chunk", "m")
		if n := testing.AllocsPerRun(1000, func() {
			if err := r.writeDelta(d); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("kind %d: %.1f allocations per delta written, want 0", kind, n)
		}
	}
}
