package providertest

import (
	"strings"
	"testing"
)

// ConfigCase is a protocol's config before SetDefaults, and the problems
// Validate must name; none wants it valid.
type ConfigCase[C any] struct {
	// Name names the subtest.
	Name string
	// Cfg is the config before SetDefaults.
	Cfg C
	// Want lists the problems Validate must name; empty wants none.
	Want []string
}

// Configs runs SetDefaults and Validate on each case: a valid config
// must then hold the defaults (isDefault; nil checks none), an invalid
// one an error naming every problem wanted.
func Configs[C any, P interface {
	*C
	SetDefaults()
	Validate() error
}](t *testing.T, cases []ConfigCase[C], isDefault func(c *C) bool) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg := P(&c.Cfg)
			cfg.SetDefaults()
			err := cfg.Validate()
			if len(c.Want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if isDefault != nil && !isDefault(&c.Cfg) {
					t.Fatalf("defaults = %+v", c.Cfg)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
