package anthropic

import (
	"errors"

	"github.com/moonborn/edge/providers"
)

// Config is one deployment speaking Anthropic's Messages API.
type Config struct {
	// HTTPConfig holds baseURL (the API root; requests go to
	// {baseURL}/v1/messages; default "https://api.anthropic.com"), apiKey
	// (required; sent as the x-api-key header), the timeouts and maxConns,
	// at the same YAML level as the fields below.
	providers.HTTPConfig `yaml:",inline"`
	// Version is the anthropic-version header. Default "2023-06-01".
	Version string `yaml:"version"`
}

// SetDefaults fills every unset optional field.
func (c *Config) SetDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://api.anthropic.com"
	}
	if c.Version == "" {
		c.Version = "2023-06-01"
	}
	c.HTTPConfig.SetDefaults()
}

// Validate reports every problem of a defaulted Config at once, each
// message starting with the field's YAML name.
func (c *Config) Validate() error {
	errs := c.HTTPConfig.AppendProblems(nil)
	if c.Version == "" {
		errs = append(errs, errors.New("version: required"))
	}
	return errors.Join(errs...)
}
