package gateway

import (
	"net/http"

	"github.com/valyala/fasthttp"
)

// ReadyCheck reports why the gateway cannot serve yet; nil means ready.
type ReadyCheck func() error

// AdminHandler serves the admin listener: /healthz (the process is alive)
// and /readyz (every check passes). Metrics and admin APIs join it later.
// Bind it to loopback: it is not meant for the public.
func AdminHandler(checks ...ReadyCheck) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		switch string(ctx.Path()) {
		case "/healthz":
			ctx.SetBodyString(`{"status":"ok"}`)
		case "/readyz":
			for _, c := range checks {
				if err := c(); err != nil {
					ctx.SetStatusCode(http.StatusServiceUnavailable)
					ctx.SetBody(appendErrorBody(nil, codeUpstreamUnavailable, "not ready: "+err.Error()))
					return
				}
			}
			ctx.SetBodyString(`{"status":"ready"}`)
		default:
			ctx.SetStatusCode(http.StatusNotFound)
			ctx.SetBody(appendErrorBody(nil, codeNotFound, "no route for "+string(ctx.Path())))
		}
	}
}
