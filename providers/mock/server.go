package mock

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Server is the wire mock: an HTTP server speaking OpenAI chat completions
// (POST /v1/chat/completions) and Anthropic messages (POST /v1/messages),
// streaming and not, with the faults of its ServerConfig. Control
// endpoints let another process steer it: GET /_mock/stats,
// GET /_mock/config, PUT /_mock/config (a whole ServerConfig as JSON) and
// DELETE /_mock/cache (forget every cached prompt prefix).
//
// Each protocol's prompt cache is simulated on the wire (promptcache.go):
// Anthropic's cache_control breakpoints write and read prefixes with
// their TTLs, OpenAI caches prompts of 1,024 tokens and more in 128-token
// steps, and the usage fields report it as the providers do.
//
// All methods are safe for concurrent use, including SetConfig while
// requests are in flight (each request uses the config it started with).
type Server struct {
	cfg    atomic.Pointer[ServerConfig]
	failed atomic.Int64 // requests failed since the config was set
	ids    atomic.Uint64
	srv    *fasthttp.Server
	done   chan struct{}
	once   sync.Once

	requests         atomic.Int64
	failures         atomic.Int64
	streamsStarted   atomic.Int64
	streamsCompleted atomic.Int64
	streamsAborted   atomic.Int64
	openStalls       atomic.Int64

	lastMu sync.Mutex
	last   lastRequest

	decoders sync.Pool // *wireRequest
	bufs     sync.Pool // *[]byte, non-streaming bodies
	jobs     sync.Pool // *streamJob

	cache      *promptCache
	now        func() time.Time // the cache's clock; tests replace it
	cacheRead  atomic.Int64
	cacheWrite atomic.Int64
}

// Stats are the server's counters since it started.
type Stats struct {
	// Requests counts requests to the API routes (not /_mock/).
	Requests int64 `json:"requests"`
	// Failures counts replies injected by FailStatus.
	Failures int64 `json:"failures"`
	// StreamsStarted counts streams whose writer started.
	StreamsStarted int64 `json:"streamsStarted"`
	// StreamsCompleted counts streams that ended as planned: the end
	// marker, or the cut or error event a knob asked for.
	StreamsCompleted int64 `json:"streamsCompleted"`
	// StreamsAborted counts streams that ended because a write or flush
	// failed (the client went away) or the server shut down.
	StreamsAborted int64 `json:"streamsAborted"`
	// OpenStreams is started − completed − aborted.
	OpenStreams int64 `json:"openStreams"`
	// OpenStalls counts connections held by StallFor < 0 right now.
	OpenStalls int64 `json:"openStalls"`
	// PromptCacheReadTokens sums the cache reads reported (Anthropic's
	// cache_read_input_tokens, OpenAI's cached_tokens).
	PromptCacheReadTokens int64 `json:"promptCacheReadTokens"`
	// PromptCacheWriteTokens sums Anthropic's cache_creation_input_tokens.
	PromptCacheWriteTokens int64 `json:"promptCacheWriteTokens"`
	// PromptCacheEntries is the number of cached prefixes held now.
	PromptCacheEntries int64 `json:"promptCacheEntries"`
}

