package providers_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/openai"
)

// upstream is one mock wire server on loopback with an OpenAI client for
// it.
type upstream struct {
	srv  *mock.Server
	prov *openai.Provider
}

func startUpstream(t testing.TB, name string, cfg mock.ServerConfig, firstToken time.Duration) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mock.NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-served
	})
	oc := openai.Config{HTTPConfig: providers.HTTPConfig{
		BaseURL:           "http://" + ln.Addr().String() + "/v1",
		APIKey:            "test-key",
		Timeout:           10 * time.Second,
		FirstTokenTimeout: firstToken,
		IdleTimeout:       5 * time.Second,
	}}
	p, err := openai.New(name, oc)
	if err != nil {
		t.Fatal(err)
	}
	return &upstream{srv: s, prov: p}
}

func newPool(t testing.TB, cfg providers.PoolConfig, budget *providers.RetryBudget, ups ...*upstream) *providers.Pool {
	t.Helper()
	specs := make([]providers.DeploymentSpec, len(ups))
	for i, u := range ups {
		specs[i] = providers.DeploymentSpec{Name: u.prov.Name(), Provider: u.prov, Model: "gpt-test", Priority: i}
	}
	p, err := providers.NewPool("public-model", specs, cfg, budget, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request() *providers.Request {
	return &providers.Request{Model: "public-model", System: "be brief", UserText: "hello", MaxOutputTokens: 100}
}

// readAll reads a stream to its end and closes it.
func readAll(t *testing.T, st providers.Stream) (deltas int, err error) {
	t.Helper()
	defer st.Close()
	for {
		_, err := st.Next()
		if err != nil {
			return deltas, err
		}
		deltas++
	}
}

func deployment(t *testing.T, p *providers.Pool, name string) providers.DeploymentSnapshot {
	t.Helper()
	for _, d := range p.Snapshot(time.Now()).Deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no deployment %q", name)
	return providers.DeploymentSnapshot{}
}
func kindOf(err error) providers.ErrorKind {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return 0
}

func TestPrimary500sAllRequestsSucceedOnSecondary(t *testing.T) {
	primary := startUpstream(t, "primary", mock.ServerConfig{FailStatus: 500}, 5*time.Second)
	secondary := startUpstream(t, "secondary", mock.ServerConfig{}, 5*time.Second)
	cfg := providers.PoolConfig{Breaker: providers.BreakerConfig{ConsecutiveFailures: 5, OpenFor: time.Minute}}
	pool := newPool(t, cfg, nil, primary, secondary)
	for i := range 40 {
		if i%2 == 0 {
			if _, err := pool.Complete(context.Background(), request()); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			continue
		}
		st, err := pool.Stream(context.Background(), request())
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if n, err := readAll(t, st); err != io.EOF || n != 20 {
			t.Fatalf("stream %d: %d deltas, %v", i, n, err)
		}
	}
	if got := primary.srv.Stats().Requests; got != 5 {
		t.Errorf("primary saw %d requests, want 5 (the breaker trips after 5 failures)", got)
	}
	if got := secondary.srv.Stats().Requests; got != 40 {
		t.Errorf("secondary saw %d requests, want 40", got)
	}
	if d := deployment(t, pool, "primary"); d.Breaker != "open" || d.ErrorRate != 1 || d.Attempts != 5 || d.Failures.Status != 5 {
		t.Errorf("primary snapshot = %+v, want open with error rate 1 and 5 status failures", d)
	}
	if d := deployment(t, pool, "secondary"); d.Attempts != 40 || d.Successes != 40 {
		t.Errorf("secondary snapshot = %+v, want 40 successful attempts", d)
	}
	if s := pool.Snapshot(time.Now()); s.Requests != 40 || s.Retries != 5 || s.Failovers != 5 {
		t.Errorf("pool counts requests %d retries %d failovers %d, want 40, 5, 5", s.Requests, s.Retries, s.Failovers)
	}
}

func TestPrimaryStallFailsOverWithinFirstTokenTimeout(t *testing.T) {
	const firstToken = 300 * time.Millisecond
	primary := startUpstream(t, "primary", mock.ServerConfig{StallFor: -1}, firstToken)
	secondary := startUpstream(t, "secondary", mock.ServerConfig{}, firstToken)
	pool := newPool(t, providers.PoolConfig{}, nil, primary, secondary)
	start := time.Now()
	st, err := pool.Stream(context.Background(), request())
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := readAll(t, st); err != io.EOF || n != 20 {
		t.Fatalf("%d deltas, %v", n, err)
	}
	if elapsed < firstToken || elapsed > firstToken+3*time.Second {
		t.Errorf("first delta after %v, want just over the %v first-token timeout", elapsed, firstToken)
	}
	if got := secondary.srv.Stats().StreamsCompleted; got != 1 {
		t.Errorf("secondary completed %d streams, want 1", got)
	}
	testkit.Eventually(t, 10*time.Second, "the stalled primary connection to close", func() bool { return primary.srv.Stats().OpenStalls == 0 })
}

func TestRetryAfterHoldsBreakerOpenBeyondOpenFor(t *testing.T) {
	primary := startUpstream(t, "primary", mock.ServerConfig{FailStatus: 429, RetryAfter: 2 * time.Second}, 5*time.Second)
	secondary := startUpstream(t, "secondary", mock.ServerConfig{}, 5*time.Second)
	cfg := providers.PoolConfig{Breaker: providers.BreakerConfig{ConsecutiveFailures: 5, OpenFor: 100 * time.Millisecond}}
	pool := newPool(t, cfg, nil, primary, secondary)
	start := time.Now()
	if _, err := pool.Complete(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, pool, "primary")
	if d.Breaker != "open" || d.RetryInMs < 2000-time.Since(start).Milliseconds()-50 {
		t.Fatalf("primary after a 429 with retry-after 2: %+v, want open for about 2s", d)
	}
	// Well past openFor, still inside retry-after: nothing goes to the primary.
	deadline := start.Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := pool.Complete(context.Background(), request()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := primary.srv.Stats().Requests; got != 1 {
		t.Errorf("primary saw %d requests within its retry-after, want 1", got)
	}
}

func TestSingleDeploymentDownFailsFastThenRecoversThroughHalfOpen(t *testing.T) {
	only := startUpstream(t, "only", mock.ServerConfig{FailStatus: 503}, 5*time.Second)
	cfg := providers.PoolConfig{MaxAttempts: 1, Breaker: providers.BreakerConfig{ConsecutiveFailures: 3, OpenFor: 300 * time.Millisecond}}
	pool := newPool(t, cfg, nil, only)
	for i := range 3 {
		_, err := pool.Complete(context.Background(), request())
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Kind != providers.KindStatus || ue.Status != 503 {
			t.Fatalf("request %d: %v, want the upstream 503", i, err)
		}
	}
	start := time.Now()
	_, err := pool.Complete(context.Background(), request())
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Kind != providers.KindUnavailable {
		t.Fatalf("with the breaker open: %v, want KindUnavailable", err)
	}
	if ue.RetryAfter <= 0 || ue.RetryAfter > 300*time.Millisecond {
		t.Errorf("RetryAfter = %v, want within the 300ms open interval", ue.RetryAfter)
	}
	if _, err := pool.Stream(context.Background(), request()); kindOf(err) != providers.KindUnavailable {
		t.Errorf("stream with the breaker open: %v, want KindUnavailable", err)
	}
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("fast failures took %v", el)
	}
	if got := only.srv.Stats().Requests; got != 3 {
		t.Errorf("upstream saw %d requests, want 3 (none while open)", got)
	}
	only.srv.SetConfig(mock.ServerConfig{})
	testkit.Eventually(t, 10*time.Second, "recovery through half-open", func() bool {
		_, err := pool.Complete(context.Background(), request())
		return err == nil
	})
	if d := deployment(t, pool, "only"); d.Breaker != "closed" {
		t.Errorf("after a successful probe the breaker is %s, want closed", d.Breaker)
	}
	if got := only.srv.Stats().Requests; got != 4 {
		t.Errorf("upstream saw %d requests, want 4 (one probe)", got)
	}
}

func TestStreamCutAfterTenTokensEndsWithErrorAndUsage(t *testing.T) {
	up := startUpstream(t, "cut", mock.ServerConfig{CutAfterTokens: 10, OutputTokens: 20}, 5*time.Second)
	pool := newPool(t, providers.PoolConfig{}, nil, up)
	st, err := pool.Stream(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err = st.Next()
		if err != nil {
			break
		}
		n++
	}
	if n != 10 || kindOf(err) != providers.KindTruncated {
		t.Fatalf("got %d deltas then %v, want 10 then a truncation", n, err)
	}
	if u := st.Usage(); u.OutputTokens != 10 {
		t.Errorf("usage = %+v, want 10 output tokens", u)
	}
	st.Close()
	if d := deployment(t, pool, "cut"); d.Requests != 1 || d.ErrorRate != 1 || d.InFlight != 0 {
		t.Errorf("snapshot = %+v, want one failed request, none in flight", d)
	}
}

func TestHedgedRequestAbortedByCallerClosesBothUpstreams(t *testing.T) {
	slow := mock.ServerConfig{StallFor: 500 * time.Millisecond, TokenDelay: 20 * time.Millisecond, OutputTokens: 500}
	primary := startUpstream(t, "primary", slow, 5*time.Second)
	secondary := startUpstream(t, "secondary", mock.ServerConfig{TokenDelay: 20 * time.Millisecond, OutputTokens: 500}, 5*time.Second)
	cfg := providers.PoolConfig{Hedge: providers.HedgeConfig{Enabled: true, Delay: 50 * time.Millisecond}}
	pool := newPool(t, cfg, nil, primary, secondary)
	var mu sync.Mutex
	discarded := map[string]int{}
	pool.OnDiscardedUsage = func(name string, u providers.Usage) {
		mu.Lock()
		discarded[name]++
		mu.Unlock()
	}
	st, err := pool.Stream(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := st.Next(); err != nil {
			t.Fatal(err)
		}
	}
	st.Abort()
	if _, err := st.Next(); !errors.Is(err, providers.ErrAborted) {
		t.Errorf("after Abort Next = %v, want ErrAborted", err)
	}
	st.Close()
	for _, u := range []*upstream{primary, secondary} {
		testkit.Eventually(t, 10*time.Second, "both upstream streams to be aborted", func() bool {
			s := u.srv.Stats()
			return s.StreamsStarted == 1 && s.StreamsAborted == 1 && s.OpenStreams == 0
		})
	}
	// The loser was cancelled while still waiting for its reply's
	// headers: it never reported usage, so there is none to record.
	mu.Lock()
	if n := discarded["primary"]; n != 0 {
		t.Errorf("loser cancelled before its headers reported usage %d times, want 0", n)
	}
	mu.Unlock()
	for _, d := range pool.Snapshot(time.Now()).Deployments {
		if d.InFlight != 0 || d.Breaker != "closed" || d.ErrorRate != 0 {
			t.Errorf("after the hedge %+v, want idle, closed, no errors (aborts are not failures)", d)
		}
	}
}

func TestHedgeWinsOverSlowFirstToken(t *testing.T) {
	primary := startUpstream(t, "primary", mock.ServerConfig{TimeToFirstToken: 2 * time.Second}, 5*time.Second)
	secondary := startUpstream(t, "secondary", mock.ServerConfig{}, 5*time.Second)
	cfg := providers.PoolConfig{Hedge: providers.HedgeConfig{Enabled: true, Delay: 50 * time.Millisecond}}
	pool := newPool(t, cfg, nil, primary, secondary)
	start := time.Now()
	st, err := pool.Stream(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("first delta after %v, want the hedge's (well under the primary's 2s)", el)
	}
	if n, err := readAll(t, st); err != io.EOF || n != 20 {
		t.Fatalf("%d deltas, %v", n, err)
	}
	if got := secondary.srv.Stats().StreamsCompleted; got != 1 {
		t.Errorf("secondary completed %d streams, want 1", got)
	}
	if s := pool.Snapshot(time.Now()); s.HedgesStarted != 1 || s.HedgesWon != 1 || s.HedgesLost != 0 || s.Retries != 0 {
		t.Errorf("pool counts hedges %d won %d lost %d retries %d, want 1, 1, 0, 0", s.HedgesStarted, s.HedgesWon, s.HedgesLost, s.Retries)
	}
	testkit.Eventually(t, 10*time.Second, "the primary's aborted attempt to be counted", func() bool {
		return deployment(t, pool, "primary").Excluded.Aborted == 1
	})
}

func TestRetryBudgetHoldsUnderFullOutage(t *testing.T) {
	a := startUpstream(t, "a", mock.ServerConfig{FailStatus: 500}, 5*time.Second)
	b := startUpstream(t, "b", mock.ServerConfig{FailStatus: 503}, 5*time.Second)
	budget, err := providers.NewRetryBudget(providers.RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Breakers that never trip, so only the budget limits retries.
	cfg := providers.PoolConfig{MaxAttempts: 3, Breaker: providers.BreakerConfig{ConsecutiveFailures: 1 << 20, MinRequests: 1 << 20}}
	pool := newPool(t, cfg, budget, a, b)
	const requests = 100
	for range requests {
		if _, err := pool.Complete(context.Background(), request()); kindOf(err) != providers.KindStatus {
			t.Fatalf("during the outage: %v, want an upstream status error", err)
		}
	}
	// ratio × requests + minPerSecond × window seconds; the test's
	// duration can only shrink the window's content.
	const bound = requests + requests/10 + 10
	got := a.srv.Stats().Requests + b.srv.Stats().Requests
	if got < requests+1 || got > bound {
		t.Errorf("upstreams saw %d requests, want between %d and %d (not %d)", got, requests+1, bound, requests*3)
	}
}

// BenchmarkPoolComplete compares Pool.Complete with the bare in-process
// provider it wraps: the difference is the pool's overhead per request.
func BenchmarkPoolComplete(b *testing.B) {
	bare := mock.New("m", mock.Config{OutputTokens: 5})
	budget, _ := providers.NewRetryBudget(providers.RetryBudgetConfig{})
	pool, err := providers.NewPool("public", []providers.DeploymentSpec{
		{Name: "a", Provider: bare},
		{Name: "b", Provider: mock.New("m2", mock.Config{OutputTokens: 5})},
	}, providers.PoolConfig{Strategy: providers.StrategyLeastLoaded}, budget, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	req := request()
	for _, bc := range []struct {
		name string
		p    providers.Provider
	}{{"bare", bare}, {"pool", pool}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.p.Complete(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
