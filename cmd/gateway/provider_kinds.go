package main

import (
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/anthropic"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/openai"
)

// providerKind is one wire protocol a providers[] entry can name in
// type: how its block is found in the entry, defaulted, checked and
// built, and what the rest of the config needs to know of it. Every
// per-type decision reads this table; adding a protocol is one entry
// here and its block in ProviderConfig.
type providerKind struct {
	// present reports whether the entry has this kind's block.
	present func(pc *ProviderConfig) bool
	// required: the entry must have the block (mock's is optional).
	required bool
	// setDefaults fills the block's defaults, when present.
	setDefaults func(pc *ProviderConfig)
	// validate checks a present, defaulted block.
	validate func(pc *ProviderConfig) error
	// build makes the Provider.
	build func(pc *ProviderConfig) (providers.Provider, error)
	// http is the block's upstream HTTP settings; nil for an in-process kind.
	http func(pc *ProviderConfig) *providers.HTTPConfig
	// anthropicPricing: cache prices default to Anthropic's multipliers
	// (see modelPrices).
	anthropicPricing bool
}

// providerKindNames lists the kinds in the order error messages name them.
var providerKindNames = []string{"mock", "openai", "anthropic"}

var providerKinds = map[string]providerKind{
	"mock": {
		present:     func(pc *ProviderConfig) bool { return pc.Mock != nil },
		setDefaults: func(pc *ProviderConfig) { pc.Mock.SetDefaults() },
		validate:    func(pc *ProviderConfig) error { return pc.Mock.Validate() },
		build: func(pc *ProviderConfig) (providers.Provider, error) {
			mc := mock.Config{}
			if pc.Mock != nil {
				mc = *pc.Mock
			}
			mc.SetDefaults()
			return mock.New(pc.Name, mc), nil
		},
	},
	"openai": {
		present:     func(pc *ProviderConfig) bool { return pc.OpenAI != nil },
		required:    true,
		setDefaults: func(pc *ProviderConfig) { pc.OpenAI.SetDefaults() },
		validate:    func(pc *ProviderConfig) error { return pc.OpenAI.Validate() },
		build:       func(pc *ProviderConfig) (providers.Provider, error) { return openai.New(pc.Name, *pc.OpenAI) },
		http:        func(pc *ProviderConfig) *providers.HTTPConfig { return &pc.OpenAI.HTTPConfig },
	},
	"anthropic": {
		present:          func(pc *ProviderConfig) bool { return pc.Anthropic != nil },
		required:         true,
		setDefaults:      func(pc *ProviderConfig) { pc.Anthropic.SetDefaults() },
		validate:         func(pc *ProviderConfig) error { return pc.Anthropic.Validate() },
		build:            func(pc *ProviderConfig) (providers.Provider, error) { return anthropic.New(pc.Name, *pc.Anthropic) },
		http:             func(pc *ProviderConfig) *providers.HTTPConfig { return &pc.Anthropic.HTTPConfig },
		anthropicPricing: true,
	},
}

// httpConfig returns the entry's upstream HTTP settings: nil for an
// in-process kind, or an entry whose block is missing.
func (pc *ProviderConfig) httpConfig() *providers.HTTPConfig {
	k, ok := providerKinds[pc.Type]
	if !ok || k.http == nil || !k.present(pc) {
		return nil
	}
	return k.http(pc)
}
