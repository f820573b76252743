// Package providers holds the canonical request, event and usage types that
// every upstream speaks after translation, the Provider interface the
// gateway calls, the typed upstream errors, the pool, and the upstream
// HTTP client whose event stream (SSEBody, framed by internal/sse) the
// wire-protocol sub-packages (openai, anthropic, mock) read.
//
// Data flows one way: sub-packages import this package; this package imports
// none of them, nor gateway or policy.
package providers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Request is one chat request after the gateway resolved the persona and the
// model: the upstream model name, the full system prompt and the user's text.
// A Request is read-only once handed to a Provider and may be shared by
// concurrent attempts.
type Request struct {
	// Model is the upstream model name (not the public model id).
	Model string
	// System is the complete system prompt (persona prompt plus any memory
	// digest, already joined by the gateway). Empty means none.
	System string
	// SystemCache lists prompt-cache breakpoints inside System, in
	// order: Anthropic deployments send System as text blocks cut there,
	// each marked with cache_control; upstreams that cache prefixes on
	// their own (OpenAI) ignore them. Empty means none.
	SystemCache []CacheBreak
	// CacheKey is OpenAI's prompt_cache_key, which keeps requests sharing
	// a prefix on the same cache; empty means none. Other upstreams ignore it.
	CacheKey string
	// UserText is the user's message; never empty unless Messages is set.
	UserText string
	// Messages, when not empty, is the whole conversation in order (the
	// OpenAI- and Anthropic-compatible routes): UserText is then unused
	// and System holds only the leading system text (the persona's
	// prompt, then the caller's leading system messages).
	Messages []Message
	// Tools, ToolChoice: the functions the model may call.
	Tools      []Tool
	ToolChoice ToolChoice
	// Stop lists stop sequences; empty means none.
	Stop []string
	// TopP is sent only when HasTopP; TopK only when above 0 (Anthropic
	// only: the gateway refuses it for other protocols); Seed only when
	// HasSeed (OpenAI only).
	TopP    float64
	HasTopP bool
	TopK    int
	Seed    int64
	HasSeed bool
	// ResponseFormat is OpenAI's response_format object asking for JSON
	// (json_object or json_schema), verbatim; nil means text. Only
	// OpenAI-compatible upstreams carry it (the others refuse it in Check).
	ResponseFormat []byte
	// User is the caller's end-user id, passed on (OpenAI user,
	// Anthropic metadata.user_id); empty means none.
	User string
	// Temperature is sent only when HasTemperature is true.
	Temperature    float64
	HasTemperature bool
	// MaxOutputTokens caps generated tokens; always ≥ 1 (the gateway applies
	// defaults, because some protocols require a cap).
	MaxOutputTokens int
	// Observer, when set, receives the usage of attempts that consumed
	// upstream tokens without reaching the caller (a hedge that lost, an
	// attempt that failed before its first delta). Nil drops it.
	Observer UsageObserver
}

// UsageObserver is told about upstream usage a request consumed that its
// caller never received, so it can still be recorded. It may be called
// from another goroutine, after Stream returned.
type UsageObserver interface {
	DiscardedUsage(deployment string, u Usage)
}

// Usage counts tokens for one request as the upstream reported them.
// Estimated is true when the upstream never reported usage (a cut stream,
// a client that left) and the counts were derived locally: output tokens
// from the deltas seen, input tokens from EstimateTokens.
//
// InputTokens is all the input, however it was billed: the uncached part
// plus CacheReadTokens plus both cache writes (Uncached gives the rest).
// The providers disagree here — Anthropic's input_tokens excludes its
// cache reads and writes, OpenAI's prompt_tokens includes its cached
// tokens — and each client adds them up its own way, so that the persona
// API's inputTokens and the ledger's input total mean one thing.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	// CacheReadTokens are input tokens served from the upstream's prompt
	// cache (Anthropic's cache_read_input_tokens, OpenAI's cached_tokens).
	CacheReadTokens int64
	// CacheWrite5mTokens and CacheWrite1hTokens are input tokens written
	// to Anthropic's prompt cache with the 5-minute and the 1-hour TTL
	// (cache_creation_input_tokens, split as its cache_creation object
	// reports; all 5-minute when it does not). OpenAI reports none.
	CacheWrite5mTokens int64
	CacheWrite1hTokens int64
	// ReasoningTokens is the part of OutputTokens the model spent
	// reasoning, where reported (OpenAI's reasoning_tokens); informative.
	ReasoningTokens int64
	Estimated       bool
}

