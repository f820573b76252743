package main

import (
	"time"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/anthropic"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/openai"
)

// Config is the whole config.yaml. config.yaml in the repository root is
// the commented reference for every field.
type Config struct {
	Server    ServerConfig      `yaml:"server"`
	Log       LogConfig         `yaml:"log"`
	Auth      policy.AuthConfig `yaml:"auth"`
	Personas  persona.Config    `yaml:"personas"`
	Providers []ProviderConfig  `yaml:"providers"`
	Models    []ModelConfig     `yaml:"models"`
	Ledger    ledger.Config     `yaml:"ledger"`
	// Limits are the token buckets and monthly quotas per workspace and
	// API key, kept in this process or in Redis for a fleet.
	Limits policy.LimitsConfig `yaml:"limits"`
	// RetryBudget bounds retries, failovers and hedges across all models
	// so an outage cannot multiply upstream load.
	RetryBudget providers.RetryBudgetConfig `yaml:"retryBudget"`
	// Tracing exports OpenTelemetry traces (tracing.go); off by default.
	Tracing TracingConfig `yaml:"tracing"`

	// personas is what loadPersonas read from the file source (items and
	// dir), personasErr what was wrong with it: read once per load, so
	// Validate reads no disk and the app serves what was validated.
	personas    []persona.Persona
	personasErr error
}

// ServerConfig is the listeners and their limits.
type ServerConfig struct {
	// Listen is the public API address; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// AdminListen is the admin address (/healthz, /readyz); default
	// 127.0.0.1:9090; "off" disables it.
	AdminListen string `yaml:"adminListen"`
	// AdminToken is the bearer token for /admin/* on the admin listener;
	// empty disables /admin/*. A secret: use ${VAR}.
	AdminToken string `yaml:"adminToken"`
	// Limits: maxBodyBytes, readTimeout, writeTimeout, idleTimeout,
	// streamWriteTimeout, pingInterval, requestTimeout, maxStreamDuration
	// (documented, and defaulted, on gateway.Limits).
	gateway.Limits `yaml:",inline"`
	// ShutdownTimeout is how long in-flight requests and streams may run
	// on after SIGTERM/SIGINT; default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
}

// LogConfig sets logging.
type LogConfig struct {
	// Level is debug, info, warn or error; default info.
	Level string `yaml:"level"`
	// Access writes one line per chat request at info level (request id,
	// workspace, persona, model, deployment, status, tokens, cost,
	// latency, overhead); default true.
	Access *bool `yaml:"access"`
}

func (l LogConfig) accessLog() bool { return l.Access == nil || *l.Access }

// ProviderConfig is one upstream. Exactly the block named by Type is used.
type ProviderConfig struct {
	// Name is how models refer to this provider; unique.
	Name string `yaml:"name"`
	// Type is the wire protocol: mock, openai or anthropic.
	Type      string            `yaml:"type"`
	Mock      *mock.Config      `yaml:"mock"`
	OpenAI    *openai.Config    `yaml:"openai"`
	Anthropic *anthropic.Config `yaml:"anthropic"`
}

// ModelConfig maps a public model id to its deployments and prices.
type ModelConfig struct {
	// ID is the public model id (modelId in requests); unique.
	ID string `yaml:"id"`
	// Provider names an entry of providers: the shorthand for a model
	// with a single deployment. Exactly one of provider and deployments.
	Provider string `yaml:"provider"`
	// UpstreamModel is the provider's model name; default ID.
	UpstreamModel string `yaml:"upstreamModel"`
	// Deployments serve the model from several providers, chosen by
	// pool.strategy, with failover (and optional hedging) between them.
	Deployments []DeploymentConfig `yaml:"deployments"`
	// Pool is how deployments are chosen and protected: strategy,
	// attempts, hedging, circuit breaker. A single deployment gets its
	// breaker too.
	Pool providers.PoolConfig `yaml:"pool"`
	// InputPricePerMTok and OutputPricePerMTok are USD per million tokens
	// (= micro-USD per token), up to 6 decimals; default 0.
	InputPricePerMTok  policy.Price `yaml:"inputPricePerMTok"`
	OutputPricePerMTok policy.Price `yaml:"outputPricePerMTok"`
	// CacheReadPricePerMTok prices input tokens read from the upstream's
	// prompt cache, CacheWritePricePerMTok and CacheWrite1hPricePerMTok
	// those written to it with the 5-minute and the 1-hour TTL. Omitted,
	// each derives from the input price (see defaultCachePrices); 0 is
	// free, not omitted.
	CacheReadPricePerMTok    *policy.Price `yaml:"cacheReadPricePerMTok"`
	CacheWritePricePerMTok   *policy.Price `yaml:"cacheWritePricePerMTok"`
	CacheWrite1hPricePerMTok *policy.Price `yaml:"cacheWrite1hPricePerMTok"`
	// PromptCache is how persona prompts are cached at the provider.
	PromptCache PromptCacheConfig `yaml:"promptCache"`
	// MaxOutputTokens is the largest maxOutputTokens a request may ask and
	// the cap when none is given; default 4096.
	MaxOutputTokens int `yaml:"maxOutputTokens"`
	// Temperature is the model's default, used when neither request nor
	// persona sets one; unset leaves it to the upstream.
	Temperature *float64 `yaml:"temperature"`
}

// PromptCacheConfig is a model's prompt-cache policy.
type PromptCacheConfig struct {
	// Mode is auto (mark persona prompts for Anthropic, send a
	// prompt_cache_key to OpenAI-compatible upstreams) or off; default auto.
	Mode string `yaml:"mode"`
	// TTL is the Anthropic breakpoint's: 5m or 1h; default 5m.
	TTL string `yaml:"ttl"`
	// MinTokens is the shortest persona prompt, in estimated tokens, that
	// gets an Anthropic breakpoint (a shorter prefix is not cached);
	// default 1024.
	MinTokens int `yaml:"minTokens"`
}

// DeploymentConfig is one upstream serving a model.
type DeploymentConfig struct {
	// Provider names an entry of providers. Required.
	Provider string `yaml:"provider"`
	// UpstreamModel is that provider's model name; default the model's
	// upstreamModel, else its id.
	UpstreamModel string `yaml:"upstreamModel"`
	// Weight is the share under the weighted strategy; default 1.
	Weight int `yaml:"weight"`
	// Priority orders deployments under the priority strategy, lower
	// first; default 0 (then list order).
	Priority int `yaml:"priority"`
}
