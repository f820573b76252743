package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
)

// What a reload applies (hot) and what needs a restart:
//
//	hot:     auth (apiKeys, jwt, JWKS URLs), personas (items, dir, http
//	         origin settings), providers, models, prices, pools, limits
//	         (the figures; buckets and quota counters are kept)
//	restart: server (listeners, admin token, timeouts, body limit), log,
//	         ledger, limits.backend/onRedisDown/redis, auth.keyStore,
//	         personas.source and cache settings, retryBudget, tracing
//
// A reload builds everything new first; any problem refuses it whole and
// the running config stays. Then it swaps: the gateway's State (one
// atomic store, so each request sees the old or the new config, never a
// mix), the limiter's limits, the persona source (with the changed ids
// invalidated in the cache).

// control is the reloadable part of an app. Its fields change under mu
// (reloads are serialized); pools and hash are also read without it.
type control struct {
	mu         sync.Mutex
	cfg        *Config // the config serving now
	auth       *policy.Authenticator
	set        *modelSet
	personaSrc *swapSource
	load       func() (*Config, []byte, error) // nil: reload unavailable

	hash     string
	loadedAt time.Time
	pools    atomic.Pointer[[]*providers.Pool]
	reloads  *prometheus.CounterVec
	// lastErr and restart describe the last reload, for /admin/status.
	lastErr string
	restart []string
}

func (c *control) init(cfg *Config, auth *policy.Authenticator, set *modelSet, src *swapSource, reg prometheus.Registerer) {
	c.cfg, c.auth, c.set, c.personaSrc = cfg, auth, set, src
	c.loadedAt = time.Now().UTC()
	pools := set.pools
	c.pools.Store(&pools)
	c.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moonborn_config_reloads_total",
		Help: "Config reloads (SIGHUP or POST /admin/reload) by result: ok, or error (refused whole; the running config stays).",
	}, []string{"result"})
	c.reloads.WithLabelValues("ok")
	c.reloads.WithLabelValues("error")
	reg.MustRegister(c.reloads)
}

func (c *control) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth != nil {
		c.auth.Close()
	}
}

func (a *app) currentPools() []*providers.Pool { return *a.ctl.pools.Load() }

// configFile makes path the file reloads read, with override applied to
// every config read from it (the command-line flags), and names the
// running config by the file's hash.
func (a *app) configFile(path string, override func(*Config)) {
	load := func() (*Config, []byte, error) {
		data, err := defaultConfig, error(nil)
		if path != "" { // "": the built-in default, which cannot change
			data, err = os.ReadFile(path)
		}
		if err != nil {
			return nil, nil, err
		}
		cfg, err := ParseConfig(data)
		if err != nil {
			return nil, data, err
		}
		if override != nil {
			override(cfg)
			if err := cfg.Validate(); err != nil {
				return nil, data, err
			}
		}
		return cfg, data, nil
	}
	a.ctl.mu.Lock()
	defer a.ctl.mu.Unlock()
	a.ctl.load = load
	if data, err := os.ReadFile(path); err == nil {
		a.ctl.hash = hashConfig(data)
		st := *a.gw.State()
		st.Version = a.ctl.hash
		_ = a.gw.SetState(st)
	}
}