// Uncached returns the input tokens billed at the plain input price.
func (u *Usage) Uncached() int64 {
	return max(0, u.InputTokens-u.CacheReadTokens-u.CacheWrite5mTokens-u.CacheWrite1hTokens)
}

// CacheWriteTokens returns the input tokens written to the cache, all TTLs.
func (u *Usage) CacheWriteTokens() int64 { return u.CacheWrite5mTokens + u.CacheWrite1hTokens }

// Result is a finished non-streaming completion.
type Result struct {
	Content string
	// ToolCalls are the calls the model asked for, in order.
	ToolCalls []ToolCall
	// FinishReason is a Finish* value; empty when the upstream gave none.
	FinishReason string
	Usage        Usage
	// Deployment names the deployment that answered, when a Pool served
	// it; empty otherwise.
	Deployment string
}

// Served is implemented by streams that know which deployment serves
// them (a Pool's); usage records name it.
type Served interface {
	Deployment() string
}

// Provider is one upstream deployment speaking one wire protocol.
// Implementations are safe for concurrent use.
//
// ctx is the request's: its cancellation (the client left, a hedge lost)
// and its deadline end the call at once, whatever it is waiting for, and
// close the upstream connection so the upstream stops generating. A call
// whose ctx was cancelled returns ErrAborted; one whose deadline passed, an
// *UpstreamError of KindTimeout (see ContextError).
type Provider interface {
	// Complete runs req without streaming and returns the whole answer.
	// Errors are *UpstreamError (or wrap one), or ErrAborted.
	Complete(ctx context.Context, req *Request) (Result, error)
	// Stream starts req as a stream. It returns once the upstream accepted
	// the request (status 200 and headers read); a refusal is returned as
	// an error and no Stream exists. The caller owns the Stream and must
	// Close it. ctx governs the whole stream, not only its start.
	Stream(ctx context.Context, req *Request) (Stream, error)
}

// Stream is one streamed completion in flight. Next and Close belong to a
// single owner goroutine; Abort may be called from any goroutine.
type Stream interface {
	// Next blocks until the next text delta and returns it. The slice is
	// valid only until the following call to Next or Close. A delta may be
	// empty-free: Next never returns a zero-length delta with a nil error.
	// At the upstream's end marker ([DONE], message_stop) Next returns
	// io.EOF. A stream that ends without its end marker, an upstream error
	// event, or a timeout returns an *UpstreamError (Kind Truncated,
	// Status, Timeout...). After Abort, Next returns ErrAborted.
	Next() ([]byte, error)
	// Usage reports the usage known so far; final once Next returned io.EOF.
	// When the upstream reported nothing it is estimated (see Usage).
	Usage() Usage
	// Abort interrupts the stream at once from any goroutine: a blocked
	// Next returns ErrAborted and the upstream connection is closed so the
	// upstream stops generating. Safe to call more than once.
	Abort()
	// Close releases the stream. If the end marker was not reached the
	// upstream connection is closed (never returned to a pool). Called
	// exactly once by the owner, after its last Next.
	Close()
}

// WaitNotifier is implemented by streams that can tell their owner when
// Next is about to wait for the upstream. The gateway's relay uses it to
// write out the events it has collected in one write right before that
// wait, instead of one write per event: events that arrived together
// leave together, and none is held back while the gateway waits.
type WaitNotifier interface {
	// NotifyWait registers f, called on the owner's goroutine whenever
	// Next is about to wait for the network (or a timer). If f returns
	// false the wait is abandoned and Next fails: the owner's reader is
	// gone. nil unregisters. It reports whether notifications will come;
	// when it returns false the owner must not hold events back.
	NotifyWait(f func() bool) bool
}

// ErrAborted is returned by Stream.Next after Stream.Abort.
var ErrAborted = errors.New("stream aborted")

// ErrorKind classifies an upstream failure for status mapping, retries and
// breakers.
type ErrorKind uint8

