package mock

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
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

// RecordedRequest is a copy of the last API request, for tests that assert
// what a client (the gateway) sent upstream.
type RecordedRequest struct {
	Method string
	Path   string
	// Header holds every request header; the values of credential headers
	// (Authorization, X-Api-Key, Api-Key, Cookie, Proxy-Authorization) are
	// replaced by "[redacted]".
	Header http.Header
	// AuthPresent reports whether the route's credential header was sent
	// (Authorization for OpenAI, x-api-key for Anthropic).
	AuthPresent bool
	// AuthMatched reports whether it carried the configured APIKey.
	AuthMatched bool
	// Body is a copy of the request body.
	Body []byte
	// CacheBreakpoints are the Anthropic cache_control markers the body
	// carried, in prefix order (tools → system → messages); nil for none
	// or for a body the server refused.
	CacheBreakpoints []CacheBreakpoint
	// PromptCacheKey is the OpenAI prompt_cache_key sent ("" for none).
	PromptCacheKey string
}

// CacheBreakpoint is one cache_control marker as the mock read it.
type CacheBreakpoint struct {
	// Block is where it was, in Anthropic's error-path form: "tools.0",
	// "system.1", "messages.2.content.0".
	Block string
	// TTL is "5m" or "1h" (a marker without ttl is "5m").
	TTL string
	// PrefixTokens is the prompt's length in the mock's tokens up to and
	// including the marked block: what a write at it would cache.
	PrefixTokens int64
}