func hashConfig(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// reloadOnSIGHUP reloads on every SIGHUP until the returned stop is
// called.
func (a *app) reloadOnSIGHUP() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				_, _ = a.reload("SIGHUP")
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func (a *app) reloadFromAdmin() (gateway.ReloadResult, error) { return a.reload("admin") }

// reload re-reads the config file and applies it, or refuses it whole.
func (a *app) reload(trigger string) (gateway.ReloadResult, error) {
	c := &a.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := a.reloadLocked()
	if err != nil {
		c.reloads.WithLabelValues("error").Inc()
		c.lastErr = err.Error()
		problems := strings.Split(err.Error(), "\n")
		for _, p := range problems {
			a.log.Error("config reload refused: the running config stays", "trigger", trigger, "problem", p)
		}
		return res, err
	}
	c.reloads.WithLabelValues("ok").Inc()
	c.lastErr = ""
	a.log.Info("config reloaded", "trigger", trigger, "config_hash", res.ConfigHash, "restart_required", strings.Join(res.RestartRequired, ","))
	return res, nil
}

func (a *app) reloadLocked() (gateway.ReloadResult, error) {
	c := &a.ctl
	if c.load == nil {
		return gateway.ReloadResult{}, errors.New("no config file to reload from")
	}
	cfg, data, err := c.load()
	if err != nil {
		return gateway.ReloadResult{}, err
	}
	old := c.cfg

	// Build everything first; nothing serving changes until all of it
	// worked.
	auth, err := policy.NewAuthenticatorWith(cfg.Auth, policy.AuthOptions{Keys: a.keys, Previous: c.auth, Log: a.log})
	if err != nil {
		return gateway.ReloadResult{}, err
	}
	var src persona.Source
	var personaIDs map[string]*persona.Persona
	switch {
	case cfg.Personas.Source != old.Personas.Source:
		// Needs a restart (restartRequired says so); the source stays.
	default:
		var ps []persona.Persona
		if src, ps, err = personaSource(cfg); err != nil {
			auth.CloseUnshared(c.auth)
			return gateway.ReloadResult{}, err
		}
		personaIDs = byID(ps)
	}
	set, err := buildModelSet(cfg, c.set, nil)
	if err != nil {
		auth.CloseUnshared(c.auth)
		return gateway.ReloadResult{}, err
	}
	hash := hashConfig(data)
	st := gateway.State{Auth: auth, Personas: a.resolver, Models: set.models, Version: hash}

	// Swap. A request racing the reload may see new personas with old
	// models or the reverse for an instant; Validate made sure every
	// persona's models exist in the new config.
	if src != nil {
		changed := changedPersonas(c.personaSrc.personas(), personaIDs)
		c.personaSrc.set(src, personaIDs)
		for _, id := range changed {
			a.resolver.Invalidate(id)
		}
	}
	if err := a.limiter.SetLimits(cfg.Limits); err != nil {
		// ParseConfig validated the limits already.
		a.log.Error("config reload: limits not applied", "err", err.Error())
	}
	if err := a.gw.SetState(st); err != nil {
		// Cannot happen: buildModelSet made every model with a provider.
		auth.CloseUnshared(c.auth)
		return gateway.ReloadResult{}, err
	}
	c.auth.CloseUnshared(auth)
	c.auth, c.set, c.cfg, c.hash, c.loadedAt = auth, set, cfg, hash, time.Now().UTC()
	pools := set.pools
	c.pools.Store(&pools)
	c.restart = restartRequired(old, cfg)
	for _, f := range c.restart {
		a.log.Warn("config reload: setting changed but applies only after a restart", "setting", f)
	}
	return gateway.ReloadResult{ConfigHash: hash, RestartRequired: append([]string{}, c.restart...)}, nil
}

// changedPersonas lists the ids added, removed or changed between two
// file-source persona sets.
func changedPersonas(old, next map[string]*persona.Persona) []string {
	var out []string
	for id, p := range next {
		if o, ok := old[id]; !ok || !reflect.DeepEqual(o, p) {
			out = append(out, id)
		}
	}
	for id := range old {
		if _, ok := next[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// restartRequired names the settings that differ between old and next
// but are read only at start.
func restartRequired(old, next *Config) []string {
	var out []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	check("server", old.Server, next.Server)
	check("log", old.Log, next.Log)
	check("ledger", old.Ledger, next.Ledger)
	check("auth.keyStore", old.Auth.KeyStore, next.Auth.KeyStore)
	check("limits.backend", old.Limits.Backend, next.Limits.Backend)
	check("limits.onRedisDown", old.Limits.OnRedisDown, next.Limits.OnRedisDown)
	check("limits.redis", old.Limits.Redis, next.Limits.Redis)
	check("personas.source", old.Personas.Source, next.Personas.Source)
	check("personas.cacheTTL", old.Personas.CacheTTL, next.Personas.CacheTTL)
	check("personas.negativeTTL", old.Personas.NegativeTTL, next.Personas.NegativeTTL)
	check("personas.staleTTL", old.Personas.StaleTTL, next.Personas.StaleTTL)
	check("personas.cacheMaxItems", old.Personas.CacheMaxItems, next.Personas.CacheMaxItems)
	check("retryBudget", old.RetryBudget, next.RetryBudget)
	check("tracing", old.Tracing, next.Tracing)
	return out
}

// status is GET /admin/status.
func (a *app) status() any {
	c := &a.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]any{
		"configHash":      c.hash,
		"loadedAt":        c.loadedAt,
		"lastReloadError": c.lastErr,
		"restartRequired": append([]string{}, c.restart...),
		"models":          len(c.set.models),
	}
	if a.keys != nil {
		st := a.keys.Stats()
		out["keyStore"] = map[string]any{"keys": st.Keys, "revision": st.Revision, "syncs": st.Syncs, "syncFailures": st.SyncFailures}
	}
	return out
}
