package main

// Wiring the admin listener.

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/moonborn/edge/gateway"
)

// newAdminServer is the admin listener's server: /metrics from reg,
// health and readiness, reload, status, usage and (with a key store)
// key management.
func (a *app) newAdminServer(reg *prometheus.Registry) *fasthttp.Server {
	ao := gateway.AdminOptions{
		Token:        a.cfg.Server.AdminToken,
		CurrentPools: a.currentPools,
		Reload:       a.reloadFromAdmin,
		Status:       a.status,
		Usage:        a.ledger,
		Ready:        []gateway.ReadyCheck{a.upstreamsReady, a.limiterReady, a.ledgerReady},
		Metrics:      fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
	}
	if a.keys != nil {
		ao.Keys = a.keys // a nil *KeyStore would be a non-nil KeyManager
	}
	return &fasthttp.Server{
		Handler:               gateway.AdminHandler(ao),
		NoDefaultServerHeader: true,
		Logger:                adminLogger{a.log},
		SecureErrorLogMessage: true,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
	}
}
