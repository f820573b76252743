package gateway_test

// The gateway's behaviour tests (e2e_*_test.go) run a real Server on
// loopback with real parts behind it: the authenticator, the persona
// resolver, pools over the built-in mock and over OpenAI- and
// Anthropic-protocol clients talking to a real mock upstream, the JSONL
// ledger and, where a test asks, the local limiter and the admin
// handler. A world is that set of parts, built in Go the way
// cmd/gateway builds it from the config; cmd/gateway's own tests cover
// the config and the wiring.

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/anthropic"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
	"github.com/moonborn/edge/providers/openai"
)

// world is what a test gateway is made of. newWorld returns the
// standard one; a test changes its fields, or adds providers and models,
// before start.
type world struct {
	t *testing.T
	// Limits is the server section.
	Limits gateway.Limits
	Auth   policy.AuthConfig
	// Personas are served from a file source unless PersonaSource is set.
	Personas      []persona.Persona
	PersonaSource persona.Source
	PersonaConfig persona.Config
	// Providers are the upstream clients by name; Models use them.
	Providers map[string]providers.Provider
	// kinds names each provider's protocol, for the pools' traces.
	kinds  map[string]string
	conns  map[string][2]int
	Models map[string]*gateway.Model
	// RateLimits, when set, puts a local limiter in front.
	RateLimits *policy.LimitsConfig
	// AdminToken, when set, serves the admin handler's /admin/* views.
	AdminToken string
	budget     *providers.RetryBudget
}

// newWorld is the world most tests run in: the mock provider (20
// tokens), OpenAI- and Anthropic-protocol providers oa and an on up (an
// unreachable address when up is nil), a provider dead whose address
// refuses connections, one model on each, three personas in two
// workspaces, API keys and an HS256 JWT key.
func newWorld(t *testing.T, up *mocktest.Upstream) *world {
	t.Helper()
	upAddr := "127.0.0.1:1"
	if up != nil {
		upAddr = up.Addr
	}
	w := &world{t: t, Providers: map[string]providers.Provider{}, kinds: map[string]string{},
		conns: map[string][2]int{}, Models: map[string]*gateway.Model{}}
	w.Limits = gateway.Limits{MaxBodyBytes: 4096}
	w.Auth = policy.AuthConfig{
		APIKeys: []policy.APIKeyConfig{
			{ID: "key_demo", Workspace: "wsp_demo", SHA256: policy.HashKey(mocktest.KeyDemo)},
			{ID: "key_other", Workspace: "wsp_other", SHA256: policy.HashKey(mocktest.KeyOther)},
			{ID: "key_revoked", Workspace: "wsp_demo", SHA256: policy.HashKey(mocktest.KeyRevoked), Disabled: true},
		},
		JWT: policy.JWTConfig{Audience: "moonborn-test", Issuer: "https://auth.test",
			Keys: []policy.JWTKeyConfig{{ID: "hs", Algorithm: "HS256", Secret: mocktest.JWTSecret}}},
	}
	w.Personas = []persona.Persona{
		{ID: "psn_demo", Workspace: "wsp_demo", Name: "Demo", SystemPrompt: "You are terse.", DefaultModel: "mock-1",
			Temperature: ptr(0.5), MaxOutputTokens: 64},
		{ID: "psn_other", Workspace: "wsp_other", Name: "Other", SystemPrompt: "Other.", DefaultModel: "mock-1"},
		{ID: "psn_locked", Workspace: "wsp_demo", Name: "Locked", SystemPrompt: "Locked.", DefaultModel: "mock-1",
			AllowedModels: []string{"mock-1"}},
	}
	w.AddMock("mock", mock.Config{OutputTokens: 20})
	w.AddProtocols(upAddr, nil)
	w.AddOpenAI("dead", testkit.DeadAddr(t), func(c *openai.Config) { c.APIKey, c.ConnectTimeout = "x", time.Second })
	w.AddModel("mock-1", providers.PoolConfig{}, prices(t, "0.15", "0.60"), 1000, deployment{Provider: "mock"})
	w.AddModel("dead-1", providers.PoolConfig{}, policy.Prices{}, 1000, deployment{Provider: "dead"})
	return w
}

