package main

// Config defaults, in one place each.

import "time"

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	s := &c.Server
	if s.Listen == "" {
		s.Listen = "127.0.0.1:8080"
	}
	if s.AdminListen == "" {
		s.AdminListen = "127.0.0.1:9090"
	}
	s.Limits.SetDefaults()
	defDur(&s.ShutdownTimeout, 30*time.Second)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.Auth.SetDefaults()
	c.Personas.SetDefaults()
	c.Ledger.SetDefaults()
	c.Limits.SetDefaults()
	for i := range c.Providers {
		p := &c.Providers[i]
		for _, k := range providerKinds {
			if k.present(p) {
				k.setDefaults(p)
			}
		}
	}
	for i := range c.Models {
		m := &c.Models[i]
		if m.UpstreamModel == "" {
			m.UpstreamModel = m.ID
		}
		defInt(&m.MaxOutputTokens, 4096)
		if len(m.Deployments) == 0 && m.Provider != "" {
			m.Deployments = []DeploymentConfig{{Provider: m.Provider, UpstreamModel: m.UpstreamModel}}
		}
		if m.PromptCache.Mode == "" {
			m.PromptCache.Mode = "auto"
		}
		if m.PromptCache.TTL == "" {
			m.PromptCache.TTL = "5m"
		}
		defInt(&m.PromptCache.MinTokens, 1024)
		for j := range m.Deployments {
			if m.Deployments[j].UpstreamModel == "" {
				m.Deployments[j].UpstreamModel = m.UpstreamModel
			}
		}
		m.Pool.SetDefaults()
	}
	c.RetryBudget.SetDefaults()
	c.Tracing.SetDefaults()
}

func defInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func defDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}
