// Package gateway is the HTTP edge: the fasthttp server and routes, the
// persona chat handler, the SSE relay, the error → status mapping and the
// admin listener. It is the only package that knows both policy and
// providers; everything it needs from them comes in through Options.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// Authenticator turns a bearer token into a principal.
type Authenticator interface {
	Authenticate(token []byte, now time.Time) (policy.Principal, error)
}

// PersonaResolver finds a persona visible to a workspace.
type PersonaResolver interface {
	Resolve(ctx context.Context, workspace, id string, now time.Time) (*persona.Persona, error)
}

// Limiter admits requests against rate limits and quotas and settles
// them with their real usage. policy.LocalLimiter and policy.RedisLimiter
// implement it.
type Limiter interface {
	Admit(ctx context.Context, key policy.LimitKey, reserveTokens int64, now time.Time) (policy.Decision, error)
	Settle(ctx context.Context, r policy.Reservation, actualTokens, costUsdMicros int64, now time.Time) error
}

// Model is one public model id and how it is served.
type Model struct {
	// ID is the public model id clients name in modelId.
	ID string
	// ProviderName names the upstream for usage records and logs.
	ProviderName string
	// Provider serves the model.
	Provider providers.Provider
	// UpstreamModel is the model name sent upstream.
	UpstreamModel string
	// Prices are USD per million tokens of each kind (cache defaults
	// already applied).
	Prices policy.Prices
	// PromptCache is how persona prompts are cached at the provider.
	PromptCache PromptCache
	// MaxOutputTokens is the largest cap a request may ask for, and the cap
	// used when neither request nor persona sets one.
	MaxOutputTokens int
	// Temperature is the model's default, nil for the upstream's own.
	Temperature *float64
}

// PromptCache is a model's prompt-cache policy for persona prompts.
type PromptCache struct {
	// Off asks no caching: no breakpoint, no prompt_cache_key. Callers'
	// own cache_control markers on the SDK routes still pass.
	Off bool
	// TTL is the persona breakpoint's TTL at Anthropic (Cache5m when zero).
	TTL providers.CacheTTL
	// MinTokens is the shortest persona prompt (estimated tokens) given an
	// Anthropic breakpoint: a shorter prefix is not cached upstream.
	MinTokens int64
}

// Options configure a Server. Zero values are noted per field.
type Options struct {
	// Auth authenticates callers: the first State's. Required.
	Auth Authenticator
	// Personas resolves persona ids: the first State's. Required.
	Personas PersonaResolver
	// Models maps public model ids: the first State's. Required,
	// non-empty.
	Models map[string]*Model
	// Version names the first State's configuration. Optional.
	Version string
	// Ledger receives one usage record per authenticated request. Required.
	Ledger ledger.Ledger
	// Limiter enforces rate limits and quotas; nil admits everything.
	Limiter Limiter
	// Metrics records request metrics; nil records none.
	Metrics *Metrics
	// AccessLog writes one log line per chat request at Info level.
	AccessLog bool
	// AccessWriter, when set, receives the access lines as JSON lines
	// the gateway encodes itself (the same fields and shape as Log's
	// JSON handler, at a fraction of its cost), one Write per line. It
	// must be the writer Log's handler writes to, so the lines are
	// redacted and ordered like every other. Nil: through Log. Written
	// only while Log is enabled at Info level.
	AccessWriter io.Writer
	// Log receives errors and lifecycle lines; nil discards.
	Log *slog.Logger
	// Limits are the listener's size and time limits; zero fields get
	// their defaults (see Limits.SetDefaults).
	Limits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tracer starts each chat request's server span (see tracing.go);
	// nil traces nothing. Give the models' pools the same provider's
	// tracer so their attempt spans join.
	Tracer trace.Tracer
	// TraceContent puts prompts and non-streaming replies on the spans
	// (tracing.recordContent); false keeps them off.
	TraceContent bool
}

