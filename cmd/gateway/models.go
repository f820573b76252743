package main

// Building the models: one upstream client per provider, one pool per
// model, reused across reloads where the config did not change; a
// model's prices and prompt-cache policy.

import (
	"fmt"
	"reflect"
	"time"

	"github.com/moonborn/edge/gateway"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
	"go.opentelemetry.io/otel/trace"
)

// buildModels makes one upstream client per providers[] entry that a
// model uses, and one Pool per model over its deployments, all sharing
// one retry budget.
func buildModels(cfg *Config) (map[string]*gateway.Model, []*providers.Pool, error) {
	set, err := buildModelSet(cfg, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return set.models, set.pools, nil
}

// modelSet is what buildModelSet made, kept so a reload can reuse the
// parts whose config did not change.
type modelSet struct {
	models map[string]*gateway.Model
	pools  []*providers.Pool
	budget *providers.RetryBudget
	// built are the upstream clients by provider name, with the config
	// they were made from.
	built map[string]builtProvider
	// byModel are the pools by model id, with what they were made from.
	byModel map[string]builtPool
	// tracer is given to every new pool for attempt spans; nil: none.
	tracer trace.Tracer
}

type builtProvider struct {
	cfg ProviderConfig
	p   providers.Provider
}

type builtPool struct {
	deployments []DeploymentConfig
	pool        providers.PoolConfig
	providers   []ProviderConfig
	p           *providers.Pool
}

// buildModelSet builds the models of cfg. With prev (a reload), an
// upstream client whose provider config is unchanged is reused (its
// connections stay), and so is a pool whose model deployments, pool
// settings and providers are all unchanged: its breakers, statistics and
// in-flight counts carry over. Prices, output caps and temperatures are
// per-request values, so they change without touching the pool. The
// retry budget is prev's (retryBudget needs a restart), and so is the
// tracer (tracing needs a restart too).
func buildModelSet(cfg *Config, prev *modelSet, tracer trace.Tracer) (*modelSet, error) {
	set := &modelSet{models: map[string]*gateway.Model{}, built: map[string]builtProvider{}, byModel: map[string]builtPool{}, tracer: tracer}
	if prev != nil {
		set.tracer, set.budget = prev.tracer, prev.budget
	} else {
		b, err := providers.NewRetryBudget(cfg.RetryBudget)
		if err != nil {
			return nil, fmt.Errorf("retryBudget: %w", err)
		}
		set.budget = b
	}
	b := &setBuilder{set: set, prev: prev, byName: map[string]ProviderConfig{}}
	for _, pc := range cfg.Providers {
		b.byName[pc.Name] = pc
	}
	for _, mc := range cfg.Models {
		if err := b.addModel(mc); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// setBuilder is one buildModelSet call in progress: the set it fills, the
// set a reload replaces (nil at start) and the providers by name.
type setBuilder struct {
	set, prev *modelSet
	byName    map[string]ProviderConfig
}

// provider returns the upstream client of the providers[] entry name,
// made once per set, or prev's when its config is unchanged.
func (b *setBuilder) provider(name string) (providers.Provider, error) {
	if bp, ok := b.set.built[name]; ok {
		return bp.p, nil
	}
	pc := b.byName[name]
	if b.prev != nil {
		if bp, ok := b.prev.built[name]; ok && reflect.DeepEqual(bp.cfg, pc) {
			b.set.built[name] = bp
			return bp.p, nil
		}
	}
	p, err := buildProvider(pc)
	if err != nil {
		return nil, fmt.Errorf("providers[%s]: %w", name, err)
	}
	b.set.built[name] = builtProvider{cfg: pc, p: p}
	return p, nil
}

// addModel adds mc's pool (reused or new) and its gateway.Model.
func (b *setBuilder) addModel(mc ModelConfig) error {
	used := make([]ProviderConfig, 0, len(mc.Deployments))
	for _, d := range mc.Deployments {
		used = append(used, b.byName[d.Provider])
	}
	pool, err := b.reusedPool(mc, used)
	if err == nil && pool == nil {
		pool, err = b.newPool(mc)
	}
	if err != nil {
		return err
	}
	set := b.set
	set.byModel[mc.ID] = builtPool{deployments: mc.Deployments, pool: mc.Pool, providers: used, p: pool}
	set.pools = append(set.pools, pool)
	set.models[mc.ID] = &gateway.Model{
		ID:              mc.ID,
		ProviderName:    deploymentName(mc, mc.Deployments[0]),
		Provider:        pool,
		UpstreamModel:   mc.UpstreamModel,
		Prices:          modelPrices(mc, b.byName),
		PromptCache:     promptCache(mc.PromptCache),
		MaxOutputTokens: mc.MaxOutputTokens,
		Temperature:     mc.Temperature,
	}
	return nil
}

// reusedPool is prev's pool for mc when its deployments, pool settings
// and providers (used) are all unchanged, nil otherwise.
func (b *setBuilder) reusedPool(mc ModelConfig, used []ProviderConfig) (*providers.Pool, error) {
	if b.prev == nil {
		return nil, nil
	}
	bp, ok := b.prev.byModel[mc.ID]
	if !ok || !reflect.DeepEqual(bp.deployments, mc.Deployments) ||
		!reflect.DeepEqual(bp.pool, mc.Pool) || !reflect.DeepEqual(bp.providers, used) {
		return nil, nil
	}
	for _, d := range mc.Deployments {
		if _, err := b.provider(d.Provider); err != nil { // keeps the client in the new set
			return nil, err
		}
	}
	return bp.p, nil
}

// newPool makes mc's pool over its deployments, carrying over the
// breaker state of deployments that are the same upstream as before.
func (b *setBuilder) newPool(mc ModelConfig) (*providers.Pool, error) {
	specs := make([]providers.DeploymentSpec, 0, len(mc.Deployments))
	for _, d := range mc.Deployments {
		p, err := b.provider(d.Provider)
		if err != nil {
			return nil, err
		}
		conns, queue := connLimits(b.byName[d.Provider])
		name := deploymentName(mc, d)
		specs = append(specs, providers.DeploymentSpec{Name: name, Provider: p, Model: d.UpstreamModel,
			Weight: d.Weight, Priority: d.Priority, MaxInFlight: conns + queue, MaxConns: conns, System: b.byName[d.Provider].Type,
			Carry: b.prev.carry(mc.ID, name, p, d.UpstreamModel, mc.Pool.Breaker)})
	}
	pool, err := providers.NewPool(mc.ID, specs, mc.Pool, b.set.budget, time.Now)
	if err != nil {
		return nil, fmt.Errorf("models[%s]: %w", mc.ID, err)
	}
	pool.Tracer = b.set.tracer
	return pool, nil
}

// carry finds, in the set a reload replaces, the deployment of model id
// named name when it is the same upstream (the same client, so the same
// provider config, and the same upstream model) under the same breaker
// settings, so the new pool keeps its breaker state. Nil when there is
// none (or no previous set).
func (prev *modelSet) carry(id, name string, p providers.Provider, upstreamModel string, br providers.BreakerConfig) *providers.Deployment {
	if prev == nil {
		return nil
	}
	b, ok := prev.byModel[id]
	if !ok || !reflect.DeepEqual(b.pool.Breaker, br) {
		return nil
	}
	for _, d := range b.p.Deployments() {
		if d.Name() == name && d.Provider() == p && d.Model() == upstreamModel {
			return d
		}
	}
	return nil
}

// deploymentName is the provider's name, or provider/upstreamModel when
// the model uses one provider for several upstream models.
func deploymentName(mc ModelConfig, d DeploymentConfig) string {
	for _, other := range mc.Deployments {
		if other.Provider == d.Provider && other.UpstreamModel != d.UpstreamModel {
			return d.Provider + "/" + d.UpstreamModel
		}
	}
	return d.Provider
}

// connLimits is a provider's connection cap and queue size: a deployment
// with conns+queue attempts in flight is saturated, skipped rather than
// failed; the ones beyond conns wait for a connection. Zero for the
// in-process mock (no limit).
func connLimits(pc ProviderConfig) (conns, queue int) {
	if h := pc.httpConfig(); h != nil {
		return h.MaxConns, h.MaxQueue
	}
	return 0, 0
}

// buildProvider makes the Provider for one providers[] entry.
func buildProvider(pc ProviderConfig) (providers.Provider, error) {
	k, ok := providerKinds[pc.Type]
	if !ok {
		return nil, fmt.Errorf("unknown provider type %q", pc.Type)
	}
	return k.build(&pc)
}

// modelPrices returns mc's prices, the cache prices it omits derived
// from its input price by the protocol its deployments speak:
//
//   - every deployment Anthropic: cache reads 0.1×, 5-minute writes 1.25×,
//     1-hour writes 2× — Anthropic's published multipliers, the same for
//     every Claude model;
//   - otherwise: cache reads 0.5×, OpenAI's discount for its GPT-4o
//     family and the smallest it publishes, so the default never bills
//     less than the invoice (GPT-4.1 reads cost 0.25×, GPT-5 0.1×: set
//     cacheReadPricePerMTok for those); writes as Anthropic's, which is
//     what an Anthropic deployment in a mixed pool charges (OpenAI reports
//     no writes).
//
// Derived prices round half up at the 6th decimal.
func modelPrices(mc ModelConfig, byName map[string]ProviderConfig) policy.Prices {
	in := mc.InputPricePerMTok
	allAnthropic := len(mc.Deployments) > 0
	for _, d := range mc.Deployments {
		allAnthropic = allAnthropic && providerKinds[byName[d.Provider].Type].anthropicPricing
	}
	p := policy.Prices{Input: in, Output: mc.OutputPricePerMTok,
		CacheRead: in.Scale(1, 2), CacheWrite5m: in.Scale(5, 4), CacheWrite1h: in.Scale(2, 1)}
	if allAnthropic {
		p.CacheRead = in.Scale(1, 10)
	}
	for _, o := range []struct {
		set *policy.Price
		dst *policy.Price
	}{{mc.CacheReadPricePerMTok, &p.CacheRead}, {mc.CacheWritePricePerMTok, &p.CacheWrite5m}, {mc.CacheWrite1hPricePerMTok, &p.CacheWrite1h}} {
		if o.set != nil {
			*o.dst = *o.set
		}
	}
	return p
}

// promptCache converts a validated promptCache section.
func promptCache(c PromptCacheConfig) gateway.PromptCache {
	pc := gateway.PromptCache{Off: c.Mode == "off", TTL: providers.Cache5m, MinTokens: int64(c.MinTokens)}
	if c.TTL == "1h" {
		pc.TTL = providers.Cache1h
	}
	return pc
}
