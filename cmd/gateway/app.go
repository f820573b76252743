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
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
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

// newApp wires the gateway of a validated cfg. On an error it closes
// what it had opened.
func newApp(cfg *Config, log *slog.Logger) (_ *app, err error) {
	var undo undoStack
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	keys, auth, err := openAuth(cfg, log, &undo)
	if err != nil {
		return nil, err
	}
	warnDemoKey(cfg, log)
	src, filePersonas, err := personaSource(cfg)
	if err != nil {
		return nil, err
	}
	personaSrc := newSwapSource(src, filePersonas)
	resolver, err := persona.NewResolver(personaSrc, cfg.Personas)
	if err != nil {
		return nil, fmt.Errorf("personas: %w", err)
	}
	undo.push(resolver.Close)
	tr, err := newTracing(cfg.Tracing, readBuildInfo().Version, log)
	if err != nil {
		return nil, err
	}
	set, err := buildModelSet(cfg, nil, tr.Tracer())
	if err != nil {
		return nil, err
	}
	usage, err := ledger.Open(context.Background(), cfg.Ledger, log)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	undo.push(func() { _ = usage.Close() })
	limiter, err := newLimiter(cfg.Limits, log)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	readBuildInfo().register(reg)
	metrics := gateway.NewMetrics(reg, set.models)
	a := &app{cfg: cfg, log: log, ledger: usage, resolver: resolver, limiter: limiter, keys: keys, tracing: tr}
	a.ctl.init(cfg, auth, set, personaSrc, reg)
	coll := &gateway.Collectors{CurrentPools: a.currentPools, Personas: resolver, Ledger: usage}
	if rl, ok := limiter.(*policy.RedisLimiter); ok {
		coll.RedisUp = func() bool { return !rl.Stats().Down }
	}
	reg.MustRegister(coll)
	a.gw, err = gateway.New(gateway.Options{
		Limiter:      limiter,
		Metrics:      metrics,
		AccessLog:    cfg.Log.accessLog(),
		AccessWriter: accessWriter(log),
		Auth:         auth,
		Personas:     resolver,
		Models:       set.models,
		Version:      a.ctl.hash,
		Ledger:       usage,
		Log:          log,
		Limits:       cfg.Server.Limits,
		Tracer:       tr.Tracer(),
		TraceContent: cfg.Tracing.RecordContent,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Server.AdminListen != "off" {
		a.admin = a.newAdminServer(reg)
	}
	return a, nil
}

// undoStack is what newApp has opened, to close in reverse order when a
// later step fails.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// openAuth opens the managed key store (when auth.keyStore is on) and the
// authenticator over it, pushing their closing onto undo.
func openAuth(cfg *Config, log *slog.Logger, undo *undoStack) (*policy.KeyStore, *policy.Authenticator, error) {
	var keys *policy.KeyStore
	if cfg.Auth.KeyStore.On(cfg.Ledger.Driver) {
		ks, err := policy.OpenKeyStore(context.Background(), cfg.Ledger, cfg.Auth.KeyStore, log)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.keyStore: %w", err)
		}
		keys = ks
		undo.push(func() { _ = ks.Close() })
	}
	auth, err := policy.NewAuthenticatorWith(cfg.Auth, policy.AuthOptions{Keys: keys, Log: log})
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	undo.push(auth.Close)
	return keys, auth, nil
}

// warnDemoKey warns when the public demo key is enabled: everyone knows it.
func warnDemoKey(cfg *Config, log *slog.Logger) {
	demoHash := policy.HashKey(demoKey)
	for _, k := range cfg.Auth.APIKeys {
		if k.SHA256 == demoHash && !k.Disabled {
			log.Warn("the public demo API key mb_test_demo is enabled; disable it (auth.apiKeys[].disabled) before exposing this gateway",
				"key_id", k.ID)
		}
	}
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
