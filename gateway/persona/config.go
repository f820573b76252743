package persona

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Source kinds accepted in Config.Source.
const (
	// SourceFile serves the personas of Config.Items and Config.Dir.
	SourceFile = "file"
	// SourceHTTP fetches personas from Config.HTTP.BaseURL.
	SourceHTTP = "http"
)

// Defaults applied by SetDefaults.
const (
	// DefaultCacheTTL is Config.CacheTTL when unset.
	DefaultCacheTTL = 60 * time.Second
	// DefaultNegativeTTL is Config.NegativeTTL when unset.
	DefaultNegativeTTL = 5 * time.Second
	// DefaultStaleTTL is Config.StaleTTL when absent.
	DefaultStaleTTL = 10 * time.Minute
	// DefaultCacheMaxItems is Config.CacheMaxItems when unset.
	DefaultCacheMaxItems = 10000
	// DefaultHTTPTimeout is HTTPConfig.Timeout when unset.
	DefaultHTTPTimeout = 2 * time.Second
)

// idPrefix starts every public persona id.
const idPrefix = "psn_"

// Limits of a persona id, prefix included.
const (
	minIDLen = 5
	maxIDLen = 128
)

// maxTemperature is the upper bound of a persona's default temperature.
const maxTemperature = 2

// Config is the `personas:` section. The zero value plus SetDefaults is a
// file source with no personas.
type Config struct {
	// Source is where personas come from: "file" (Items and Dir) or "http"
	// (an origin, for fleets). Default "file".
	Source string `yaml:"source"`
	// CacheTTL is how long a fetched persona is served without asking the
	// origin again. Default 60s; must be > 0.
	CacheTTL time.Duration `yaml:"cacheTTL"`
	// NegativeTTL is how long an origin "not found" is remembered, so a
	// client hammering a bad id costs one origin call per NegativeTTL.
	// Default 5s; must be > 0.
	NegativeTTL time.Duration `yaml:"negativeTTL"`
	// StaleTTL is how long past CacheTTL a persona may still be served
	// while the origin is failing. A pointer so that an explicit 0 ("never
	// serve stale", written "0s": YAML durations need a unit) differs
	// from absent (default 10m); must be ≥ 0.
	StaleTTL *time.Duration `yaml:"staleTTL"`
	// CacheMaxItems bounds the number of cached ids (personas and
	// not-found answers alike). Default 10000; must be > 0.
	CacheMaxItems int `yaml:"cacheMaxItems"`
	// Dir is an optional directory of *.yaml / *.yml files, each holding
	// one persona or a list of them (file source only). Read at load time.
	Dir string `yaml:"dir"`
	// HTTP configures the origin (http source only).
	HTTP HTTPConfig `yaml:"http"`
	// Items are personas given inline (file source only).
	Items []Persona `yaml:"items"`
}

// HTTPConfig configures the HTTP origin: GET {BaseURL}/personas/{id}
// answers a JSON Persona, or 404.
type HTTPConfig struct {
	// BaseURL is an absolute http(s) URL without query or fragment;
	// required when the source is http.
	BaseURL string `yaml:"baseURL"`
	// Timeout bounds one origin call, connection to last body byte.
	// Default 2s; must be > 0.
	Timeout time.Duration `yaml:"timeout"`
	// BearerToken, when set, is sent as "Authorization: Bearer …". It is a
	// secret: it never appears in errors or logs.
	BearerToken string `yaml:"bearerToken"`
}

// SetDefaults fills the zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Source == "" {
		c.Source = SourceFile
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.StaleTTL == nil {
		d := DefaultStaleTTL
		c.StaleTTL = &d
	}
	if c.CacheMaxItems == 0 {
		c.CacheMaxItems = DefaultCacheMaxItems
	}
	c.HTTP.SetDefaults()
}

// SetDefaults fills the zero fields with their documented defaults.
func (c *HTTPConfig) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultHTTPTimeout
	}
}

// staleTTL is StaleTTL with nil read as the default.
func (c *Config) staleTTL() time.Duration {
	if c.StaleTTL == nil {
		return DefaultStaleTTL
	}
	return *c.StaleTTL
}

// Validate reports every problem at once, each message starting with the
// field's path in this section. For the file source it also reads Dir, so
// that bad or duplicate personas there are found at startup.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.CacheTTL <= 0 {
		add("cacheTTL: must be > 0")
	}
	if c.NegativeTTL <= 0 {
		add("negativeTTL: must be > 0")
	}
	if c.StaleTTL != nil && *c.StaleTTL < 0 {
		add("staleTTL: must be ≥ 0")
	}
	if c.CacheMaxItems <= 0 {
		add("cacheMaxItems: must be > 0")
	}
	switch c.Source {
	case SourceFile:
		_, err := c.LoadFilePersonas()
		if err != nil {
			errs = append(errs, err)
		}
	case SourceHTTP:
		if err := c.HTTP.Validate(); err != nil {
			errs = append(errs, prefixErrors("http.", err)...)
		}
		if len(c.Items) > 0 {
			add("items: only used by the file source (source is http)")
		}
		if c.Dir != "" {
			add("dir: only used by the file source (source is http)")
		}
	default:
		add("source: must be one of file, http (got %q)", c.Source)
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the origin settings at once.
func (c *HTTPConfig) Validate() error {
	var errs []error
	if err := checkBaseURL(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("baseURL: %w", err))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be > 0"))
	}
	return errors.Join(errs...)
}