// Server serves the public API. Build it with New; it is safe for
// concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	ids  *requestIDs
	srv  *fasthttp.Server
	// state is what requests run on; each loads it once (see State).
	state atomic.Pointer[State]

	streams *streamRegistry // the open stream relays (stream_registry.go)
	workers *relayWorkers
	gone    *goneWatcher

	unreadable unreadableRequests // requests fasthttp could not read (unreadable.go)
}

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	first := State{Auth: opts.Auth, Personas: opts.Personas, Models: opts.Models, Version: opts.Version}
	var errs []error
	if err := first.check(); err != nil {
		errs = append(errs, err)
	}
	if opts.Ledger == nil {
		errs = append(errs, errors.New("gateway: Ledger is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	opts.Limits.SetDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     log,
		now:     opts.Now,
		ids:     newRequestIDs(),
		streams: newStreamRegistry(),
		workers: newRelayWorkers(),
		gone:    newGoneWatcher(),
	}
	_ = s.SetState(first) // checked above
	s.unreadable.drainBufs.New = func() any { b := make([]byte, 32<<10); return &b }
	s.srv = &fasthttp.Server{
		Handler:               s.Handler(),
		ErrorHandler:          s.serveParseError,
		MaxRequestBodySize:    opts.MaxBodyBytes,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		ReadBufferSize:        16 << 10, // room for long JWT bearer headers
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		// Stream relays hijack their connection and, after a complete
		// stream, serve its next requests themselves (ServeConn).
		KeepHijackedConns: true,
		ConnState:         s.streams.connState,
		Logger:            fasthttpLogger{s},
		// Keep the raw request out of fasthttp's error texts (they quote
		// its first bytes, Authorization included); they are not logged
		// either (fasthttpLogger, serveParseError).
		SecureErrorLogMessage: true,
	}
	return s, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Handler returns the public API's request handler: request id, panic
// recovery and routing, with the error shape on every non-2xx reply.
func (s *Server) Handler() fasthttp.RequestHandler {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.POST("/v1/personas/{id}/chat", s.serveChat)
	r.POST(routeOpenAIChat, s.serveOpenAIChat)
	r.POST(routeAnthropicMs, s.serveAnthropicMessages)
	r.GET(routeModels, s.serveModels)
	r.GET("/v1/models/{model}", s.serveModel)
	r.NotFound = func(ctx *fasthttp.RequestCtx) {
		s.opts.Metrics.answered(routeOther, http.StatusNotFound, codeNotFound)
		writeRouteError(ctx, notFoundError("no route for "+string(ctx.Method())+" "+string(ctx.Path())))
	}
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		s.opts.Metrics.answered(routeChat, http.StatusMethodNotAllowed, codeMethodNotAllowed)
		allow := allowedMethod(ctx)
		ctx.Response.Header.Set("Allow", allow)
		writeRouteError(ctx, methodNotAllowedError("method "+string(ctx.Method())+" not allowed; use "+allow))
	}
	r.PanicHandler = func(ctx *fasthttp.RequestCtx, v any) {
		s.log.Error("handler panic", "panic", fmt.Sprint(v), "request_id", string(ctx.Response.Header.Peek("X-Request-Id")))
		s.opts.Metrics.answered(routeChat, http.StatusInternalServerError, codeInternal)
		ctx.Response.ResetBody()
		writeRouteError(ctx, internalError())
	}
	route := r.Handler
	return func(ctx *fasthttp.RequestCtx) {
		s.setRequestID(ctx)
		route(ctx)
	}
}

// setRequestID echoes a sane caller id or makes one, on every reply.
// It also keeps header names as written (X-RateLimit-*, as OpenAI's
// clients spell them) instead of fasthttp's X-Ratelimit-*.
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.DisableNormalizing()
	if id := ctx.Request.Header.Peek("X-Request-Id"); saneRequestID(id) {
		ctx.Response.Header.SetBytesV("X-Request-Id", id)
		return
	}
	var buf [48]byte
	ctx.Response.Header.SetBytesV("X-Request-Id", s.ids.appendNext(buf[:0]))
}

// writeError writes the API error shape with its status and headers.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.SetStatusCode(e.status)
	ctx.Response.Header.SetContentType("application/json")
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.retryAfter)))
	}
	buf := ctx.Response.Body()[:0]
	ctx.Response.SetBodyRaw(appendErrorBody(buf, e.code, e.message))
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(patientListener{Listener: ln, log: s.log})
}

// patientListener keeps accepting through resource exhaustion: when the
// process runs out of file descriptors (EMFILE/ENFILE) Accept waits and
// tries again, as net/http does, instead of failing the server and
// dropping every open stream with it.
type patientListener struct {
	net.Listener
	log *slog.Logger
}

func (l patientListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS)) {
			return c, err
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
			l.log.Warn("accept: out of file descriptors; retrying", "err", err.Error())
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		time.Sleep(delay)
	}
}

// Shutdown stops accepting, lets in-flight requests and streams finish
// until ctx ends, then aborts the streams still open (each ends with an
// error event and its usage recorded) and waits for them to wind up.
// It does not close the Ledger; the caller does, after Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.streams.stopping.Store(true)
	// Wake the connections streams handed back while they wait for a
	// request, now and until fasthttp's Shutdown returns: one handed back
	// after a wake is caught by the next.
	woken := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			s.streams.wakeIdle()
			select {
			case <-woken:
				return
			case <-t.C:
			}
		}
	}()
	err := s.srv.ShutdownWithContext(ctx)
	close(woken)
	// Streams run on hijacked connections the server no longer counts:
	// wait for them separately, until the same deadline.
	done := make(chan struct{})
	go func() { s.streams.wait(); s.workers.stop(); s.gone.stop(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
	}
	s.streams.abortAll()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("streams still open after shutdown abort")
	}
	return ctx.Err()
}