// NewServer returns a server with cfg (zero fields take their defaults).
// It does not listen: call Serve, or mount Handler in a fasthttp server.
func NewServer(cfg ServerConfig) *Server {
	s := &Server{done: make(chan struct{}), cache: newPromptCache(), now: time.Now}
	s.SetConfig(cfg)
	s.srv = &fasthttp.Server{
		Handler:                      s.Handler,
		Name:                         "mockllm",
		CloseOnShutdown:              true,
		NoDefaultContentType:         true,
		MaxRequestBodySize:           16 << 20,
		DisablePreParseMultipartForm: true,
	}
	return s
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting, wakes every waiting stream and stall (they end
// without their end marker) and waits for open connections to finish.
func (s *Server) Shutdown() error {
	s.once.Do(func() { close(s.done) })
	return s.srv.Shutdown()
}

// SetConfig replaces the config (zero fields take their defaults) and
// restarts the FailCount budget. It does not validate: callers that take
// configs from outside call Validate first.
func (s *Server) SetConfig(cfg ServerConfig) {
	cfg.SetDefaults()
	s.cfg.Store(&cfg)
	s.failed.Store(0)
}

// Config returns the current config.
func (s *Server) Config() ServerConfig { return *s.cfg.Load() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:         s.requests.Load(),
		Failures:         s.failures.Load(),
		StreamsStarted:   s.streamsStarted.Load(),
		StreamsCompleted: s.streamsCompleted.Load(),
		StreamsAborted:   s.streamsAborted.Load(),
		OpenStalls:       s.openStalls.Load(),

		PromptCacheReadTokens:  s.cacheRead.Load(),
		PromptCacheWriteTokens: s.cacheWrite.Load(),
		PromptCacheEntries:     int64(s.cache.len()),
	}
	st.OpenStreams = st.StreamsStarted - st.StreamsCompleted - st.StreamsAborted
	return st
}

// FlushPromptCache forgets every cached prefix.
func (s *Server) FlushPromptCache() { s.cache.flush() }

// Handler serves one request; mount it in any fasthttp server.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if bytes.HasPrefix(path, []byte("/_mock/")) {
		s.control(ctx)
		return
	}
	s.requests.Add(1)
	cfg := s.cfg.Load()
	switch string(path) {
	case "/v1/chat/completions":
		s.chat(ctx, cfg, protoOpenAI)
	case "/v1/messages":
		s.chat(ctx, cfg, protoAnthropic)
	default:
		s.record(ctx, false, false)
		writeOpenAIError(ctx, fasthttp.StatusNotFound, "invalid_request_error", "", "",
			"Invalid URL ("+string(ctx.Method())+" "+string(path)+")")
	}
}

// chat serves both chat routes: auth, decoding, validation, faults, then
// the answer.
func (s *Server) chat(ctx *fasthttp.RequestCtx, cfg *ServerConfig, p protocol) {
	present, matched := checkAuth(ctx, cfg.APIKey, p)
	s.record(ctx, present, matched)
	if !ctx.IsPost() {
		msg := "Invalid method for URL (" + string(ctx.Method()) + " " + string(ctx.Path()) + ")"
		if p == protoOpenAI {
			writeOpenAIError(ctx, fasthttp.StatusMethodNotAllowed, "invalid_request_error", "", "", msg)
		} else {
			writeAnthropicError(ctx, fasthttp.StatusMethodNotAllowed, "invalid_request_error", msg)
		}
		return
	}
	if cfg.APIKey != "" && !matched {
		writeAuthError(ctx, p, present)
		return
	}
	if p == protoAnthropic && len(ctx.Request.Header.Peek("anthropic-version")) == 0 {
		writeAnthropicError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return
	}

	r, _ := s.decoders.Get().(*wireRequest)
	if r == nil {
		r = new(wireRequest)
	}
	defer s.decoders.Put(r)
	body := ctx.PostBody()
	markers := p == protoAnthropic && mayHaveMarkers(body)
	if err := r.decodeScan(body, p, markers, 0); err != nil {
		writeDecodeError(ctx, p, err)
		return
	}
	maxTokens, ok := validate(ctx, r, p)
	if !ok {
		return
	}
	if markers {
		var msg string
		if r.points, msg = r.cache.anthropicPoints(r.model, r.points[:0]); msg != "" {
			writeAnthropicError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", msg)
			return
		}
	}

	if cfg.FailStatus != 0 && (cfg.FailCount == 0 || s.failed.Add(1) <= int64(cfg.FailCount)) {
		s.failures.Add(1)
		writeInjectedError(ctx, cfg, p)
		return
	}
	if cfg.StallFor < 0 {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(s.holdUntilGone)
		return
	}

	sys, usr := r.system, r.user
	seed := seedOf(r.model, &sys, &usr)
	a := answer{
		proto: p,
		plan:  newPlan(seed, cfg.OutputTokens, maxTokens),
		in:    sys.tokens + usr.tokens,
		id:    s.ids.Add(1),
	}
	if !cfg.PromptCacheOff {
		a.cache = s.promptCache(r, body, cfg, markers, a.in)
	}
	if call, ok := wireToolCall(body, p, seed); ok {
		s.answerToolCall(ctx, p, r.model, r.stream, r.includeUsage, &a, call)
		return
	}
	if r.stream {
		s.stream(ctx, cfg, &a, r)
		return
	}
	s.complete(ctx, cfg, &a, r.model)
}

