// Package persona resolves a persona id into the persona the gateway talks
// as: its workspace, system prompt and defaults. Personas come from a
// Source (config file, a directory of YAML files, or an HTTP origin) through
// a Resolver that caches them in ristretto, collapses concurrent misses for
// one id into one origin call, caches not-found answers briefly and serves a
// stale copy while the origin is failing.
package persona

import "errors"

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
}

// ErrNotFound means the persona does not exist (or, from a Resolver, belongs
// to another workspace).
var ErrNotFound = errors.New("persona not found")

// ErrUnavailable means the origin could not answer and no stale copy is held.
var ErrUnavailable = errors.New("persona origin unavailable")
