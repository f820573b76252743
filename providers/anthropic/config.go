package anthropic

import (
	"errors"
	"time"

	"github.com/moonborn/edge/providers"
)

// Config is one deployment speaking Anthropic's Messages API.
type Config struct {
	// BaseURL is the API root; requests go to {baseURL}/v1/messages.
	// Default "https://api.anthropic.com"; absolute http(s).
	BaseURL string `yaml:"baseURL"`
	// APIKey is sent as the x-api-key header. Required. Never logged or
	// put into errors.
	APIKey string `yaml:"apiKey"`
	// Version is the anthropic-version header. Default "2023-06-01".
	Version string `yaml:"version"`
	// Timeout bounds a whole non-streaming request, reply body included.
	// Default 120s.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds opening a TCP connection. Default 5s.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// FirstTokenTimeout bounds a stream from sending the request to the
	// first text delta (reply headers included). Default 60s.
	FirstTokenTimeout time.Duration `yaml:"firstTokenTimeout"`
	// IdleTimeout bounds the silence between two events of a stream after
	// its first delta (Anthropic pings keep a quiet stream alive). Default
	// 60s.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConns caps open connections to the deployment; each open stream
	// holds one, and a request finding none free fails at once as
	// saturated. Default 512.
	MaxConns int `yaml:"maxConns"`
}

// SetDefaults fills every unset optional field.
func (c *Config) SetDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://api.anthropic.com"
	}
	if c.Version == "" {
		c.Version = "2023-06-01"
	}
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
}

// Validate reports every problem of a defaulted Config at once, each
// message starting with the field's YAML name.
func (c *Config) Validate() error {
	var errs []error
	if _, err := providers.ParseUpstreamURL(c.BaseURL); err != nil {
		errs = append(errs, errors.New("baseURL: "+err.Error()))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("apiKey: required"))
	}
	if c.Version == "" {
		errs = append(errs, errors.New("version: required"))
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
	return errors.Join(errs...)
}