// lastRequest is the reused storage behind RecordedRequest: headers are
// flattened as name, value pairs separated by NUL.
type lastRequest struct {
	seen        bool
	method      []byte
	path        []byte
	headers     []byte
	body        []byte
	authPresent bool
	authMatched bool
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

// LastRequest returns a copy of the last API request and whether there was
// one.
func (s *Server) LastRequest() (RecordedRequest, bool) {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	l := &s.last
	if !l.seen {
		return RecordedRequest{}, false
	}
	r := RecordedRequest{
		Method:      string(l.method),
		Path:        string(l.path),
		Header:      http.Header{},
		AuthPresent: l.authPresent,
		AuthMatched: l.authMatched,
		Body:        bytes.Clone(l.body),
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	for h := l.headers; len(h) > 0; {
		k, rest, _ := bytes.Cut(h, []byte{0})
		v, rest2, _ := bytes.Cut(rest, []byte{0})
		r.Header.Add(string(k), string(v))
		h = rest2
	}
	r.CacheBreakpoints, r.PromptCacheKey = cacheView(r.Path, r.Body)
	return r, true
}

// cacheView reads the markers and prompt_cache_key of a recorded body
// (off the hot path: only tests ask).
func cacheView(path string, body []byte) ([]CacheBreakpoint, string) {
	var w wireRequest
	switch path {
	case "/v1/chat/completions":
		if w.decodeScan(body, protoOpenAI, true, 0) != nil {
			return nil, ""
		}
		return nil, string(w.cache.cacheKey)
	case "/v1/messages":
		if w.decodeScan(body, protoAnthropic, true, 0) != nil {
			return nil, ""
		}
		pts, msg := w.cache.anthropicPoints(w.model, nil)
		if msg != "" {
			return nil, ""
		}
		var bps []CacheBreakpoint
		for _, p := range pts {
			if p.ttl == ttlNone {
				continue
			}
			ttl := "5m"
			if p.ttl == ttl1h {
				ttl = "1h"
			}
			bps = append(bps, CacheBreakpoint{Block: blockPath(int(p.sec), p.i, p.j), TTL: ttl, PrefixTokens: p.tokens})
		}
		return bps, ""
	}
	return nil, ""
}

// FlushPromptCache forgets every cached prefix.
func (s *Server) FlushPromptCache() { s.cache.flush() }

// record keeps a copy of the request for LastRequest.
func (s *Server) record(ctx *fasthttp.RequestCtx, authPresent, authMatched bool) {
	s.lastMu.Lock()
	l := &s.last
	l.seen = true
	l.method = append(l.method[:0], ctx.Method()...)
	l.path = append(l.path[:0], ctx.Path()...)
	l.body = append(l.body[:0], ctx.PostBody()...)
	l.authPresent, l.authMatched = authPresent, authMatched
	l.headers = l.headers[:0]
	for k, v := range ctx.Request.Header.All() {
		l.headers = append(l.headers, k...)
		l.headers = append(l.headers, 0)
		if isSecretHeader(k) {
			l.headers = append(l.headers, "[redacted]"...)
		} else {
			l.headers = append(l.headers, v...)
		}
		l.headers = append(l.headers, 0)
	}
	s.lastMu.Unlock()
}

func isSecretHeader(k []byte) bool {
	for _, h := range [...]string{"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"} {
		if bytes.EqualFold(k, []byte(h)) {
			return true
		}
	}
	return false
}

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

// validate applies the protocols' semantic checks and returns the output
// cap (0 for none). It writes the error reply itself and reports false.
func validate(ctx *fasthttp.RequestCtx, r *wireRequest, p protocol) (maxTokens int, ok bool) {
	if p == protoOpenAI {
		switch {
		case !r.hasModel || len(r.model) == 0:
			writeOpenAIError(ctx, 400, "invalid_request_error", "", "", "you must provide a model parameter")
		case !r.hasMessages:
			writeOpenAIError(ctx, 400, "invalid_request_error", "messages", "missing_required_parameter",
				"Missing required parameter: 'messages'.")
		case r.messages == 0:
			writeOpenAIError(ctx, 400, "invalid_request_error", "messages", "empty_array",
				"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
		case r.hasMaxCompletionTokens && r.maxCompletionTokens < 1:
			writeOpenAIError(ctx, 400, "invalid_request_error", "max_completion_tokens", "integer_below_min_value",
				"Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got "+strconv.FormatInt(r.maxCompletionTokens, 10)+" instead.")
		case r.hasMaxTokens && r.maxTokens < 1:
			writeOpenAIError(ctx, 400, "invalid_request_error", "max_tokens", "integer_below_min_value",
				"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got "+strconv.FormatInt(r.maxTokens, 10)+" instead.")
		case r.hasTemperature && (r.temperature < 0 || r.temperature > 2):
			writeOpenAIError(ctx, 400, "invalid_request_error", "temperature", "decimal_out_of_range",
				"Invalid 'temperature': expected a value between 0 and 2.")
		default:
			// max_completion_tokens supersedes the deprecated max_tokens.
			switch {
			case r.hasMaxCompletionTokens:
				return clampInt(r.maxCompletionTokens), true
			case r.hasMaxTokens:
				return clampInt(r.maxTokens), true
			}
			return 0, true
		}
		return 0, false
	}
	switch {
	case !r.hasModel || len(r.model) == 0:
		writeAnthropicError(ctx, 400, "invalid_request_error", "model: Field required")
	case !r.hasMaxTokens:
		writeAnthropicError(ctx, 400, "invalid_request_error", "max_tokens: Field required")
	case r.maxTokens < 1:
		writeAnthropicError(ctx, 400, "invalid_request_error", "max_tokens: Input should be greater than or equal to 1")
	case !r.hasMessages:
		writeAnthropicError(ctx, 400, "invalid_request_error", "messages: Field required")
	case r.messages == 0:
		writeAnthropicError(ctx, 400, "invalid_request_error", "messages: at least one message is required")
	case r.hasTemperature && (r.temperature < 0 || r.temperature > 1):
		writeAnthropicError(ctx, 400, "invalid_request_error", "temperature: range: 0..1")
	default:
		return clampInt(r.maxTokens), true
	}
	return 0, false
}

func clampInt(v int64) int {
	return int(min(v, maxOutputTokens+1))
}

// checkAuth looks at the route's credential header.
func checkAuth(ctx *fasthttp.RequestCtx, key string, p protocol) (present, matched bool) {
	var got []byte
	if p == protoOpenAI {
		h := ctx.Request.Header.Peek("Authorization")
		present = len(h) > 0
		if len(h) > 7 && bytes.EqualFold(h[:7], []byte("bearer ")) {
			got = bytes.TrimSpace(h[7:])
		}
	} else {
		got = ctx.Request.Header.Peek("x-api-key")
		present = len(got) > 0
	}
	matched = key != "" && len(got) > 0 && subtle.ConstantTimeCompare(got, []byte(key)) == 1
	return present, matched
}

// holdUntilGone is the hijack handler of StallFor < 0: it never answers,
// and returns when the client closes the connection or the server shuts
// down (fasthttp then closes the connection).
func (s *Server) holdUntilGone(c net.Conn) {
	s.openStalls.Add(1)
	defer s.openStalls.Add(-1)
	stop := make(chan struct{})
	watcher := make(chan struct{})
	// The watcher must be gone before the connection goes back to
	// fasthttp, or its deadline call races with the connection's reuse.
	defer func() { close(stop); <-watcher }()
	go func() {
		defer close(watcher)
		select {
		case <-s.done:
			_ = c.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	var b [512]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// wait sleeps for d on *t (created on first use) unless the server shuts
// down first; it reports whether the full time passed.
func (s *Server) wait(t **time.Timer, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-s.done:
			return false
		default:
			return true
		}
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-s.done:
		(*t).Stop()
		return false
	}
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

// eventWriter is where a stream's events go: fasthttp's body writer, or
// chunkWriter on a hijacked connection.
type eventWriter interface {
	Write(p []byte) (int, error)
	Flush() error
}

// streamJob is one stream's state, copied out of the request context
// because the stream writer runs after the handler returned. Jobs are
// pooled by the Server.
type streamJob struct {
	s            *Server
	a            answer
	model        []byte
	created      int64
	includeUsage bool
	choicesNull  bool
	wait         time.Duration
	delay        time.Duration
	cutAfter     int
	errorAfter   int
	buf          []byte
	prefix       []byte // OpenAI chunk prefix, up to and including `"delta":`
	timer        *time.Timer
}

// streamEnd is how a stream writer ended.
type streamEnd uint8

const (
	endDone streamEnd = iota // end marker sent
	endKnob                  // cut or error event, as configured
	endGone                  // a write failed or the server shut down
)

func (s *Server) stream(ctx *fasthttp.RequestCtx, cfg *ServerConfig, a *answer, r *wireRequest) {
	j, _ := s.jobs.Get().(*streamJob)
	if j == nil {
		j = &streamJob{s: s}
	}
	j.a = *a
	j.model = append(j.model[:0], r.model...)
	j.created = time.Now().Unix()
	j.includeUsage = r.includeUsage
	j.choicesNull = cfg.ChoicesNull
	j.wait = cfg.StallFor + cfg.TimeToFirstToken
	j.delay = cfg.TokenDelay
	j.cutAfter = cfg.CutAfterTokens
	j.errorAfter = cfg.ErrorEventAfterTokens

	if j.cutAfter > 0 {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			w := &chunkWriter{c: c, header: []byte(
				"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
					"Cache-Control: no-cache\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")}
			if s.runJob(j, w) == endDone {
				_ = w.finish()
			}
		})
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeSSE)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) { s.runJob(j, w) })
}

// runJob runs a stream writer and keeps the counters; it owns j and returns
// it to the pool.
func (s *Server) runJob(j *streamJob, w eventWriter) (end streamEnd) {
	s.streamsStarted.Add(1)
	end = endGone
	defer func() {
		if p := recover(); p != nil {
			end = endGone
		}
		if end == endGone {
			s.streamsAborted.Add(1)
		} else {
			s.streamsCompleted.Add(1)
		}
		s.jobs.Put(j)
	}()
	return j.run(w)
}

func (j *streamJob) run(w eventWriter) streamEnd {
	if !j.s.wait(&j.timer, j.wait) {
		return endGone
	}
	if j.a.proto == protoOpenAI {
		return j.runOpenAI(w)
	}
	return j.runAnthropic(w)
}

// emit writes j.buf as one event and flushes it.
func (j *streamJob) emit(w eventWriter) bool {
	if _, err := w.Write(j.buf); err != nil {
		return false
	}
	return w.Flush() == nil
}

// knob reports whether a configured cut or error event is due before delta
// i.
func (j *streamJob) knob(i int) (cut, errEvent bool) {
	return j.cutAfter > 0 && i == j.cutAfter, j.errorAfter > 0 && i == j.errorAfter
}

// chunkWriter frames events as HTTP/1.1 chunks on a hijacked connection,
// sending the response header with the first one, so a stream can be cut
// without the final chunk.
type chunkWriter struct {
	c      net.Conn
	header []byte
	buf    []byte
	out    []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *chunkWriter) Flush() error {
	w.out = append(w.out[:0], w.header...)
	w.header = nil
	if len(w.buf) > 0 {
		w.out = strconv.AppendInt(w.out, int64(len(w.buf)), 16)
		w.out = append(w.out, "\r\n"...)
		w.out = append(w.out, w.buf...)
		w.out = append(w.out, "\r\n"...)
	}
	w.buf = w.buf[:0]
	_, err := w.c.Write(w.out)
	return err
}

// finish sends the last chunk.
func (w *chunkWriter) finish() error {
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := w.c.Write([]byte("0\r\n\r\n"))
	return err
}

// control serves /_mock/*.
func (s *Server) control(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	switch string(ctx.Path()) {
	case "/_mock/stats":
		if ctx.IsGet() {
			b, _ := json.Marshal(s.Stats())
			ctx.SetBody(b)
			return
		}
	case "/_mock/cache":
		if ctx.IsDelete() {
			s.FlushPromptCache()
			ctx.SetBodyString("{}")
			return
		}
	case "/_mock/config":
		switch {
		case ctx.IsGet():
			b, _ := json.Marshal(s.Config())
			ctx.SetBody(b)
			return
		case ctx.IsPut():
			cfg := s.Config()
			if err := json.Unmarshal(ctx.PostBody(), &cfg); err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, "bad config: "+err.Error())
				return
			}
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, err.Error())
				return
			}
			s.SetConfig(cfg)
			b, _ := json.Marshal(cfg)
			ctx.SetBody(b)
			return
		}
	default:
		controlError(ctx, fasthttp.StatusNotFound, "no such control endpoint")
		return
	}
	controlError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
}

func controlError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(map[string]map[string]string{"error": {"message": msg}})
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}
