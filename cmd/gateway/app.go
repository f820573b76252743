package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/anthropic"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/openai"
)

// demoKey is the default config's API key. Its hash in a config that is
// served is worth a warning: everyone knows it.
const demoKey = "mb_test_demo"

// app is a wired gateway: the public server, the admin server and what
// they share.
type app struct {
	cfg      *Config
	log      *slog.Logger
	gw       *gateway.Server
	admin    *fasthttp.Server
	ledger   policy.UsageLedger
	resolver *persona.Resolver
	pools    []*providers.Pool
	limiter  limiter
	// ledgerErrs is the ledger's write-error count at the last readiness
	// check: new errors since then make the gateway unready.
	ledgerErrs atomic.Uint64

	// PublicAddr and AdminAddr are the bound addresses once serving.
	PublicAddr, AdminAddr string
}

// newLogger is the process's only way to a logger, and it writes only
// through the redactor.
func newLogger(w *redactor, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// buildModels makes one upstream client per providers[] entry that a
// model uses, and one Pool per model over its deployments, all sharing
// one retry budget.
func buildModels(cfg *Config) (map[string]*gateway.Model, []*providers.Pool, error) {
	budget, err := providers.NewRetryBudget(cfg.RetryBudget)
	if err != nil {
		return nil, nil, fmt.Errorf("retryBudget: %w", err)
	}
	byName := map[string]ProviderConfig{}
	for _, pc := range cfg.Providers {
		byName[pc.Name] = pc
	}
	built := map[string]providers.Provider{}
	models := map[string]*gateway.Model{}
	var pools []*providers.Pool
	for _, mc := range cfg.Models {
		specs := make([]providers.DeploymentSpec, 0, len(mc.Deployments))
		for _, d := range mc.Deployments {
			p, ok := built[d.Provider]
			if !ok {
				p, err = buildProvider(byName[d.Provider])
				if err != nil {
					return nil, nil, fmt.Errorf("providers[%s]: %w", d.Provider, err)
				}
				built[d.Provider] = p
			}
			name := d.Provider
			for _, other := range mc.Deployments {
				if other.Provider == d.Provider && other.UpstreamModel != d.UpstreamModel {
					name = d.Provider + "/" + d.UpstreamModel // one provider, several upstream models
					break
				}
			}
			specs = append(specs, providers.DeploymentSpec{Name: name, Provider: p, Model: d.UpstreamModel,
				Weight: d.Weight, Priority: d.Priority, MaxInFlight: maxConns(byName[d.Provider])})
		}
		pool, err := providers.NewPool(mc.ID, specs, mc.Pool, budget, time.Now)
		if err != nil {
			return nil, nil, fmt.Errorf("models[%s]: %w", mc.ID, err)
		}
		pools = append(pools, pool)
		models[mc.ID] = &gateway.Model{
			ID:              mc.ID,
			ProviderName:    specs[0].Name,
			Provider:        pool,
			UpstreamModel:   mc.UpstreamModel,
			InputPrice:      mc.InputPricePerMTok,
			OutputPrice:     mc.OutputPricePerMTok,
			MaxOutputTokens: mc.MaxOutputTokens,
			Temperature:     mc.Temperature,
		}
	}
	return models, pools, nil
}

// maxConns is a provider's connection limit: a deployment with that many
// attempts in flight is saturated, skipped rather than failed.
func maxConns(pc ProviderConfig) int {
	switch {
	case pc.OpenAI != nil:
		return pc.OpenAI.MaxConns
	case pc.Anthropic != nil:
		return pc.Anthropic.MaxConns
	}
	return 0
}

// buildProvider makes the Provider for one providers[] entry.
func buildProvider(pc ProviderConfig) (providers.Provider, error) {
	switch pc.Type {
	case "mock":
		mc := mock.Config{}
		if pc.Mock != nil {
			mc = *pc.Mock
		}
		mc.SetDefaults()
		return mock.New(pc.Name, mc), nil
	case "openai":
		return openai.New(pc.Name, *pc.OpenAI)
	case "anthropic":
		return anthropic.New(pc.Name, *pc.Anthropic)
	}
	return nil, fmt.Errorf("unknown provider type %q", pc.Type)
}

func newApp(cfg *Config, log *slog.Logger) (*app, error) {
	auth, err := policy.NewAuthenticator(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	demoHash := policy.HashKey(demoKey)
	for _, k := range cfg.Auth.APIKeys {
		if k.SHA256 == demoHash && !k.Disabled {
			log.Warn("the public demo API key mb_test_demo is enabled; disable it (auth.apiKeys[].disabled) before exposing this gateway",
				"key_id", k.ID)
		}
	}
	var src persona.Source
	switch cfg.Personas.Source {
	case "http":
		hs, err := persona.NewHTTPSource(cfg.Personas.HTTP)
		if err != nil {
			return nil, fmt.Errorf("personas: %w", err)
		}
		src = hs
	default:
		ps, err := cfg.Personas.LoadFilePersonas()
		if err != nil {
			return nil, fmt.Errorf("personas: %w", err)
		}
		src = persona.NewFileSource(ps)
	}
	resolver, err := persona.NewResolver(src, cfg.Personas)
	if err != nil {
		return nil, fmt.Errorf("personas: %w", err)
	}
	models, pools, err := buildModels(cfg)
	if err != nil {
		resolver.Close()
		return nil, err
	}
	ledger, err := policy.OpenLedger(context.Background(), cfg.Ledger, log)
	if err != nil {
		resolver.Close()
		return nil, fmt.Errorf("ledger: %w", err)
	}
	limiter, err := newLimiter(cfg.Limits, log)
	if err != nil {
		_ = ledger.Close()
		resolver.Close()
		return nil, fmt.Errorf("limits: %w", err)
	}
	s := cfg.Server
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	readBuildInfo().register(reg)
	metrics := gateway.NewMetrics(reg, models)
	coll := &gateway.Collectors{Pools: pools, Personas: resolver, Ledger: ledger}
	if rl, ok := limiter.(*policy.RedisLimiter); ok {
		coll.RedisUp = func() bool { return !rl.Stats().Down }
	}
	reg.MustRegister(coll)
	gw, err := gateway.New(gateway.Options{
		Limiter:            limiter,
		Metrics:            metrics,
		AccessLog:          cfg.Log.accessLog(),
		Auth:               auth,
		Personas:           resolver,
		Models:             models,
		Ledger:             ledger,
		Log:                log,
		MaxBodyBytes:       s.MaxBodyBytes,
		ReadTimeout:        s.ReadTimeout,
		WriteTimeout:       s.WriteTimeout,
		IdleTimeout:        s.IdleTimeout,
		StreamWriteTimeout: s.StreamWriteTimeout,
		PingInterval:       s.PingInterval,
	})
	if err != nil {
		_ = ledger.Close()
		resolver.Close()
		return nil, err
	}
	a := &app{cfg: cfg, log: log, gw: gw, ledger: ledger, resolver: resolver, pools: pools, limiter: limiter}
	if s.AdminListen != "off" {
		a.admin = &fasthttp.Server{
			Handler: gateway.AdminHandler(gateway.AdminOptions{
				Token:   s.AdminToken,
				Pools:   pools,
				Usage:   ledger,
				Ready:   []gateway.ReadyCheck{a.upstreamsReady, a.limiterReady, a.ledgerReady},
				Metrics: fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
			}),
			NoDefaultServerHeader: true,
			Logger:                adminLogger{log},
			SecureErrorLogMessage: true,
			ReadTimeout:           10 * time.Second,
			WriteTimeout:          10 * time.Second,
		}
	}
	return a, nil
}

// serve listens on both addresses and blocks until ctx ends, then shuts
// down gracefully: stop accepting, let in-flight work finish within
// server.shutdownTimeout, flush the ledger.
func (a *app) serve(ctx context.Context, ready func(*app)) error {
	ln, err := net.Listen("tcp", a.cfg.Server.Listen)
	if err != nil {
		a.close()
		return err
	}
	a.PublicAddr = ln.Addr().String()
	var adminLn net.Listener
	if a.admin != nil {
		adminLn, err = net.Listen("tcp", a.cfg.Server.AdminListen)
		if err != nil {
			_ = ln.Close()
			a.close()
			return err
		}
		a.AdminAddr = adminLn.Addr().String()
	}
	errc := make(chan error, 2)
	go func() { errc <- a.gw.Serve(ln) }()
	if a.admin != nil {
		go func() { errc <- a.admin.Serve(adminLn) }()
	}
	a.log.Info("gateway listening", "addr", a.PublicAddr, "admin_addr", a.AdminAddr)
	if ready != nil {
		ready(a)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("shutting down", "deadline", a.cfg.Server.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := a.gw.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("shutdown", "err", err.Error())
	}
	if a.admin != nil {
		_ = a.admin.ShutdownWithContext(sctx)
	}
	a.close()
	a.log.Info("stopped")
	return serveErr
}

// limiter is what the app keeps of either limiter backend.
type limiter interface {
	gateway.Limiter
	Close() error
}

func newLimiter(cfg policy.LimitsConfig, log *slog.Logger) (limiter, error) {
	if cfg.Backend == "redis" {
		// go-redis logs dial failures through a process-wide logger of its
		// own; send them to ours (the limiter logs outages once per change).
		redis.SetLogger(redisLogger{log})
		return policy.NewRedisLimiter(cfg, log)
	}
	return policy.NewLocalLimiter(cfg)
}

// limiterReady fails while the Redis limiter cannot reach Redis (the
// gateway then answers per limits.onRedisDown).
func (a *app) limiterReady() error {
	if rl, ok := a.limiter.(*policy.RedisLimiter); ok && rl.Stats().Down {
		return errors.New("redis (limits) unreachable")
	}
	return nil
}

// ledgerReady fails while usage records are being lost (store and spool
// both refusing writes): serving on would leave requests unrecorded.
func (a *app) ledgerReady() error {
	st := a.ledger.Stats()
	if st.WriteErrors > a.ledgerErrs.Load() {
		a.ledgerErrs.Store(st.WriteErrors)
		return errors.New("usage ledger is failing to write records")
	}
	return nil
}

func (a *app) close() {
	if err := a.limiter.Close(); err != nil {
		a.log.Warn("limiter close", "err", err.Error())
	}
	if err := a.ledger.Close(); err != nil {
		a.log.Error("ledger close", "err", err.Error())
	}
	a.resolver.Close()
}

// upstreamsReady fails while some model has every deployment's breaker
// open: that model can only answer 503.
func (a *app) upstreamsReady() error {
	now := time.Now()
	for _, p := range a.pools {
		snap := p.Snapshot(now)
		open := 0
		for _, d := range snap.Deployments {
			if d.Breaker == "open" {
				open++
			}
		}
		if open == len(snap.Deployments) {
			return fmt.Errorf("model %s: every deployment's circuit breaker is open", snap.Model)
		}
	}
	return nil
}

// adminLogger routes the admin server's fasthttp messages into slog (and
// so through the redactor) rather than to fasthttp's default, stderr.
type adminLogger struct{ log *slog.Logger }

func (l adminLogger) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "fasthttp-admin")
}

// redisLogger adapts go-redis's logger to slog at debug level: outages are
// already reported by the limiter, once per change of state.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "redis")
}
