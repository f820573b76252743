package providers

import (
	"errors"
	"strings"
	"time"
)

// HTTPConfig is the connection part every HTTP wire-protocol deployment
// shares. The protocol packages embed it in their Config with
// `yaml:",inline"`, so its keys sit next to the protocol's own (baseURL,
// apiKey, timeout, ... at one level), and call SetDefaults and Validate
// from theirs. The zero value is valid once BaseURL and APIKey are set and
// SetDefaults has run.
type HTTPConfig struct {
	// BaseURL is the API root the protocol's endpoint path hangs off
	// (OpenAI: "https://api.openai.com/v1"; Anthropic: requests go to
	// {baseURL}/v1/messages). Absolute http(s), without credentials, query
	// or fragment. Required; a protocol may default it before calling
	// SetDefaults (Anthropic does).
	BaseURL string `yaml:"baseURL"`
	// APIKey authenticates the gateway to the upstream, in the header the
	// protocol defines. Required. Never logged or put into errors.
	APIKey string `yaml:"apiKey"`
	// Timeout bounds a whole non-streaming request, reply body included.
	// Default 120s; must be positive.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds opening a TCP connection. Default 5s; must be
	// positive.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// FirstTokenTimeout bounds a stream from sending the request to the
	// first text delta (reply headers included). Default 60s; must be
	// positive.
	FirstTokenTimeout time.Duration `yaml:"firstTokenTimeout"`
	// IdleTimeout bounds the silence between two events of a stream after
	// its first delta (upstream keep-alive pings count as events). Default
	// 60s; must be positive.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConns caps open connections to the deployment; each open stream
	// holds one. A request finding none free waits in the deployment's
	// queue for one (see MaxQueue). Default 512; at least 1.
	MaxConns int `yaml:"maxConns"`
	// MaxQueue is how many requests may wait for a free connection while
	// all MaxConns are busy, each for at most its own deadline (the
	// attempt's timeout or first-token timeout, and the request's).
	// Beyond it the deployment counts as saturated: the pool fails over,
	// or answers 503 saying so. Saturation is never a breaker failure.
	// Default 1024; at least 1.
	MaxQueue int `yaml:"maxQueue"`
}

// SetDefaults fills every unset optional field (all but BaseURL and
// APIKey).
func (c *HTTPConfig) SetDefaults() {
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
	if c.MaxQueue == 0 {
		c.MaxQueue = 1024
	}
}

// Validate reports every problem of a defaulted HTTPConfig at once, each
// message starting with the field's YAML name.
func (c *HTTPConfig) Validate() error { return errors.Join(c.AppendProblems(nil)...) }

// AppendProblems appends one error per problem Validate reports, so a
// protocol's Config can join them with its own into one flat list (the
// config loader prefixes each entry of a joined error with its path, one
// level deep).
func (c *HTTPConfig) AppendProblems(errs []error) []error {
	if c.BaseURL == "" {
		errs = append(errs, errors.New("baseURL: required"))
	} else if _, err := ParseUpstreamURL(c.BaseURL); err != nil {
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
	if c.MaxQueue < 1 {
		errs = append(errs, errors.New("maxQueue: must be at least 1"))
	}
	return errs
}

// NewUpstream builds the client for a validated c, posting to path under
// BaseURL (a trailing slash on BaseURL is dropped, so "/v1/" and "/v1"
// lead to the same endpoint). name labels errors.
func (c *HTTPConfig) NewUpstream(name, path string) (*UpstreamHTTP, error) {
	return NewUpstreamHTTP(name, strings.TrimRight(c.BaseURL, "/")+path, UpstreamOptions{
		Timeout:           c.Timeout,
		ConnectTimeout:    c.ConnectTimeout,
		FirstTokenTimeout: c.FirstTokenTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxConns:          c.MaxConns,
		MaxQueue:          c.MaxQueue,
	})
}

// UpstreamConfig is a wire protocol's deployment Config as
// ConfiguredUpstream takes it: its defaults, its checks, and the
// HTTPConfig it embeds.
type UpstreamConfig interface {
	SetDefaults()
	Validate() error
	NewUpstream(name, path string) (*UpstreamHTTP, error)
}

// ConfiguredUpstream is the start of a wire protocol's New: it applies
// cfg's defaults (in place: pass a copy), validates it and builds the
// client posting to path under cfg's base URL for the deployment name.
func ConfiguredUpstream(name, path string, cfg UpstreamConfig) (*UpstreamHTTP, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg.NewUpstream(name, path)
}
