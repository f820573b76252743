package providers

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// scripted is an in-process Provider whose answer is fixed: err, or a
// stream of deltas ending in end. It records the model it was asked for.
type scripted struct {
	err    error
	deltas []string
	end    error
	models []string
}

func (s *scripted) Complete(_ context.Context, r *Request) (Result, error) {
	s.models = append(s.models, r.Model)
	return Result{Content: "ok"}, s.err
}

func (s *scripted) Stream(_ context.Context, r *Request) (Stream, error) {
	s.models = append(s.models, r.Model)
	if s.err != nil {
		return nil, s.err
	}
	return &scriptedStream{deltas: s.deltas, end: s.end}, nil
}

type scriptedStream struct {
	deltas []string
	end    error
	n      int
}

func (s *scriptedStream) Next() ([]byte, error) {
	if s.n < len(s.deltas) {
		s.n++
		return []byte(s.deltas[s.n-1]), nil
	}
	return nil, s.end
}
func (s *scriptedStream) Usage() Usage { return Usage{OutputTokens: int64(s.n)} }
func (s *scriptedStream) Abort()       {}
func (s *scriptedStream) Close()       {}

func fixedPool(t *testing.T, cfg PoolConfig, now *time.Time, specs ...DeploymentSpec) *Pool {
	t.Helper()
	p, err := NewPool("m", specs, cfg, nil, func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmptyCleanStreamIsSuccess(t *testing.T) {
	now := t0
	up := &scripted{end: io.EOF}
	p := fixedPool(t, PoolConfig{Breaker: BreakerConfig{ConsecutiveFailures: 1}}, &now, DeploymentSpec{Name: "a", Provider: up})
	st, err := p.Stream(context.Background(), &Request{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := st.Next(); b != nil || err != io.EOF {
		t.Fatalf("Next = %q, %v; want io.EOF", b, err)
	}
	st.Close()
	if s := p.Snapshot(now).Deployments[0]; s.Breaker != "closed" || s.ErrorRate != 0 || s.Requests != 1 {
		t.Errorf("snapshot = %+v, want one success", s)
	}
}

func TestUnavailableRetryAfterIsEarliestReopen(t *testing.T) {
	now := t0
	fail := func(ra time.Duration) *scripted {
		return &scripted{err: &UpstreamError{Kind: KindStatus, Status: 503, RetryAfter: ra}}
	}
	cfg := PoolConfig{MaxAttempts: 2, Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: 10 * time.Second}}
	p := fixedPool(t, cfg, &now,
		DeploymentSpec{Name: "a", Provider: fail(30 * time.Second)},
		DeploymentSpec{Name: "b", Provider: fail(0)})
	if _, err := p.Complete(context.Background(), &Request{}); err == nil {
		t.Fatal("outage answered")
	}
	now = t0.Add(4 * time.Second)
	_, err := p.Complete(context.Background(), &Request{})
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Kind != KindUnavailable {
		t.Fatalf("err = %v, want KindUnavailable", err)
	}
	if ue.RetryAfter != 6*time.Second {
		t.Errorf("RetryAfter = %v, want 6s (b reopens at t0+10s, a at t0+30s)", ue.RetryAfter)
	}
	s := p.Snapshot(now)
	if s.Deployments[0].RetryInMs != 26000 || s.Deployments[1].RetryInMs != 6000 {
		t.Errorf("snapshot retry-in = %d, %d ms; want 26000, 6000", s.Deployments[0].RetryInMs, s.Deployments[1].RetryInMs)
	}
}

func TestSaturatedDeploymentIsSkippedAndModelRewritten(t *testing.T) {
	now := t0
	a, b := &scripted{deltas: []string{"x"}, end: io.EOF}, &scripted{}
	p := fixedPool(t, PoolConfig{}, &now,
		DeploymentSpec{Name: "a", Provider: a, Model: "up-a", MaxInFlight: 1},
		DeploymentSpec{Name: "b", Provider: b, Model: "up-b", Priority: 1})
	st, err := p.Stream(context.Background(), &Request{Model: "public"})
	if err != nil {
		t.Fatal(err)
	}
	// a holds its one slot while the stream is open: the next request goes to b.
	if _, err := p.Complete(context.Background(), &Request{Model: "public"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := p.Complete(context.Background(), &Request{Model: "public"}); err != nil {
		t.Fatal(err)
	}
	if len(a.models) != 2 || a.models[0] != "up-a" || len(b.models) != 1 || b.models[0] != "up-b" {
		t.Errorf("a saw %v, b saw %v; want a twice (up-a), b once (up-b)", a.models, b.models)
	}
}

func TestCallerErrorIsNotRetried(t *testing.T) {
	now := t0
	a, b := &scripted{err: &UpstreamError{Kind: KindStatus, Status: 400}}, &scripted{}
	p := fixedPool(t, PoolConfig{Breaker: BreakerConfig{ConsecutiveFailures: 1}}, &now,
		DeploymentSpec{Name: "a", Provider: a}, DeploymentSpec{Name: "b", Provider: b, Priority: 1})
	for range 3 {
		if _, err := p.Complete(context.Background(), &Request{}); kindOf(err) != KindStatus {
			t.Fatalf("err = %v, want the 400", err)
		}
	}
	if len(b.models) != 0 || p.Snapshot(now).Deployments[0].Breaker != "closed" {
		t.Errorf("a 400 failed over (%d) or tripped the breaker", len(b.models))
	}
}

func kindOf(err error) ErrorKind {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return 0
}
