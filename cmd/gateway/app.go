package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"

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
	ledger   policy.Ledger
	resolver *persona.Resolver

	// PublicAddr and AdminAddr are the bound addresses once serving.
	PublicAddr, AdminAddr string
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
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
	byName := map[string]ProviderConfig{}
	built := map[string]providers.Provider{}
	for _, pc := range cfg.Providers {
		byName[pc.Name] = pc
	}
	models := map[string]*gateway.Model{}
	for _, mc := range cfg.Models {
		p, ok := built[mc.Provider]
		if !ok {
			p, err = buildProvider(byName[mc.Provider])
			if err != nil {
				resolver.Close()
				return nil, fmt.Errorf("providers[%s]: %w", mc.Provider, err)
			}
			built[mc.Provider] = p
		}
		models[mc.ID] = &gateway.Model{
			ID:              mc.ID,
			ProviderName:    mc.Provider,
			Provider:        p,
			UpstreamModel:   mc.UpstreamModel,
			InputPrice:      mc.InputPricePerMTok,
			OutputPrice:     mc.OutputPricePerMTok,
			MaxOutputTokens: mc.MaxOutputTokens,
			Temperature:     mc.Temperature,
		}
	}
	ledger, err := policy.NewJSONLLedger(cfg.Ledger, log)
	if err != nil {
		resolver.Close()
		return nil, fmt.Errorf("ledger: %w", err)
	}
	s := cfg.Server
	gw, err := gateway.New(gateway.Options{
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
	a := &app{cfg: cfg, log: log, gw: gw, ledger: ledger, resolver: resolver}
	if s.AdminListen != "off" {
		a.admin = &fasthttp.Server{
			Handler:               gateway.AdminHandler(),
			NoDefaultServerHeader: true,
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

func (a *app) close() {
	if err := a.ledger.Close(); err != nil {
		a.log.Error("ledger close", "err", err.Error())
	}
	a.resolver.Close()
}