// answer is what one request will be told.
type answer struct {
	proto protocol
	plan  plan
	in    int64 // all input tokens, cached or not
	id    uint64
	cache cacheUsage
}

// uncached is Anthropic's input_tokens: the input neither read from nor
// written to the cache.
func (a *answer) uncached() int64 { return a.in - a.cache.read - a.cache.written() }

// mayHaveMarkers reports whether an Anthropic body can hold a
// cache_control key (perhaps written with escapes), so bodies without
// one skip the marker pass.
func mayHaveMarkers(body []byte) bool {
	return bytes.Contains(body, []byte(`cache_control`)) || bytes.Contains(body, []byte(`\u`))
}

// promptCache consults and updates the simulated cache for a decoded
// request. OpenAI prompts long enough to cache are decoded a second time
// with their checkpoints; shorter ones cost nothing.
func (s *Server) promptCache(r *wireRequest, body []byte, cfg *ServerConfig, markers bool, in int64) cacheUsage {
	var u cacheUsage
	switch {
	case r.proto == protoAnthropic && markers:
		u = s.cache.anthropic(r.points, cfg, s.now())
	case r.proto == protoOpenAI && cfg.OpenAIMinCacheTokens > 0 && in >= int64(cfg.OpenAIMinCacheTokens):
		if r.decodeScan(body, protoOpenAI, true, int64(cfg.OpenAIMinCacheTokens)) != nil {
			return u
		}
		u = s.cache.openAI(&r.cache, r.model, cfg, s.now())
	default:
		return u
	}
	if u.read > 0 {
		s.cacheRead.Add(u.read)
	}
	if w := u.written(); w > 0 {
		s.cacheWrite.Add(w)
	}
	return u
}

// complete writes a non-streaming answer after the simulated generation
// time.
func (s *Server) complete(ctx *fasthttp.RequestCtx, cfg *ServerConfig, a *answer, model []byte) {
	var t *time.Timer
	d := cfg.StallFor + cfg.TimeToFirstToken + time.Duration(max(a.plan.n-1, 0))*cfg.TokenDelay
	if !s.wait(&t, d) {
		writeShuttingDown(ctx, a.proto)
		return
	}
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	created := time.Now().Unix()
	if a.proto == protoOpenAI {
		*bp = appendOpenAICompletion((*bp)[:0], a, model, created)
	} else {
		*bp = appendAnthropicMessage((*bp)[:0], a, model)
	}
	if cfg.CutAfterTokens > 0 {
		// Promise the whole body, deliver half, hang up.
		raw := make([]byte, 0, len(*bp)+128)
		raw = append(raw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "...)
		raw = strconv.AppendInt(raw, int64(len(*bp)), 10)
		raw = append(raw, "\r\n\r\n"...)
		raw = append(raw, (*bp)[:len(*bp)/2]...)
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) { _, _ = c.Write(raw) })
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(*bp)
}

var (
	contentTypeJSON = []byte("application/json")
	contentTypeSSE  = []byte("text/event-stream; charset=utf-8")
)
