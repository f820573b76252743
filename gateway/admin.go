package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// ReadyCheck reports why the gateway cannot serve yet; nil means ready.
type ReadyCheck func() error

// AdminOptions configure the admin listener's handler. Zero fields turn
// their endpoint off.
type AdminOptions struct {
	// Token is the bearer token /admin/* requires; empty disables /admin/*
	// (404). /healthz, /readyz and /metrics stay open: bind the listener
	// to loopback or a private network.
	Token string
	// Ready lists readiness checks for /readyz.
	Ready []ReadyCheck
	// Pools feed GET /admin/upstreams.
	Pools []*providers.Pool
	// CurrentPools, when set, is called instead of reading Pools (the
	// pools change on a config reload).
	CurrentPools func() []*providers.Pool
	// Keys serves the key management API (/admin/workspaces/{id}/keys,
	// /admin/keys/{id}[/rotate|/revoke]); nil: 404.
	Keys KeyManager
	// Reload serves POST /admin/reload; nil: 404.
	Reload ReloadFunc
	// Status serves GET /admin/status (any JSON value); nil: 404.
	Status func() any
	// Usage answers GET /admin/workspaces/{id}/usage?from=&to=; nil: 404.
	Usage UsageReader
	// Metrics serves /metrics; nil: 404.
	Metrics fasthttp.RequestHandler
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// UsageReader sums a workspace's recorded usage over [from, to).
type UsageReader interface {
	Usage(ctx context.Context, workspace string, from, to time.Time) (ledger.UsageSummary, error)
}

// AdminHandler serves the admin listener: /healthz (alive), /readyz (every
// check passes), /metrics, and the token-protected /admin/* views.
func AdminHandler(o AdminOptions) fasthttp.RequestHandler {
	if o.Now == nil {
		o.Now = time.Now
	}
	tokenHash := sha256.Sum256([]byte(o.Token))
	return func(ctx *fasthttp.RequestCtx) {
		// Matched on the path as sent, not fasthttp's decoded and
		// normalised one: a proxy rule in front keyed on the path must see
		// what the gateway serves.
		path := string(ctx.URI().PathOriginal())
		if hasEncodedSeparator(path) {
			writeError(ctx, &apiError{status: http.StatusBadRequest, code: codeValidation,
				message: "path: encoded separators and dot segments are not allowed"})
			return
		}
		if path == "/metrics" && o.Metrics != nil {
			o.Metrics(ctx)
			return
		}
		ctx.Response.Header.SetContentType("application/json")
		switch path {
		case "/healthz":
			ctx.SetBodyString(`{"status":"ok"}`)
			return
		case "/readyz":
			for _, c := range o.Ready {
				if err := c(); err != nil {
					writeError(ctx, unavailableError("not ready: "+err.Error()))
					return
				}
			}
			ctx.SetBodyString(`{"status":"ready"}`)
			return
		}
		if strings.HasPrefix(path, "/admin/") && serveAdminAPI(ctx, &o, &tokenHash, path) {
			return
		}
		writeError(ctx, notFoundError("no route for "+path))
	}
}

// serveAdminAPI answers the token-protected /admin/* routes; it reports
// false for a path it has no route for (a 404 for the caller to write).
func serveAdminAPI(ctx *fasthttp.RequestCtx, o *AdminOptions, tokenHash *[sha256.Size]byte, path string) bool {
	if o.Token == "" {
		writeError(ctx, notFoundError("admin API disabled: set server.adminToken"))
		return true
	}
	// Compare hashes so the comparison takes the same time whatever
	// the presented token's length.
	tok, _ := bearerToken(ctx.Request.Header.Peek("Authorization"))
	got := sha256.Sum256(tok)
	if subtle.ConstantTimeCompare(got[:], tokenHash[:]) != 1 {
		writeError(ctx, unauthenticatedError("admin endpoints need the admin bearer token"))
		return true
	}
	if serveControl(ctx, o, path) {
		return true
	}
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		writeError(ctx, methodNotAllowedError("use GET"))
		return true
	}
	if path == "/admin/upstreams" {
		now := o.Now()
		pools := o.Pools
		if o.CurrentPools != nil {
			pools = o.CurrentPools()
		}
		out := make([]providers.PoolSnapshot, 0, len(pools))
		for _, p := range pools {
			out = append(out, p.Snapshot(now))
		}
		b, _ := json.Marshal(map[string]any{"models": out})
		ctx.SetBody(b)
		return true
	}
	if ws, ok := strings.CutPrefix(path, "/admin/workspaces/"); ok && o.Usage != nil {
		if ws, ok = strings.CutSuffix(ws, "/usage"); ok && ws != "" && !strings.Contains(ws, "/") {
			if ws, err := url.PathUnescape(ws); err == nil {
				serveUsage(ctx, *o, ws)
				return true
			}
		}
	}
	return false
}

// hasEncodedSeparator reports a raw path that a decoding or normalising
// hop would read as a different path: %2F or %5C (any case), a
// backslash, or a . or .. segment, plain or encoded.
func hasEncodedSeparator(path string) bool {
	if strings.ContainsRune(path, '\\') {
		return true
	}
	for i := 0; i+2 < len(path); i++ {
		if path[i] == '%' {
			switch strings.ToLower(path[i+1 : i+3]) {
			case "2f", "5c", "2e", "00":
				return true
			}
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// serveUsage answers the usage totals of one workspace, by model and by
// persona, from the ledger.
func serveUsage(ctx *fasthttp.RequestCtx, o AdminOptions, workspace string) {
	args := ctx.QueryArgs()
	from, to, err := ledger.ParseUsageRange(string(args.Peek("from")), string(args.Peek("to")), o.Now())
	if err != nil {
		writeError(ctx, validationError("from/to", err.Error()))
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := o.Usage.Usage(c, workspace, from, to)
	if err != nil {
		writeError(ctx, unavailableError("usage store unavailable"))
		return
	}
	b, _ := json.Marshal(sum)
	ctx.SetBody(b)
}
