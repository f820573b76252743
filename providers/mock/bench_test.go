package mock

import (
	"io"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHandler measures the handler paths in memory (no sockets): the
// non-streaming reply, and the stream including fasthttp's stream-writer
// plumbing, drained into io.Discard.
func BenchmarkHandler(b *testing.B) {
	cases := []struct {
		name, path, body string
		stream           bool
	}{
		{"openai/nonstream", "/v1/chat/completions", openAIBody(false, false, ""), false},
		{"openai/stream", "/v1/chat/completions", openAIBody(true, true, ""), true},
		{"anthropic/nonstream", "/v1/messages", anthropicBody(false, 100), false},
		{"anthropic/stream", "/v1/messages", anthropicBody(true, 100), true},
		// A 2,000-token persona read from the cache on every call.
		{"anthropic/cached", "/v1/messages", anCacheBody(false, []string{anBlock(words(2000, "word"), "5m"), anBlock("digest", "")}, "hi"), false},
		{"openai/cached", "/v1/chat/completions", oaCacheBody(false, "persona", words(2000, "word"), "hi"), false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			s := NewServer(ServerConfig{})
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI(tc.path)
			ctx.Request.Header.Set("anthropic-version", anthropicVersion)
			ctx.Request.Header.SetContentType("application/json")
			ctx.Request.SetBodyString(tc.body)
			for b.Loop() {
				ctx.Response.Reset()
				s.Handler(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if tc.stream {
					if err := ctx.Response.BodyWriteTo(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