// AddProtocols (re)adds the providers oa (OpenAI protocol) and an
// (Anthropic) talking to addr, with the standard world's settings (2 s
// timeout, 1 s to the first token, 1 s idle) changed by set when it is
// not nil, and their models oa-1 and an-1 over them.
func (w *world) AddProtocols(addr string, set func(provider string, h *providers.HTTPConfig)) {
	w.t.Helper()
	settle := func(name, key string, h *providers.HTTPConfig) {
		h.APIKey, h.Timeout, h.FirstTokenTimeout, h.IdleTimeout = key, 2*time.Second, time.Second, time.Second
		if set != nil {
			set(name, h)
		}
	}
	w.AddOpenAI("oa", addr, func(c *openai.Config) { settle("oa", "sk-test-upstream", &c.HTTPConfig) })
	w.AddAnthropic("an", addr, func(c *anthropic.Config) { settle("an", "sk-ant-test-upstream", &c.HTTPConfig) })
	w.AddModel("oa-1", providers.PoolConfig{}, prices(w.t, "2.5", "10"), 1000, deployment{Provider: "oa", Model: "gpt-test"})
	w.AddModel("an-1", providers.PoolConfig{}, prices(w.t, "3", "15"), 1000, deployment{Provider: "an", Model: "claude-test"})
}

func ptr[T any](v T) *T { return &v }

// prices parses a model's input and output prices (USD per million
// tokens).
func prices(t testing.TB, in, out string) policy.Prices {
	t.Helper()
	i, err := policy.ParsePrice(in)
	if err != nil {
		t.Fatal(err)
	}
	o, err := policy.ParsePrice(out)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Prices{Input: i, Output: o}
}

// AddMock adds the in-process mock provider name.
func (w *world) AddMock(name string, c mock.Config) {
	c.SetDefaults()
	w.Providers[name], w.kinds[name] = mock.New(name, c), "mock"
}

// AddOpenAI adds an OpenAI-protocol provider name talking to addr,
// configured by set.
func (w *world) AddOpenAI(name, addr string, set func(*openai.Config)) {
	w.t.Helper()
	c := openai.Config{}
	c.BaseURL = "http://" + addr + "/v1"
	set(&c)
	c.SetDefaults()
	p, err := openai.New(name, c)
	if err != nil {
		w.t.Fatal(err)
	}
	w.Providers[name], w.kinds[name], w.conns[name] = p, "openai", [2]int{c.MaxConns, c.MaxQueue}
}

// AddAnthropic adds an Anthropic-protocol provider name talking to addr,
// configured by set.
func (w *world) AddAnthropic(name, addr string, set func(*anthropic.Config)) {
	w.t.Helper()
	c := anthropic.Config{}
	c.BaseURL = "http://" + addr
	set(&c)
	c.SetDefaults()
	p, err := anthropic.New(name, c)
	if err != nil {
		w.t.Fatal(err)
	}
	w.Providers[name], w.kinds[name], w.conns[name] = p, "anthropic", [2]int{c.MaxConns, c.MaxQueue}
}

// deployment is one deployment of a model: a provider, the upstream
// model it is asked for (empty: the model's id), and its place under
// the pool's strategy.
type deployment struct {
	Provider string
	Model    string
	Priority int
	Weight   int
}