// checkBaseURL accepts an absolute http(s) URL onto which
// "/personas/{id}" can be appended.
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if s == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.Contains(s, "#") {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// prefixErrors splits a joined error and puts prefix before each message.
func prefixErrors(prefix string, err error) []error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = fmt.Errorf("%s%w", prefix, e)
	}
	return out
}

// LoadFilePersonas returns the personas of the file source: Items, then
// those of Dir's *.yaml / *.yml files in name order. Every problem is
// reported at once, naming the item or the file and entry; duplicate ids
// across items and files are errors. The lead's loader uses the result to
// cross-check defaultModel and allowedModels against the configured models.
func (c *Config) LoadFilePersonas() ([]Persona, error) {
	var errs []error
	seen := make(map[string]string) // id → label of its first definition
	out := make([]Persona, 0, len(c.Items))
	// accept checks p; prefix starts its field errors, label names it in a
	// duplicate report.
	accept := func(prefix, label string, p Persona) {
		bad := checkPersona(&p)
		for _, e := range bad {
			errs = append(errs, fmt.Errorf("%s%w", prefix, e))
		}
		if ValidID(p.ID) {
			if first, dup := seen[p.ID]; dup {
				errs = append(errs, fmt.Errorf("%sid: duplicate id %q (also %s)", prefix, p.ID, first))
				return
			}
			seen[p.ID] = label
		}
		if len(bad) == 0 {
			out = append(out, p)
		}
	}
	for i, p := range c.Items {
		label := fmt.Sprintf("items[%d]", i)
		accept(label+".", label, p)
	}
	if c.Dir != "" {
		files, err := personaFiles(c.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("dir: %w", err))
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("dir: %w", err))
				continue
			}
			list, single, err := decodeFile(data)
			if err != nil {
				errs = append(errs, fmt.Errorf("dir: %s: %w", f, err))
				continue
			}
			for i, p := range list {
				if single {
					accept(fmt.Sprintf("dir: %s: ", f), f, p)
					continue
				}
				label := fmt.Sprintf("%s[%d]", f, i)
				accept(fmt.Sprintf("dir: %s: [%d].", f, i), label, p)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// personaFiles lists dir's *.yaml and *.yml files in name order.
func personaFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	sort.Strings(files)
	return files, nil
}

// decodeFile strictly decodes one persona file: a single YAML document
// holding either one persona (single is true) or a list of personas.
// Unknown fields are errors; an empty file holds no persona. It does not
// validate the personas (LoadFilePersonas does).
func decodeFile(data []byte) (list []Persona, single bool, err error) {
	// First pass: only the shape of the document, to pick the target type.
	var node yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&node); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		return nil, false, err
	}
	if node.Kind != yaml.DocumentNode || len(node.Content) != 1 {
		return nil, false, errors.New("must hold one persona or a list of personas")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch node.Content[0].Kind {
	case yaml.MappingNode:
		var p Persona
		if err := dec.Decode(&p); err != nil {
			return nil, false, err
		}
		list, single = []Persona{p}, true
	case yaml.SequenceNode:
		if err := dec.Decode(&list); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, errors.New("must hold one persona or a list of personas")
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("must hold a single YAML document")
	}
	return list, single, nil
}

// ValidID reports whether id has the shape of a persona id: "psn_"
// followed by ASCII letters, digits, '_' or '-', 5 to 128 bytes in all.
// The resolver answers "not found" for anything else without asking the
// origin, so junk ids cost nothing.
func ValidID(id string) bool {
	if len(id) < minIDLen || len(id) > maxIDLen || id[:len(idPrefix)] != idPrefix {
		return false
	}
	for i := len(idPrefix); i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkPersona returns one error per problem of p, each starting with the
// field's name.
func checkPersona(p *Persona) []error {
	var errs []error
	switch {
	case !strings.HasPrefix(p.ID, idPrefix):
		errs = append(errs, fmt.Errorf("id: must start with %q", idPrefix))
	case !ValidID(p.ID):
		errs = append(errs, fmt.Errorf("id: must be %d–%d characters of A–Z, a–z, 0–9, '_' and '-'", minIDLen, maxIDLen))
	}
	if p.Workspace == "" {
		errs = append(errs, errors.New("workspace: required"))
	}
	if t := p.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > maxTemperature) {
		errs = append(errs, fmt.Errorf("temperature: must be between 0 and %d", maxTemperature))
	}
	if p.MaxOutputTokens < 0 {
		errs = append(errs, errors.New("maxOutputTokens: must be ≥ 0"))
	}
	for i, m := range p.AllowedModels {
		if m == "" {
			errs = append(errs, fmt.Errorf("allowedModels[%d]: must not be empty", i))
		}
	}
	if p.PromptCache != "" && p.PromptCache != "auto" && p.PromptCache != "off" {
		errs = append(errs, errors.New("promptCache: must be auto or off"))
	}
	if p.PromptCacheTTL != "" && p.PromptCacheTTL != "5m" && p.PromptCacheTTL != "1h" {
		errs = append(errs, errors.New("promptCacheTtl: must be 5m or 1h"))
	}
	if p.DefaultModel != "" && len(p.AllowedModels) > 0 && !slices.Contains(p.AllowedModels, p.DefaultModel) {
		errs = append(errs, errors.New("defaultModel: must be one of allowedModels"))
	}
	return errs
}
