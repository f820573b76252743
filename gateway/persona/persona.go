// Package persona resolves a persona id into the persona the gateway talks
// as: its workspace, system prompt and defaults. Personas come from a
// Source (config file, a directory of YAML files, or an HTTP origin) through
// a Resolver that caches them in ristretto, collapses concurrent misses for
// one id into one origin call, caches not-found answers briefly and serves a
// stale copy while the origin is failing.
package persona

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// Persona is one persona as configured. Values handed out by a Resolver are
// shared and must be treated as read-only.
type Persona struct {
	// ID is the public id, e.g. "psn_demo".
	ID string `yaml:"id" json:"id"`
	// Workspace owns the persona; callers of other workspaces never see it.
	Workspace string `yaml:"workspace" json:"workspace"`
	// Name is a display name.
	Name string `yaml:"name" json:"name"`
	// SystemPrompt is sent as the system message.
	SystemPrompt string `yaml:"systemPrompt" json:"systemPrompt"`
	// DefaultModel is the public model id used when a request names none.
	DefaultModel string `yaml:"defaultModel" json:"defaultModel"`
	// Temperature is the default temperature; nil means the model's.
	Temperature *float64 `yaml:"temperature" json:"temperature"`
	// MaxOutputTokens is the default output cap; 0 means the model's.
	MaxOutputTokens int `yaml:"maxOutputTokens" json:"maxOutputTokens"`
	// AllowedModels, when non-empty, is the only model ids a request may
	// choose for this persona.
	AllowedModels []string `yaml:"allowedModels" json:"allowedModels"`
	// PromptCache is auto (cache the system prompt at the provider when
	// the model does) or off; empty is auto.
	PromptCache string `yaml:"promptCache" json:"promptCache"`
	// PromptCacheTTL is 5m or 1h: the Anthropic breakpoint's TTL for this
	// persona; empty is the model's.
	PromptCacheTTL string `yaml:"promptCacheTtl" json:"promptCacheTtl"`

	// Derived once when the Resolver caches the persona (see derive).
	cacheKey     string
	promptTokens int64
}

// CacheKey is the persona's stable prompt-cache key (OpenAI's
// prompt_cache_key): the same for every call of this persona in this
// workspace, on every replica, and neither id in clear — a SHA-256 of
// both, 128 bits of it in base64url.
func (p *Persona) CacheKey() string {
	if p.cacheKey != "" {
		return p.cacheKey
	}
	return cacheKeyOf(p.Workspace, p.ID)
}

// PromptTokens is the system prompt's estimated token count, which
// decides whether it is long enough to be worth a cache breakpoint.
func (p *Persona) PromptTokens() int64 {
	if p.promptTokens != 0 || p.SystemPrompt == "" {
		return p.promptTokens
	}
	return estimateTokens(p.SystemPrompt)
}

// derive returns a copy of p with its derived values computed, so the
// shared copy the cache hands out never computes them per request.
func (p *Persona) derive() *Persona {
	c := *p
	c.cacheKey = cacheKeyOf(p.Workspace, p.ID)
	c.promptTokens = estimateTokens(p.SystemPrompt)
	return &c
}

func cacheKeyOf(workspace, id string) string {
	h := sha256.New()
	h.Write([]byte("moonborn-edge/prompt-cache-key\x00"))
	h.Write([]byte(workspace))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var sum [sha256.Size]byte
	return "pck_" + base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// estimateTokens is providers.EstimateTokens (4 bytes a token), which
// this package cannot import.
func estimateTokens(s string) int64 { return int64((len(s) + 3) / 4) }

// ErrNotFound means the persona does not exist (or, from a Resolver, belongs
// to another workspace).
var ErrNotFound = errors.New("persona not found")

// ErrUnavailable means the origin could not answer and no stale copy is held.
var ErrUnavailable = errors.New("persona origin unavailable")
