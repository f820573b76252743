package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
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
	ledger   ledger.UsageLedger
	resolver *persona.Resolver
	limiter  limiter
	// keys is the managed key store; nil when auth.keyStore is off.
	keys *policy.KeyStore
	// ctl is the reloadable part: the live config, its hash, the
	// authenticator, models and persona source (reload.go).
	ctl control
	// tracing exports the spans; a no-op when tracing is off.
	tracing *tracing
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
	return slog.New(logHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}), w})
}

// accessWriter is where the gateway writes its access lines: the
// logger's redactor, or nil (through the logger) when there is none.
func accessWriter(log *slog.Logger) io.Writer {
	if r := redactorOf(log); r != nil {
		return r
	}
	return nil
}

// logHandler is the JSON handler newLogger makes, remembering its
// redactor so that the gateway's access lines, which it encodes itself,
// go through the same one writer (redactorOf).
type logHandler struct {
	*slog.JSONHandler
	out *redactor
}

// redactorOf returns the redactor a newLogger logger writes to, or nil
// for any other logger.
func redactorOf(log *slog.Logger) *redactor {
	if h, ok := log.Handler().(logHandler); ok {
		return h.out
	}
	return nil
}

// buildModels makes one upstream client per providers[] entry that a
// model uses, and one Pool per model over its deployments, all sharing
// one retry budget.
func buildModels(cfg *Config) (map[string]*gateway.Model, []*providers.Pool, error) {
	set, err := buildModelSet(cfg, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return set.models, set.pools, nil
}

// modelSet is what buildModelSet made, kept so a reload can reuse the
// parts whose config did not change.
type modelSet struct {
	models map[string]*gateway.Model
	pools  []*providers.Pool
	budget *providers.RetryBudget
	// built are the upstream clients by provider name, with the config
	// they were made from.
	built map[string]builtProvider
	// byModel are the pools by model id, with what they were made from.
	byModel map[string]builtPool
	// tracer is given to every new pool for attempt spans; nil: none.
	tracer trace.Tracer
}

type builtProvider struct {
	cfg ProviderConfig
	p   providers.Provider
}

type builtPool struct {
	deployments []DeploymentConfig
	pool        providers.PoolConfig
	providers   []ProviderConfig
	p           *providers.Pool
}

// buildModelSet builds the models of cfg. With prev (a reload), an
// upstream client whose provider config is unchanged is reused (its
// connections stay), and so is a pool whose model deployments, pool
// settings and providers are all unchanged: its breakers, statistics and
// in-flight counts carry over. Prices, output caps and temperatures are
// per-request values, so they change without touching the pool. The
// retry budget is prev's (retryBudget needs a restart), and so is the
// tracer (tracing needs a restart too).
func buildModelSet(cfg *Config, prev *modelSet, tracer trace.Tracer) (*modelSet, error) {
	set := &modelSet{models: map[string]*gateway.Model{}, built: map[string]builtProvider{}, byModel: map[string]builtPool{}, tracer: tracer}
	if prev != nil {
		set.tracer = prev.tracer
	}
	if prev != nil {
		set.budget = prev.budget
	} else {
		b, err := providers.NewRetryBudget(cfg.RetryBudget)
		if err != nil {
			return nil, fmt.Errorf("retryBudget: %w", err)
		}
		set.budget = b
	}
	byName := map[string]ProviderConfig{}
	for _, pc := range cfg.Providers {
		byName[pc.Name] = pc
	}
	provider := func(name string) (providers.Provider, error) {
		if b, ok := set.built[name]; ok {
			return b.p, nil
		}
		pc := byName[name]
		if prev != nil {
			if b, ok := prev.built[name]; ok && reflect.DeepEqual(b.cfg, pc) {
				set.built[name] = b
				return b.p, nil
			}
		}
		p, err := buildProvider(pc)
		if err != nil {
			return nil, fmt.Errorf("providers[%s]: %w", name, err)
		}
		set.built[name] = builtProvider{cfg: pc, p: p}
		return p, nil
	}
	for _, mc := range cfg.Models {
		used := make([]ProviderConfig, 0, len(mc.Deployments))
		for _, d := range mc.Deployments {
			used = append(used, byName[d.Provider])
		}
		var pool *providers.Pool
		if prev != nil {
			if b, ok := prev.byModel[mc.ID]; ok && reflect.DeepEqual(b.deployments, mc.Deployments) &&
				reflect.DeepEqual(b.pool, mc.Pool) && reflect.DeepEqual(b.providers, used) {
				pool = b.p
				for _, d := range mc.Deployments {
					if _, err := provider(d.Provider); err != nil { // keeps the client in the new set
						return nil, err
					}
				}
			}
		}
		if pool == nil {
			specs := make([]providers.DeploymentSpec, 0, len(mc.Deployments))
			for _, d := range mc.Deployments {
				p, err := provider(d.Provider)
				if err != nil {
					return nil, err
				}
				conns, queue := connLimits(byName[d.Provider])
				name := deploymentName(mc, d)
				specs = append(specs, providers.DeploymentSpec{Name: name, Provider: p, Model: d.UpstreamModel,
					Weight: d.Weight, Priority: d.Priority, MaxInFlight: conns + queue, MaxConns: conns, System: byName[d.Provider].Type,
					Carry: prev.carry(mc.ID, name, p, d.UpstreamModel, mc.Pool.Breaker)})
			}
			var err error
			pool, err = providers.NewPool(mc.ID, specs, mc.Pool, set.budget, time.Now)
			if err != nil {
				return nil, fmt.Errorf("models[%s]: %w", mc.ID, err)
			}
			pool.Tracer = set.tracer
		}
		set.byModel[mc.ID] = builtPool{deployments: mc.Deployments, pool: mc.Pool, providers: used, p: pool}
		set.pools = append(set.pools, pool)
		providerName := deploymentName(mc, mc.Deployments[0])
		set.models[mc.ID] = &gateway.Model{
			ID:              mc.ID,
			ProviderName:    providerName,
			Provider:        pool,
			UpstreamModel:   mc.UpstreamModel,
			Prices:          modelPrices(mc, byName),
			PromptCache:     promptCache(mc.PromptCache),
			MaxOutputTokens: mc.MaxOutputTokens,
			Temperature:     mc.Temperature,
		}
	}
	return set, nil
}

// carry finds, in the set a reload replaces, the deployment of model id
// named name when it is the same upstream (the same client, so the same
// provider config, and the same upstream model) under the same breaker
// settings, so the new pool keeps its breaker state. Nil when there is
// none (or no previous set).
func (prev *modelSet) carry(id, name string, p providers.Provider, upstreamModel string, br providers.BreakerConfig) *providers.Deployment {
	if prev == nil {
		return nil
	}
	b, ok := prev.byModel[id]
	if !ok || !reflect.DeepEqual(b.pool.Breaker, br) {
		return nil
	}
	for _, d := range b.p.Deployments() {
		if d.Name() == name && d.Provider() == p && d.Model() == upstreamModel {
			return d
		}
	}
	return nil
}

// deploymentName is the provider's name, or provider/upstreamModel when
// the model uses one provider for several upstream models.
func deploymentName(mc ModelConfig, d DeploymentConfig) string {
	for _, other := range mc.Deployments {
		if other.Provider == d.Provider && other.UpstreamModel != d.UpstreamModel {
			return d.Provider + "/" + d.UpstreamModel
		}
	}
	return d.Provider
}

// connLimits is a provider's connection cap and queue size: a deployment
// with conns+queue attempts in flight is saturated, skipped rather than
// failed; the ones beyond conns wait for a connection. Zero for the
// in-process mock (no limit).
func connLimits(pc ProviderConfig) (conns, queue int) {
	if h := pc.httpConfig(); h != nil {
		return h.MaxConns, h.MaxQueue
	}
	return 0, 0
}

// buildProvider makes the Provider for one providers[] entry.
func buildProvider(pc ProviderConfig) (providers.Provider, error) {
	k, ok := providerKinds[pc.Type]
	if !ok {
		return nil, fmt.Errorf("unknown provider type %q", pc.Type)
	}
	return k.build(&pc)
}

func newApp(cfg *Config, log *slog.Logger) (*app, error) {
	var keys *policy.KeyStore
	if cfg.Auth.KeyStore.On(cfg.Ledger.Driver) {
		ks, err := policy.OpenKeyStore(context.Background(), cfg.Ledger, cfg.Auth.KeyStore, log)
		if err != nil {
			return nil, fmt.Errorf("auth.keyStore: %w", err)
		}
		keys = ks
	}
	closeKeys := func() {
		if keys != nil {
			_ = keys.Close()
		}
	}
	auth, err := policy.NewAuthenticatorWith(cfg.Auth, policy.AuthOptions{Keys: keys, Log: log})
	if err != nil {
		closeKeys()
		return nil, fmt.Errorf("auth: %w", err)
	}
	closeAuth := func() { auth.Close(); closeKeys() }
	demoHash := policy.HashKey(demoKey)
	for _, k := range cfg.Auth.APIKeys {
		if k.SHA256 == demoHash && !k.Disabled {
			log.Warn("the public demo API key mb_test_demo is enabled; disable it (auth.apiKeys[].disabled) before exposing this gateway",
				"key_id", k.ID)
		}
	}
	var src persona.Source
	var filePersonas []persona.Persona
	switch cfg.Personas.Source {
	case "http":
		hs, err := persona.NewHTTPSource(cfg.Personas.HTTP)
		if err != nil {
			closeAuth()
			return nil, fmt.Errorf("personas: %w", err)
		}
		src = hs
	default:
		if cfg.personasErr != nil {
			closeAuth()
			return nil, fmt.Errorf("personas: %w", cfg.personasErr)
		}
		src, filePersonas = persona.NewFileSource(cfg.personas), cfg.personas
	}
	personaSrc := newSwapSource(src, filePersonas)
	resolver, err := persona.NewResolver(personaSrc, cfg.Personas)
	if err != nil {
		closeAuth()
		return nil, fmt.Errorf("personas: %w", err)
	}
	tr, err := newTracing(cfg.Tracing, readBuildInfo().Version, log)
	if err != nil {
		closeAuth()
		resolver.Close()
		return nil, err
	}
	set, err := buildModelSet(cfg, nil, tr.Tracer())
	if err != nil {
		closeAuth()
		resolver.Close()
		return nil, err
	}
	models := set.models
	usage, err := ledger.Open(context.Background(), cfg.Ledger, log)
	if err != nil {
		closeAuth()
		resolver.Close()
		return nil, fmt.Errorf("ledger: %w", err)
	}
	limiter, err := newLimiter(cfg.Limits, log)
	if err != nil {
		closeAuth()
		_ = usage.Close()
		resolver.Close()
		return nil, fmt.Errorf("limits: %w", err)
	}
	s := cfg.Server
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	readBuildInfo().register(reg)
	metrics := gateway.NewMetrics(reg, models)
	a := &app{cfg: cfg, log: log, ledger: usage, resolver: resolver, limiter: limiter, keys: keys, tracing: tr}
	a.ctl.init(cfg, auth, set, personaSrc, reg)
	coll := &gateway.Collectors{CurrentPools: a.currentPools, Personas: resolver, Ledger: usage}
	if rl, ok := limiter.(*policy.RedisLimiter); ok {
		coll.RedisUp = func() bool { return !rl.Stats().Down }
	}
	reg.MustRegister(coll)
	gw, err := gateway.New(gateway.Options{
		Limiter:      limiter,
		Metrics:      metrics,
		AccessLog:    cfg.Log.accessLog(),
		AccessWriter: accessWriter(log),
		Auth:         auth,
		Personas:     resolver,
		Models:       models,
		Version:      a.ctl.hash,
		Ledger:       usage,
		Log:          log,
		Limits:       s.Limits,
		Tracer:       tr.Tracer(),
		TraceContent: cfg.Tracing.RecordContent,
	})
	if err != nil {
		closeAuth()
		_ = usage.Close()
		resolver.Close()
		return nil, err
	}
	a.gw = gw
	if s.AdminListen != "off" {
		ao := gateway.AdminOptions{
			Token:        s.AdminToken,
			CurrentPools: a.currentPools,
			Reload:       a.reloadFromAdmin,
			Status:       a.status,
			Usage:        usage,
			Ready:        []gateway.ReadyCheck{a.upstreamsReady, a.limiterReady, a.ledgerReady},
			Metrics:      fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		}
		if keys != nil {
			ao.Keys = keys
		}
		a.admin = &fasthttp.Server{
			Handler:               gateway.AdminHandler(ao),
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
	stopHUP := a.reloadOnSIGHUP()
	defer stopHUP()
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
	// SetLimits swaps the limits on reload, keeping the buckets.
	SetLimits(cfg policy.LimitsConfig) error
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
	a.ctl.close()
	if a.keys != nil {
		if err := a.keys.Close(); err != nil {
			a.log.Warn("key store close", "err", err.Error())
		}
	}
	if err := a.limiter.Close(); err != nil {
		a.log.Warn("limiter close", "err", err.Error())
	}
	if err := a.ledger.Close(); err != nil {
		a.log.Error("ledger close", "err", err.Error())
	}
	a.resolver.Close()
	if err := a.tracing.shutdown(tracingFlushTimeout); err != nil {
		a.log.Warn("tracing: spans not exported at shutdown", "err", err.Error())
	}
}

// upstreamsReady fails while some model has every deployment's breaker
// open: that model can only answer 503.
func (a *app) upstreamsReady() error {
	now := time.Now()
	for _, p := range a.currentPools() {
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

// modelPrices returns mc's prices, the cache prices it omits derived
// from its input price by the protocol its deployments speak:
//
//   - every deployment Anthropic: cache reads 0.1×, 5-minute writes 1.25×,
//     1-hour writes 2× — Anthropic's published multipliers, the same for
//     every Claude model;
//   - otherwise: cache reads 0.5×, OpenAI's discount for its GPT-4o
//     family and the smallest it publishes, so the default never bills
//     less than the invoice (GPT-4.1 reads cost 0.25×, GPT-5 0.1×: set
//     cacheReadPricePerMTok for those); writes as Anthropic's, which is
//     what an Anthropic deployment in a mixed pool charges (OpenAI reports
//     no writes).
//
// Derived prices round half up at the 6th decimal.
func modelPrices(mc ModelConfig, byName map[string]ProviderConfig) policy.Prices {
	in := mc.InputPricePerMTok
	allAnthropic := len(mc.Deployments) > 0
	for _, d := range mc.Deployments {
		allAnthropic = allAnthropic && providerKinds[byName[d.Provider].Type].anthropicPricing
	}
	p := policy.Prices{Input: in, Output: mc.OutputPricePerMTok,
		CacheRead: in.Scale(1, 2), CacheWrite5m: in.Scale(5, 4), CacheWrite1h: in.Scale(2, 1)}
	if allAnthropic {
		p.CacheRead = in.Scale(1, 10)
	}
	for _, o := range []struct {
		set *policy.Price
		dst *policy.Price
	}{{mc.CacheReadPricePerMTok, &p.CacheRead}, {mc.CacheWritePricePerMTok, &p.CacheWrite5m}, {mc.CacheWrite1hPricePerMTok, &p.CacheWrite1h}} {
		if o.set != nil {
			*o.dst = *o.set
		}
	}
	return p
}

// promptCache converts a validated promptCache section.
func promptCache(c PromptCacheConfig) gateway.PromptCache {
	pc := gateway.PromptCache{Off: c.Mode == "off", TTL: providers.Cache5m, MinTokens: int64(c.MinTokens)}
	if c.TTL == "1h" {
		pc.TTL = providers.Cache1h
	}
	return pc
}