// AddModel adds model id, a pool over deps (named by their providers)
// with pc's settings, the given prices and output cap.
func (w *world) AddModel(id string, pc providers.PoolConfig, p policy.Prices, maxOutput int, deps ...deployment) *gateway.Model {
	w.t.Helper()
	if w.budget == nil {
		var bc providers.RetryBudgetConfig
		bc.SetDefaults()
		b, err := providers.NewRetryBudget(bc)
		if err != nil {
			w.t.Fatal(err)
		}
		w.budget = b
	}
	specs := make([]providers.DeploymentSpec, 0, len(deps))
	for _, d := range deps {
		c := w.conns[d.Provider]
		specs = append(specs, providers.DeploymentSpec{Name: d.Provider, Provider: w.Providers[d.Provider], Model: d.Model,
			Weight: d.Weight, Priority: d.Priority, MaxInFlight: c[0] + c[1], MaxConns: c[0], System: w.kinds[d.Provider]})
	}
	pool, err := providers.NewPool(id, specs, pc, w.budget, time.Now)
	if err != nil {
		w.t.Fatal(err)
	}
	m := &gateway.Model{ID: id, ProviderName: deps[0].Provider, Provider: pool, UpstreamModel: deps[0].Model,
		Prices: p, MaxOutputTokens: maxOutput}
	w.Models[id] = m
	return m
}

// gw is a running gateway: a Client of its public listener, its admin
// address (when AdminToken was set) and its ledger file.
type gw struct {
	testkit.Client
	t         *testing.T
	srv       *gateway.Server
	adminAddr string
	ledger    string
	stop      func()
	once      sync.Once
}

// start builds the world's gateway and serves it on loopback until the
// test ends.
func (w *world) start() *gw {
	t := w.t
	t.Helper()
	var pc persona.Config
	pc = w.PersonaConfig
	pc.SetDefaults()
	src := w.PersonaSource
	if src == nil {
		src = persona.NewFileSource(w.Personas)
	}
	res, err := persona.NewResolver(src, pc)
	if err != nil {
		t.Fatal(err)
	}
	auth := w.Auth
	auth.SetDefaults()
	authn, err := policy.NewAuthenticator(auth)
	if err != nil {
		t.Fatal(err)
	}
	lc := ledger.Config{Driver: "jsonl", Path: filepath.Join(t.TempDir(), "usage.jsonl"), FlushInterval: 10 * time.Millisecond}
	lc.SetDefaults()
	usage, err := ledger.Open(context.Background(), lc, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := gateway.Options{Auth: authn, Personas: res, Models: w.Models, Ledger: usage, Limits: w.Limits}
	if w.RateLimits != nil {
		rl := *w.RateLimits
		rl.SetDefaults()
		lim, err := policy.NewLocalLimiter(rl)
		if err != nil {
			t.Fatal(err)
		}
		opts.Limiter = lim
	}
	s, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	g := &gw{Client: testkit.Client{T: t, Base: "http://" + ln.Addr().String()}, t: t, srv: s, ledger: lc.Path}
	admin := w.serveAdmin(usage)
	if admin != nil {
		g.adminAddr = admin.addr
	}
	g.stop = func() {
		g.once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// As cmd/gateway's app: a deadline reached (a connection the
			// client opened and never used gets fasthttp's 5 s grace) is
			// not an error of the test.
			if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("serve returned %v", err)
			}
			if admin != nil {
				_ = admin.srv.Shutdown()
			}
			_ = usage.Close()
			res.Close()
			authn.Close()
		})
	}
	t.Cleanup(g.stop)
	return g
}

// pools are the models' pools.
func (w *world) pools() []*providers.Pool {
	var pools []*providers.Pool
	for _, m := range w.Models {
		if p, ok := m.Provider.(*providers.Pool); ok {
			pools = append(pools, p)
		}
	}
	return pools
}

// adminServer is the admin handler on its own loopback listener.
type adminServer struct {
	srv  *fasthttp.Server
	addr string
}

// serveAdmin serves the admin handler when the world has an AdminToken:
// the upstream view of every model's pool and the usage API.
func (w *world) serveAdmin(usage gateway.UsageReader) *adminServer {
	if w.AdminToken == "" {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: gateway.AdminHandler(gateway.AdminOptions{Token: w.AdminToken, Pools: w.pools(), Usage: usage})}
	go func() { _ = srv.Serve(ln) }()
	return &adminServer{srv: srv, addr: ln.Addr().String()}
}

// readLedger stops the gateway (flushing the ledger) and returns its
// records.
func (g *gw) readLedger() []map[string]any {
	g.t.Helper()
	g.stop()
	return testkit.ReadJSONL(g.t, g.ledger)
}
