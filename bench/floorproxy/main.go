// Command floorproxy is the bench's floor: the least a Go reverse proxy
// on fasthttp does per request. It reads a request, POSTs one fixed
// chat-completions body to the upstream on a keep-alive connection, and
// copies the reply back: no auth, no JSON, no limits, no metrics, no
// log. Run by bench/run.sh (figure floor-2000) where the gateway would
// be, it prices the two network legs and fasthttp on this machine, so
// the gateway's own share is gateway − floor, measured in the same way.
package main

import (
	"flag"
	"log"
	"net"

	"github.com/valyala/fasthttp"
)

// floorBody is about the size of the body the gateway sends for the
// bench's default request (persona system prompt, user text, max_tokens).
const floorBody = `{"model":"mock-1","messages":[{"role":"system","content":"You are Moonborn's demo persona: concise, friendly and accurate."},` +
	`{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":20,"stream":false}`

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to serve on")
	upstream := flag.String("upstream", "http://127.0.0.1:18081/v1/chat/completions", "chat-completions URL of the mock")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(fasthttp.Serve(ln, handler(*upstream)))
}

// handler proxies every request to upstream (an http:// URL) as the fixed
// POST.
func handler(upstream string) fasthttp.RequestHandler {
	var u fasthttp.URI
	if err := u.Parse(nil, []byte(upstream)); err != nil {
		log.Fatal(err)
	}
	hc := &fasthttp.HostClient{Addr: string(u.Host()), MaxConns: 4096}
	return func(ctx *fasthttp.RequestCtx) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(upstream)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyString(floorBody)
		if err := hc.Do(req, resp); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
			return
		}
		ctx.SetStatusCode(resp.StatusCode())
		ctx.SetContentTypeBytes(resp.Header.ContentType())
		ctx.SetBody(resp.Body())
	}
}
