package mock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moonborn/edge/providers"
)

// DefaultOutputTokens is the answer length when a config leaves it zero.
const DefaultOutputTokens = 20

// maxOutputTokens bounds the knob so a typo cannot make a mock talk forever.
const maxOutputTokens = 1_000_000

// Config shapes the in-process mock provider.
type Config struct {
	// TimeToFirstToken is waited before the first delta of a stream and
	// before a non-streaming answer. Default 0; must be ≥ 0.
	TimeToFirstToken time.Duration `yaml:"timeToFirstToken"`
	// TokenDelay is waited between deltas (and, for Complete, once per
	// token after the first). Default 0; must be ≥ 0.
	TokenDelay time.Duration `yaml:"tokenDelay"`
	// OutputTokens is how many tokens an answer has when the request's
	// MaxOutputTokens does not cut it. Default 20; 1 to 1,000,000.
	OutputTokens int `yaml:"outputTokens"`
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.OutputTokens == 0 {
		c.OutputTokens = DefaultOutputTokens
	}
}

// Validate reports every invalid field, each message prefixed with the
// field's path.
func (c *Config) Validate() error {
	var errs []error
	if c.TimeToFirstToken < 0 {
		errs = append(errs, errors.New("timeToFirstToken: must be ≥ 0"))
	}
	if c.TokenDelay < 0 {
		errs = append(errs, errors.New("tokenDelay: must be ≥ 0"))
	}
	if c.OutputTokens < 1 || c.OutputTokens > maxOutputTokens {
		errs = append(errs, fmt.Errorf("outputTokens: must be between 1 and %d", maxOutputTokens))
	}
	return errors.Join(errs...)
}

// Provider is the in-process mock: a providers.Provider that answers
// deterministically after the configured delays, without any I/O. It never
// fails. Safe for concurrent use; the zero value is not usable, call New.
type Provider struct {
	name string
	cfg  Config
}

var _ providers.Provider = (*Provider)(nil)

// New returns a mock provider named name (the deployment name reported in
// errors). Zero fields of cfg take their defaults.
func New(name string, cfg Config) *Provider {
	cfg.SetDefaults()
	return &Provider{name: name, cfg: cfg}
}

// Name returns the deployment name given to New.
func (p *Provider) Name() string { return p.name }

// Complete waits as long as generating the answer would take
// (TimeToFirstToken plus TokenDelay per further token) and returns it;
// ctx's end interrupts the wait (see providers.ContextError).
func (p *Provider) Complete(ctx context.Context, req *providers.Request) (providers.Result, error) {
	seed, in := seedOfRequest(req)
	if call, ok := toolCallFor(req, seed); ok {
		if ctx.Err() != nil {
			return providers.Result{}, providers.ContextError(p.name, ctx)
		}
		return providers.Result{
			ToolCalls:    []providers.ToolCall{call},
			FinishReason: providers.FinishToolCalls,
			Usage:        providers.Usage{InputTokens: in, OutputTokens: toolCallTokens(&call)},
		}, nil
	}
	pl := newPlan(seed, p.cfg.OutputTokens, req.MaxOutputTokens)
	if d := p.cfg.TimeToFirstToken + time.Duration(max(pl.n-1, 0))*p.cfg.TokenDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return providers.Result{}, providers.ContextError(p.name, ctx)
		}
	} else if ctx.Err() != nil {
		return providers.Result{}, providers.ContextError(p.name, ctx)
	}
	var b strings.Builder
	b.Grow(pl.n * 6)
	for i := 0; i < pl.n; i++ {
		b.Write(pl.token(i))
	}
	return providers.Result{
		Content:      b.String(),
		FinishReason: finishOf(&pl),
		Usage:        providers.Usage{InputTokens: in, OutputTokens: int64(pl.n)},
	}, nil
}

// Stream starts the answer as a stream; it refuses only a ctx that
// already ended, and ctx's end later aborts it.
func (p *Provider) Stream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	if ctx.Err() != nil {
		return nil, providers.ContextError(p.name, ctx)
	}
	seed, in := seedOfRequest(req)
	s := &stream{
		name:  p.name,
		ctx:   ctx,
		plan:  newPlan(seed, p.cfg.OutputTokens, req.MaxOutputTokens),
		in:    in,
		ttft:  p.cfg.TimeToFirstToken,
		delay: p.cfg.TokenDelay,
		abort: make(chan struct{}),
	}
	if call, ok := toolCallFor(req, seed); ok {
		s.plan.n = 0 // no text: the call is the answer
		s.calls = []providers.ToolCall{call}
		s.callTokens = toolCallTokens(&call)
	}
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, s.Abort)
	}
	return s, nil
}

func finishOf(p *plan) string {
	if p.stop {
		return providers.FinishStop
	}
	return providers.FinishLength
}

// ToolCalls implements providers.ToolCallStream.
func (s *stream) ToolCalls() []providers.ToolCall { return s.calls }

// FinishReason implements providers.ToolCallStream.
func (s *stream) FinishReason() string {
	if len(s.calls) > 0 {
		return providers.FinishToolCalls
	}
	return finishOf(&s.plan)
}

// stream is one in-process answer in flight. Next, Usage and Close belong
// to the owner goroutine; Abort closes the abort channel, which wakes a
// sleeping Next at once.
type stream struct {
	name      string
	ctx       context.Context
	stopCtx   func() bool // unhooks ctx's cancellation; nil if ctx never ends
	plan      plan
	in        int64
	i         int
	ttft      time.Duration
	delay     time.Duration
	timer     *time.Timer
	abort     chan struct{}
	abortOnce sync.Once
	onWait    func() bool
	// calls is the tool call that replaces the text answer, if any.
	calls      []providers.ToolCall
	callTokens int64
}

// Next waits TimeToFirstToken before the first delta and TokenDelay before
// each later one, then returns a slice of the shared vocabulary: no
// allocation per delta.
func (s *stream) Next() ([]byte, error) {
	select {
	case <-s.abort:
		return nil, s.abortErr()
	default:
	}
	if s.i >= s.plan.n {
		return nil, io.EOF
	}
	d := s.delay
	if s.i == 0 {
		d = s.ttft
	}
	if d > 0 {
		if s.onWait != nil && !s.onWait() {
			return nil, providers.ErrAborted
		}
		if s.timer == nil {
			s.timer = time.NewTimer(d)
		} else {
			s.timer.Reset(d)
		}
		select {
		case <-s.timer.C:
		case <-s.abort:
			s.timer.Stop()
			return nil, s.abortErr()
		}
	}
	tok := s.plan.token(s.i)
	s.i++
	return tok, nil
}

// Usage is exact: the mock counted every token it produced.
func (s *stream) Usage() providers.Usage {
	return providers.Usage{InputTokens: s.in, OutputTokens: int64(s.i) + s.callTokens}
}

// Abort wakes a blocked Next, which returns providers.ErrAborted.
func (s *stream) Abort() {
	s.abortOnce.Do(func() { close(s.abort) })
}

// NotifyWait implements providers.WaitNotifier: the mock waits only on
// its delay timer.
func (s *stream) NotifyWait(f func() bool) bool {
	s.onWait = f
	return true
}

// abortErr is why an aborted stream ended: its request's deadline, or
// an abort (its own or its request context's cancellation).
func (s *stream) abortErr() error {
	if s.ctx.Err() != nil {
		return providers.ContextError(s.name, s.ctx)
	}
	return providers.ErrAborted
}

// Close releases the stream's timer and context hook.
func (s *stream) Close() {
	if s.stopCtx != nil {
		s.stopCtx()
	}
	if s.timer != nil {
		s.timer.Stop()
	}
}
