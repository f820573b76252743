package openai

import (
	"errors"
	"time"

	"github.com/moonborn/edge/providers"
)

// Config is one OpenAI-compatible deployment (OpenAI itself, Azure-style
// proxies, vLLM and other servers speaking /chat/completions).
type Config struct {
	// BaseURL is the API root the paths hang off, e.g.
	// "https://api.openai.com/v1". Required; absolute http(s).
	BaseURL string `yaml:"baseURL"`
	// APIKey is sent as "Authorization: Bearer <key>". Required. Never
	// logged or put into errors.
	APIKey string `yaml:"apiKey"`
	// Organization, when set, is sent as the OpenAI-Organization header.
	Organization string `yaml:"organization"`
	// Timeout bounds a whole non-streaming request, reply body included.
	// Default 120s.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds opening a TCP connection. Default 5s.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// FirstTokenTimeout bounds a stream from sending the request to the
	// first text delta (reply headers included). Default 60s.
	FirstTokenTimeout time.Duration `yaml:"firstTokenTimeout"`
	// IdleTimeout bounds the silence between two chunks of a stream after
	// its first delta. Default 60s.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConns caps open connections to the deployment; each open stream
	// holds one, and a request finding none free fails at once as
	// saturated. Default 512.
	MaxConns int `yaml:"maxConns"`
	// MaxTokensField names the output cap in the request body:
	// "max_tokens" (default; most compatible servers) or
	// "max_completion_tokens" (required by OpenAI's reasoning models).
	MaxTokensField string `yaml:"maxTokensField"`
}

// SetDefaults fills every unset optional field.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.FirstTokenTimeout == 0 {
		c.FirstTokenTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 512
	}
	if c.MaxTokensField == "" {
		c.MaxTokensField = "max_tokens"
	}
}

// Validate reports every problem of a defaulted Config at once, each
// message starting with the field's YAML name.
func (c *Config) Validate() error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("baseURL: required"))
	} else if _, err := providers.ParseUpstreamURL(c.BaseURL); err != nil {
		errs = append(errs, errors.New("baseURL: "+err.Error()))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("apiKey: required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", c.Timeout}, {"connectTimeout", c.ConnectTimeout}, {"firstTokenTimeout", c.FirstTokenTimeout}, {"idleTimeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, errors.New(d.name+": must be positive"))
		}
	}
	if c.MaxConns < 1 {
		errs = append(errs, errors.New("maxConns: must be at least 1"))
	}
	if c.MaxTokensField != "max_tokens" && c.MaxTokensField != "max_completion_tokens" {
		errs = append(errs, errors.New("maxTokensField: must be one of max_tokens, max_completion_tokens"))
	}
	return errors.Join(errs...)
}