// The kinds of upstream failure.
const (
	// KindStatus: the upstream answered with a non-2xx status.
	KindStatus ErrorKind = iota + 1
	// KindConnect: no connection could be made or it broke before a reply.
	KindConnect
	// KindTimeout: a deadline passed (total, first token or idle gap).
	KindTimeout
	// KindTruncated: a stream ended without its end marker.
	KindTruncated
	// KindProtocol: the reply could not be understood, or the upstream sent
	// an error event mid-stream.
	KindProtocol
	// KindSaturated: the deployment had no free connection in time (its
	// queue was full, or the deadline passed while queued), or a Pool
	// found every deployment so busy; never a breaker failure.
	KindSaturated
	// KindUnavailable: a Pool found no healthy deployment (breakers open,
	// the rest saturated) and failed fast without calling
	// an upstream; RetryAfter is the time until the earliest breaker lets
	// a probe through. The gateway answers 503 upstream_unavailable.
	KindUnavailable
)

func (k ErrorKind) String() string {
	switch k {
	case KindStatus:
		return "status"
	case KindConnect:
		return "connect"
	case KindTimeout:
		return "timeout"
	case KindTruncated:
		return "truncated"
	case KindProtocol:
		return "protocol"
	case KindSaturated:
		return "saturated"
	case KindUnavailable:
		return "unavailable"
	}
	return "unknown"
}

// UpstreamError is a failure of one upstream attempt. Its Error text is
// safe to log but is never shown to clients verbatim: upstream bodies can
// echo credentials (OpenAI's 401 quotes part of the key).
type UpstreamError struct {
	Kind ErrorKind
	// Status is the upstream HTTP status for KindStatus, else 0.
	Status int
	// RetryAfter is the upstream's retry-after hint, 0 if none.
	RetryAfter time.Duration
	// Provider names the deployment that failed.
	Provider string
	// Detail is a short description for logs (never the upstream body).
	Detail string
	// Err is the underlying error, if any.
	Err error
}

func (e *UpstreamError) Error() string {
	s := "upstream " + e.Provider + ": " + e.Kind.String()
	if e.Status != 0 {
		s += " " + strconv.Itoa(e.Status)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// Errorf builds an *UpstreamError of kind k with a formatted detail.
func Errorf(provider string, k ErrorKind, format string, args ...any) *UpstreamError {
	return &UpstreamError{Kind: k, Provider: provider, Detail: fmt.Sprintf(format, args...)}
}

// SafeErrorType returns the type an upstream gave an error (an error
// event's "type", e.g. "overloaded_error") for an error Detail, but only
// when it is a short identifier: anything else is "unknown", so no
// upstream text of another shape (which could echo a key) reaches logs.
func SafeErrorType(raw []byte) string {
	if len(raw) == 0 || len(raw) > 48 {
		return "unknown"
	}
	for _, c := range raw {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "unknown"
		}
	}
	return string(raw)
}

// ParseRetryAfter reads a Retry-After header value in seconds (integer or
// decimal, as OpenAI sends "retry-after-ms" style decimals) or an HTTP date
// relative to now. It returns 0 when the value is absent or unusable.
func ParseRetryAfter(v []byte, now time.Time) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if f, err := strconv.ParseFloat(string(v), 64); err == nil {
		if f <= 0 || f > 86400 {
			return 0
		}
		return time.Duration(f * float64(time.Second))
	}
	if t, err := time.Parse(time.RFC1123, string(v)); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// EstimateTokens approximates a token count for text an upstream never
// counted (about four bytes a token, the usual rule of thumb for BPE
// tokenizers on English), rounding up; empty text is zero tokens.
func EstimateTokens(s string) int64 {
	return int64((len(s) + 3) / 4)
}

// EstimateInputTokens approximates the input tokens of r (its system and
// user texts, by EstimateTokens) for when an upstream reports no usage.
func EstimateInputTokens(r *Request) int64 {
	n := EstimateTokens(r.System) + EstimateTokens(r.UserText)
	for i := range r.Messages {
		m := &r.Messages[i]
		n += EstimateTokens(m.Text) + 4 // a few tokens of framing per turn
		for _, c := range m.ToolCalls {
			n += EstimateTokens(c.Name) + EstimateTokens(c.Arguments)
		}
	}
	for _, t := range r.Tools {
		n += EstimateTokens(t.Name) + EstimateTokens(t.Description) + int64((len(t.Parameters)+3)/4)
	}
	return n
}
