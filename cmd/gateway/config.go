package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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

	// personas is what loadPersonas read from the file source (items and
	// dir), personasErr what was wrong with it: read once per load, so
	// Validate reads no disk and the app serves what was validated.
	personas    []persona.Persona
	personasErr error
}

// loadPersonas reads the file source's personas (inline items and the
// dir's files) into c; a no-op for another source. ParseConfig calls it
// after SetDefaults.
func (c *Config) loadPersonas() {
	c.personas, c.personasErr = nil, nil
	if c.Personas.Source == "file" {
		c.personas, c.personasErr = c.Personas.LoadFilePersonas()
	}
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

// problems collects validation errors, each prefixed with its path.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
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
		if pc.Name == "" {
			p.add(path+".name", "is required")
		} else if providerNames[pc.Name] {
			p.add(path+".name", "duplicate provider %q", pc.Name)
		}
		providerNames[pc.Name] = true
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
		if m.ID == "" {
			p.add(path+".id", "is required")
		} else if modelIDs[m.ID] {
			p.add(path+".id", "duplicate model %q", m.ID)
		}
		modelIDs[m.ID] = true
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

// LoadConfig reads, expands, strictly decodes, defaults and validates a
// config file, reporting every problem at once.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in scalar values (never in
// keys, and after YAML parsing, so a secret's characters cannot change the
// document's structure). An unset variable without default is an error.
func expandEnv(p *problems, n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if v, ok := os.LookupEnv(m[1]); ok {
				return v
			}
			if m[2] != "" {
				return m[3]
			}
			p.add(strings.TrimPrefix(path, "."), "environment variable %s is not set (line %d)", m[1], n.Line)
			return ""
		})
		if n.Style != 0 { // quoted or explicitly tagged: stays what it says
			return
		}
		// An expanded plain scalar is resolved again as YAML would
		// (numbers, booleans), so ${PORT} can fill an int field.
		n.Tag = ""
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expandEnv(p, n.Content[i+1], path+"."+n.Content[i].Value)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(p, c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.DocumentNode, yaml.AliasNode:
		for _, c := range n.Content {
			expandEnv(p, c, path)
		}
	}
}

// yamlFields maps the YAML keys of struct t to their types, descending
// into `yaml:",inline"` fields as the decoder does.
func yamlFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && strings.Contains(opts, "inline") && ft.Kind() == reflect.Struct {
			yamlFields(ft, into)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		into[name] = f.Type
	}
}
