package providers

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestHTTPConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  HTTPConfig
		want []string // substrings of the error, one per problem; none: valid
	}{
		{"defaults valid", HTTPConfig{BaseURL: "https://api.example.com/v1", APIKey: "k"}, nil},
		{"missing", HTTPConfig{}, []string{"baseURL: required", "apiKey: required"}},
		{"bad values", HTTPConfig{BaseURL: "ftp://x", APIKey: "k", Timeout: -1, ConnectTimeout: -1, FirstTokenTimeout: -1, IdleTimeout: -1, MaxConns: -1},
			[]string{"baseURL: must be an absolute http(s) URL", "timeout: must be positive", "connectTimeout: must be positive",
				"firstTokenTimeout: must be positive", "idleTimeout: must be positive", "maxConns: must be at least 1"}},
		{"query in url", HTTPConfig{BaseURL: "https://x/v1?a=b", APIKey: "k"}, []string{"baseURL: must not carry a query"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.SetDefaults()
			errs := c.cfg.AppendProblems(nil)
			if len(errs) != len(c.want) {
				t.Fatalf("problems %q, want %d", errs, len(c.want))
			}
			for i, w := range c.want {
				if !strings.HasPrefix(errs[i].Error(), w) {
					t.Errorf("problem %d = %q, want prefix %q", i, errs[i], w)
				}
			}
			if err := c.cfg.Validate(); (err == nil) != (len(c.want) == 0) {
				t.Fatalf("Validate() = %v, problems %q", err, errs)
			}
			if len(c.want) == 0 && (c.cfg.Timeout != 120*time.Second || c.cfg.ConnectTimeout != 5*time.Second ||
				c.cfg.FirstTokenTimeout != time.Minute || c.cfg.IdleTimeout != time.Minute || c.cfg.MaxConns != 512) {
				t.Fatalf("defaults = %+v", c.cfg)
			}
		})
	}
}

// TestHTTPConfigInlineYAML pins the YAML shape the protocol configs rely
// on: embedded inline, its keys sit beside the protocol's own.
func TestHTTPConfigInlineYAML(t *testing.T) {
	var cfg struct {
		HTTPConfig `yaml:",inline"`
		Version    string `yaml:"version"`
	}
	doc := "{baseURL: 'http://x', apiKey: k, version: v1, timeout: 3s, connectTimeout: 1s, firstTokenTimeout: 2s, idleTimeout: 4s, maxConns: 7}"
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := HTTPConfig{BaseURL: "http://x", APIKey: "k", Timeout: 3 * time.Second, ConnectTimeout: time.Second,
		FirstTokenTimeout: 2 * time.Second, IdleTimeout: 4 * time.Second, MaxConns: 7}
	if cfg.HTTPConfig != want || cfg.Version != "v1" {
		t.Fatalf("decoded %+v", cfg)
	}
}

func TestHTTPConfigNewUpstream(t *testing.T) {
	for _, base := range []string{"http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1/"} {
		c := HTTPConfig{BaseURL: base, APIKey: "k"}
		c.SetDefaults()
		h, err := c.NewUpstream("up", "/chat/completions")
		if err != nil {
			t.Fatal(err)
		}
		if h.url != "http://127.0.0.1:1/v1/chat/completions" {
			t.Errorf("base %q: endpoint %q", base, h.url)
		}
	}
}
