package openai

import (
	"errors"
	"net/url"

	"github.com/moonborn/edge/providers"
)

// Config is one OpenAI-compatible deployment (OpenAI itself, Azure-style
// proxies, vLLM and other servers speaking /chat/completions).
type Config struct {
	// HTTPConfig holds baseURL (required; the API root the paths hang
	// off, e.g. "https://api.openai.com/v1"), apiKey (required; sent as
	// "Authorization: Bearer <key>"), the timeouts and maxConns, at the
	// same YAML level as the fields below.
	providers.HTTPConfig `yaml:",inline"`
	// Organization, when set, is sent as the OpenAI-Organization header.
	Organization string `yaml:"organization"`
	// MaxTokensField names the output cap in the request body:
	// "max_tokens" (default; most compatible servers) or
	// "max_completion_tokens" (required by OpenAI's reasoning models).
	MaxTokensField string `yaml:"maxTokensField"`
	// PromptCacheKey says whether requests carry a prompt_cache_key (a
	// persona's, or the caller's own): "on", "off", or "auto" (default),
	// which sends it only to OpenAI itself (baseURL on api.openai.com):
	// some compatible servers refuse fields they do not know.
	PromptCacheKey string `yaml:"promptCacheKey"`
}

// sendsCacheKey resolves PromptCacheKey for a defaulted, valid Config.
func (c *Config) sendsCacheKey() bool {
	switch c.PromptCacheKey {
	case "on":
		return true
	case "off":
		return false
	}
	u, err := url.Parse(c.BaseURL)
	return err == nil && u.Hostname() == "api.openai.com"
}

// SetDefaults fills every unset optional field.
func (c *Config) SetDefaults() {
	c.HTTPConfig.SetDefaults()
	if c.MaxTokensField == "" {
		c.MaxTokensField = "max_tokens"
	}
	if c.PromptCacheKey == "" {
		c.PromptCacheKey = "auto"
	}
}

// Validate reports every problem of a defaulted Config at once, each
// message starting with the field's YAML name.
func (c *Config) Validate() error {
	errs := c.HTTPConfig.AppendProblems(nil)
	if c.MaxTokensField != "max_tokens" && c.MaxTokensField != "max_completion_tokens" {
		errs = append(errs, errors.New("maxTokensField: must be one of max_tokens, max_completion_tokens"))
	}
	if c.PromptCacheKey != "auto" && c.PromptCacheKey != "on" && c.PromptCacheKey != "off" {
		errs = append(errs, errors.New("promptCacheKey: must be one of auto, on, off"))
	}
	return errors.Join(errs...)
}
