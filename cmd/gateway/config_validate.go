package main

// Validate: ranges and references, every problem at once. Pure: the
// persona files were read by loading (config_load.go).

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/moonborn/edge/policy/ledger"
)

// problems collects validation errors, each prefixed with its path.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// unique reports name at path when it is empty or already in seen (a
// duplicate what), and adds it to seen.
func (p *problems) unique(path, what, name string, seen map[string]bool) {
	if name == "" {
		p.add(path, "is required")
	} else if seen[name] {
		p.add(path, "duplicate %s %q", what, name)
	}
	seen[name] = true
}

// addAll prefixes every error joined in err with path.
func (p *problems) addAll(path string, err error) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		*p = append(*p, fmt.Errorf("%s.%s", path, e.Error()))
	}
}

// Validate reports every problem in the config at once.
//
// Validate is pure: it reads no file (the personas were loaded with the
// config, see loadPersonas), so it can run again after flags override a
// value.
func (c *Config) Validate() error {
	var p problems
	c.validateServer(&p)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be one of debug, info, warn, error")
	}
	p.addAll("auth", c.Auth.Validate())
	if ks := c.Auth.KeyStore.Enabled; ks != nil && *ks && c.Ledger.Driver != ledger.DriverSQLite && c.Ledger.Driver != ledger.DriverPostgres {
		p.add("auth.keyStore.enabled", "needs ledger.driver sqlite or postgres (the keys live in the ledger's database)")
	}
	p.addAll("personas", c.Personas.Validate())
	p.addAll("ledger", c.Ledger.Validate())
	p.addAll("retryBudget", c.RetryBudget.Validate())
	p.addAll("limits", c.Limits.Validate())
	p.addAll("tracing", c.Tracing.Validate())

	providerNames := c.validateProviders(&p)
	modelIDs := c.validateModels(&p, providerNames)
	c.validatePersonaModels(&p, modelIDs)
	return errors.Join(p...)
}

// validateServer checks the listeners and their limits.
func (c *Config) validateServer(p *problems) {
	s := c.Server
	checkAddr(p, "server.listen", s.Listen)
	if s.AdminListen != "off" {
		checkAddr(p, "server.adminListen", s.AdminListen)
	}
	if s.MaxBodyBytes < 1024 || s.MaxBodyBytes > 64<<20 {
		p.add("server.maxBodyBytes", "must be between 1024 and 67108864")
	}
	for name, d := range map[string]time.Duration{
		"readTimeout": s.ReadTimeout, "writeTimeout": s.WriteTimeout, "idleTimeout": s.IdleTimeout,
		"streamWriteTimeout": s.StreamWriteTimeout, "pingInterval": s.PingInterval, "shutdownTimeout": s.ShutdownTimeout,
		"requestTimeout": s.RequestTimeout, "maxStreamDuration": s.MaxStreamDuration,
	} {
		if d < 0 {
			p.add("server."+name, "must not be negative")
		}
	}
}

// validateProviders checks providers[] and returns their names.
func (c *Config) validateProviders(p *problems) map[string]bool {
	providerNames := map[string]bool{}
	for i, pc := range c.Providers {
		path := fmt.Sprintf("providers[%d]", i)
		p.unique(path+".name", "provider", pc.Name, providerNames)
		kind, known := providerKinds[pc.Type]
		if !known {
			p.add(path+".type", "unknown type %q; must be one of %s", pc.Type, strings.Join(providerKindNames, ", "))
		}
		for _, name := range providerKindNames {
			if k := providerKinds[name]; name != pc.Type && k.present(&pc) {
				p.add(path+"."+name, "set, but type is %q", pc.Type)
			}
		}
		switch {
		case !known:
		case kind.present(&pc):
			p.addAll(path+"."+pc.Type, kind.validate(&pc))
		case kind.required:
			p.add(path+"."+pc.Type, "is required for type %s", pc.Type)
		}
	}
	return providerNames
}

// validateModels checks models[] against the providers and returns the
// model ids.
func (c *Config) validateModels(p *problems, providerNames map[string]bool) map[string]bool {
	if len(c.Models) == 0 {
		p.add("models", "at least one model is required")
	}
	modelIDs := map[string]bool{}
	for i, m := range c.Models {
		path := fmt.Sprintf("models[%d]", i)
		p.unique(path+".id", "model", m.ID, modelIDs)
		switch {
		case m.Provider != "" && len(m.Deployments) > 1:
			p.add(path, "set provider or deployments, not both")
		case len(m.Deployments) == 0:
			p.add(path+".provider", "is required (or deployments)")
		case m.Provider != "" && !providerNames[m.Provider]:
			p.add(path+".provider", "unknown provider %q", m.Provider)
		case m.Provider == "":
			seen := map[string]bool{}
			for j, d := range m.Deployments {
				dp := fmt.Sprintf("%s.deployments[%d]", path, j)
				if !providerNames[d.Provider] {
					p.add(dp+".provider", "unknown provider %q", d.Provider)
				}
				if seen[d.Provider+"\x00"+d.UpstreamModel] {
					p.add(dp, "duplicate deployment %s/%s", d.Provider, d.UpstreamModel)
				}
				seen[d.Provider+"\x00"+d.UpstreamModel] = true
			}
		}
		p.addAll(path+".pool", m.Pool.Validate())
		if m.MaxOutputTokens < 1 || m.MaxOutputTokens > 1_000_000 {
			p.add(path+".maxOutputTokens", "must be between 1 and 1000000")
		}
		if t := m.Temperature; t != nil && (*t < 0 || *t > 2) {
			p.add(path+".temperature", "must be between 0 and 2")
		}
		if pc := m.PromptCache; pc.Mode != "auto" && pc.Mode != "off" {
			p.add(path+".promptCache.mode", "must be auto or off")
		}
		if pc := m.PromptCache; pc.TTL != "5m" && pc.TTL != "1h" {
			p.add(path+".promptCache.ttl", "must be 5m or 1h")
		}
		if pc := m.PromptCache; pc.MinTokens < 1 || pc.MinTokens > 1_000_000 {
			p.add(path+".promptCache.minTokens", "must be between 1 and 1000000")
		}
	}
	return modelIDs
}

// validatePersonaModels checks that the file source's personas name
// models that exist (their own fields were checked when loaded).
func (c *Config) validatePersonaModels(p *problems, modelIDs map[string]bool) {
	if c.Personas.Source == "file" {
		if c.personasErr != nil {
			p.addAll("personas", c.personasErr)
		}
		for _, ps := range c.personas {
			if !modelIDs[ps.DefaultModel] {
				p.add("personas["+ps.ID+"].defaultModel", "unknown model %q", ps.DefaultModel)
			}
			for _, am := range ps.AllowedModels {
				if !modelIDs[am] {
					p.add("personas["+ps.ID+"].allowedModels", "unknown model %q", am)
				}
			}
		}
	}
}

func checkAddr(p *problems, path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		p.add(path, "must be host:port")
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(path, "port must be 0-65535")
	}
}
