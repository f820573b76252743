package policy

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Limit backends and Redis failure modes, the values of LimitsConfig.Backend
// and LimitsConfig.OnRedisDown.
const (
	BackendLocal = "local"
	BackendRedis = "redis"

	FailClosed = "fail-closed"
	FailOpen   = "fail-open"
)

// MaxLimit bounds every rate, burst and quota figure. Buckets count in
// 1/60000 of a token so that a per-minute rate refills an exact integer per
// millisecond; MaxLimit×60000 stays below 2^53, which keeps the Redis Lua
// arithmetic (doubles) exact and identical to the Go arithmetic.
const MaxLimit = 10_000_000_000

// LimitsConfig is the `limits` section: token buckets per workspace and per
// credential, monthly quotas per workspace, and where their state lives.
// The zero value (after SetDefaults) limits nothing and keeps state in
// process memory.
type LimitsConfig struct {
	// Backend is where bucket and quota state lives: "local" (this process
	// only; N replicas enforce N times the limits) or "redis" (shared by
	// every replica pointing at the same Redis). Default "local".
	Backend string `yaml:"backend"`
	// OnRedisDown is what Admit does when Redis cannot be reached:
	// "fail-closed" returns an error wrapping ErrLimiterUnavailable (the
	// gateway answers 503) and "fail-open" admits against in-process
	// buckets with the same limits (each replica then enforces the full
	// limit on its own). Default "fail-closed". Only used with backend redis.
	OnRedisDown string `yaml:"onRedisDown"`
	// Redis is the connection, used when Backend is "redis".
	Redis RedisConfig `yaml:"redis"`
	// Default applies to every workspace that Workspaces does not list.
	// Its id must be empty and it takes no keys list. Zero limits nothing.
	Default WorkspaceLimits `yaml:"default"`
	// Workspaces lists workspaces with their own limits; a listed
	// workspace does not inherit anything from Default. Ids are unique.
	Workspaces []WorkspaceLimits `yaml:"workspaces"`
}

// RateLimits is a pair of token buckets: one counting requests, one
// counting LLM tokens. A zero rate means that dimension is unlimited.
type RateLimits struct {
	// RequestsPerMinute is the request refill rate. 0 = unlimited.
	// At most MaxLimit.
	RequestsPerMinute int64 `yaml:"requestsPerMinute" json:"requestsPerMinute"`
	// RequestBurst is the request bucket's capacity: how many requests may
	// arrive at once after an idle period. Default RequestsPerMinute (a
	// full minute's worth); must be 0 when RequestsPerMinute is 0.
	RequestBurst int64 `yaml:"requestBurst" json:"requestBurst"`
	// TokensPerMinute is the token refill rate and also the token bucket's
	// capacity. A request reserves its input estimate plus its output cap,
	// at most this many. 0 = unlimited. At most MaxLimit.
	TokensPerMinute int64 `yaml:"tokensPerMinute" json:"tokensPerMinute"`
}

// WorkspaceLimits are the limits of one workspace: a workspace-wide pair of
// buckets, a pair per credential, and a monthly quota.
type WorkspaceLimits struct {
	// ID is the workspace id. Required and unique in Workspaces; empty in
	// Default.
	ID string `yaml:"id"`
	// RateLimits are shared by every credential of the workspace.
	RateLimits `yaml:",inline"`
	// MonthlyBudgetUsdMicros is the spend allowed per calendar month
	// (UTC), in millionths of a US dollar. Once the month's spend reaches
	// it, requests are refused until the next month. 0 = no budget.
	MonthlyBudgetUsdMicros int64 `yaml:"monthlyBudgetUsdMicros"`
	// MonthlyTokens is the number of LLM tokens (input + output) allowed
	// per calendar month (UTC). 0 = no token quota.
	MonthlyTokens int64 `yaml:"monthlyTokens"`
	// PerKey applies to each credential (API key id or JWT subject) of the
	// workspace that Keys does not list, on top of the workspace buckets.
	// Zero = no per-credential buckets.
	PerKey RateLimits `yaml:"perKey"`
	// Keys override PerKey for single credentials. An entry replaces
	// PerKey entirely (a zero field there means unlimited). Credential ids
	// are unique within the workspace.
	Keys []KeyLimits `yaml:"keys"`
}

// KeyLimits are the buckets of one credential, checked together with its
// workspace's buckets.
type KeyLimits struct {
	// CredentialID is the API key id or JWT subject (Principal.CredentialID).
	// Required.
	CredentialID string `yaml:"credentialId"`
	// RateLimits of this credential alone.
	RateLimits `yaml:",inline"`
}

// RedisConfig is the connection to the Redis that holds shared buckets and
// quota counters.
type RedisConfig struct {
	// Addr is host:port. Default "127.0.0.1:6379".
	Addr string `yaml:"addr"`
	// Password for AUTH; a secret (use ${ENV}). Default none.
	Password string `yaml:"password"`
	// DB is the database number. Default 0; at least 0.
	DB int `yaml:"db"`
	// KeyPrefix starts every key, so several gateways (or tests) can share
	// one Redis. Default "moonborn:limits:"; must not contain '{' or '}'
	// (the workspace id is the cluster hash tag).
	KeyPrefix string `yaml:"keyPrefix"`
	// DialTimeout bounds connecting. Default 1s; positive.
	DialTimeout time.Duration `yaml:"dialTimeout"`
	// Timeout bounds each command (read and write). It is on the request
	// path: keep it short. Default 250ms; positive.
	Timeout time.Duration `yaml:"timeout"`
	// DownBackoff is how long after a failure calls skip Redis and go
	// straight to the onRedisDown behaviour; then one call probes Redis
	// again. Default 1s; positive, at most 1m.
	DownBackoff time.Duration `yaml:"downBackoff"`
	// Lease lets a replica admit most requests from slices of the shared
	// buckets it holds, without a round trip (redis_lease.go).
	Lease LeaseConfig `yaml:"lease"`
}

// SetDefaults fills unset fields, including each RequestBurst from its
// RequestsPerMinute.
func (c *LimitsConfig) SetDefaults() {
	if c.Backend == "" {
		c.Backend = BackendLocal
	}
	if c.OnRedisDown == "" {
		c.OnRedisDown = FailClosed
	}
	c.Redis.SetDefaults()
	c.Default.setDefaults()
	for i := range c.Workspaces {
		c.Workspaces[i].setDefaults()
	}
}

func (w *WorkspaceLimits) setDefaults() {
	w.RateLimits.setDefaults()
	w.PerKey.setDefaults()
	for i := range w.Keys {
		w.Keys[i].RateLimits.setDefaults()
	}
}

func (r *RateLimits) setDefaults() {
	if r.RequestBurst == 0 {
		r.RequestBurst = r.RequestsPerMinute
	}
}

// SetDefaults fills unset connection fields.
func (c *RedisConfig) SetDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:6379"
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "moonborn:limits:"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 250 * time.Millisecond
	}
	if c.DownBackoff == 0 {
		c.DownBackoff = time.Second
	}
	c.Lease.SetDefaults()
}

// Validate reports every problem at once, each prefixed with its path
// relative to the limits section (`workspaces[2].keys[0].requestBurst: ...`).
// The Redis password never appears in a message.
func (c *LimitsConfig) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Backend {
	case BackendLocal, BackendRedis:
	default:
		add("backend: must be local or redis, got %q", c.Backend)
	}
	switch c.OnRedisDown {
	case FailClosed, FailOpen:
	default:
		add("onRedisDown: must be fail-closed or fail-open, got %q", c.OnRedisDown)
	}
	if c.Backend == BackendRedis {
		c.Redis.validate("redis.", &errs)
	}
	if c.Default.ID != "" {
		add("default.id: must be empty (default applies to unlisted workspaces)")
	}
	if len(c.Default.Keys) > 0 {
		add("default.keys: not allowed; use default.perKey, or list the workspace")
	}
	c.Default.validate("default.", &errs)
	seen := make(map[string]int, len(c.Workspaces))
	for i := range c.Workspaces {
		w := &c.Workspaces[i]
		p := fmt.Sprintf("workspaces[%d].", i)
		if w.ID == "" {
			add("%sid: required", p)
		} else if j, dup := seen[w.ID]; dup {
			add("%sid: duplicate of workspaces[%d].id %q", p, j, w.ID)
		} else {
			seen[w.ID] = i
		}
		w.validate(p, &errs)
	}
	return errors.Join(errs...)
}

func (w *WorkspaceLimits) validate(p string, errs *[]error) {
	w.RateLimits.validate(p, errs)
	checkRange(p+"monthlyBudgetUsdMicros", w.MonthlyBudgetUsdMicros, errs)
	checkRange(p+"monthlyTokens", w.MonthlyTokens, errs)
	w.PerKey.validate(p+"perKey.", errs)
	seen := make(map[string]int, len(w.Keys))
	for i, k := range w.Keys {
		kp := fmt.Sprintf("%skeys[%d].", p, i)
		if k.CredentialID == "" {
			*errs = append(*errs, fmt.Errorf("%scredentialId: required", kp))
		} else if j, dup := seen[k.CredentialID]; dup {
			*errs = append(*errs, fmt.Errorf("%scredentialId: duplicate of %skeys[%d].credentialId %q", kp, p, j, k.CredentialID))
		} else {
			seen[k.CredentialID] = i
		}
		k.RateLimits.validate(kp, errs)
	}
}

func (r *RateLimits) validate(p string, errs *[]error) {
	checkRange(p+"requestsPerMinute", r.RequestsPerMinute, errs)
	checkRange(p+"requestBurst", r.RequestBurst, errs)
	checkRange(p+"tokensPerMinute", r.TokensPerMinute, errs)
	if r.RequestsPerMinute == 0 && r.RequestBurst != 0 {
		*errs = append(*errs, fmt.Errorf("%srequestBurst: must be 0 when requestsPerMinute is 0 (unlimited)", p))
	}
	if r.RequestsPerMinute > 0 && r.RequestBurst == 0 {
		*errs = append(*errs, fmt.Errorf("%srequestBurst: must be at least 1", p))
	}
}

func checkRange(path string, v int64, errs *[]error) {
	if v < 0 || v > MaxLimit {
		*errs = append(*errs, fmt.Errorf("%s: must be between 0 and %d", path, int64(MaxLimit)))
	}
}

func (c *RedisConfig) validate(p string, errs *[]error) {
	add := func(format string, a ...any) { *errs = append(*errs, fmt.Errorf(format, a...)) }
	if host, port, err := net.SplitHostPort(c.Addr); err != nil || host == "" || port == "" {
		add("%saddr: must be host:port", p)
	}
	if c.DB < 0 {
		add("%sdb: must be at least 0", p)
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		add("%skeyPrefix: must not contain '{' or '}'", p)
	}
	if c.DialTimeout <= 0 {
		add("%sdialTimeout: must be positive", p)
	}
	if c.Timeout <= 0 {
		add("%stimeout: must be positive", p)
	}
	if c.DownBackoff <= 0 || c.DownBackoff > time.Minute {
		add("%sdownBackoff: must be between 1ms and 1m0s", p)
	}
	c.Lease.validate(p+"lease.", errs)
}

// bucketScale is the number of bucket units in one token (or request): a
// rate of R per minute adds exactly R units per millisecond.
const bucketScale = 60_000

// bucketParams describe one bucket in bucket units: rate units per ms (the
// configured per-minute figure) and capacity in units. rate 0 = unlimited.
type bucketParams struct {
	rate int64 // per minute = units per millisecond
	cap  int64 // in whole tokens or requests
}

func (p bucketParams) limited() bool { return p.rate > 0 }
func (p bucketParams) max() int64    { return p.cap * bucketScale }

// Bucket slots, in the order they are checked; the first failing one names
// the rejection reason.
const (
	slotWsReq = iota
	slotWsTok
	slotKeyReq
	slotKeyTok
	numSlots
)

// limitParams is everything one decision needs, resolved from config
// (and from a managed key's own limits).
type limitParams struct {
	b         [numSlots]bucketParams
	budgetUsd int64
	budgetTok int64
	// keyBudgetUsd and keyBudgetTok are the credential's own monthly
	// budget (managed keys only).
	keyBudgetUsd int64
	keyBudgetTok int64
}

func (p *limitParams) quota() bool    { return p.budgetUsd > 0 || p.budgetTok > 0 }
func (p *limitParams) keyQuota() bool { return p.keyBudgetUsd > 0 || p.keyBudgetTok > 0 }
func (p *limitParams) keyed() bool    { return p.b[slotKeyReq].limited() || p.b[slotKeyTok].limited() }
func (p *limitParams) wsBuckets() bool {
	return p.b[slotWsReq].limited() || p.b[slotWsTok].limited()
}
func (p *limitParams) any() bool { return p.quota() || p.keyQuota() || p.keyed() || p.wsBuckets() }

// limitTable resolves a LimitKey to its parameters without allocating.
type limitTable struct {
	def        limitParams
	workspaces map[string]*wsParams
}

type wsParams struct {
	base limitParams // key slots hold PerKey
	keys map[string][2]bucketParams
}

func pairOf(r RateLimits) [2]bucketParams {
	return [2]bucketParams{
		{rate: r.RequestsPerMinute, cap: r.RequestBurst},
		{rate: r.TokensPerMinute, cap: r.TokensPerMinute},
	}
}

func paramsOf(w *WorkspaceLimits) limitParams {
	ws, k := pairOf(w.RateLimits), pairOf(w.PerKey)
	return limitParams{
		b:         [numSlots]bucketParams{ws[0], ws[1], k[0], k[1]},
		budgetUsd: w.MonthlyBudgetUsdMicros,
		budgetTok: w.MonthlyTokens,
	}
}

// newLimitTable applies defaults to a copy of cfg, validates it and builds
// the lookup table.
func newLimitTable(cfg LimitsConfig) (*limitTable, LimitsConfig, error) {
	cfg.Workspaces = append([]WorkspaceLimits(nil), cfg.Workspaces...)
	for i := range cfg.Workspaces {
		cfg.Workspaces[i].Keys = append([]KeyLimits(nil), cfg.Workspaces[i].Keys...)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, cfg, fmt.Errorf("limits: %w", err)
	}
	t := &limitTable{def: paramsOf(&cfg.Default), workspaces: make(map[string]*wsParams, len(cfg.Workspaces))}
	for i := range cfg.Workspaces {
		w := &cfg.Workspaces[i]
		wp := &wsParams{base: paramsOf(w), keys: make(map[string][2]bucketParams, len(w.Keys))}
		for _, k := range w.Keys {
			wp.keys[k.CredentialID] = pairOf(k.RateLimits)
		}
		t.workspaces[w.ID] = wp
	}
	return t, cfg, nil
}

func (t *limitTable) lookup(k LimitKey) limitParams {
	p := t.def
	w, ok := t.workspaces[k.Workspace]
	if ok {
		p = w.base
		if kp, ok := w.keys[k.CredentialID]; ok {
			p.b[slotKeyReq], p.b[slotKeyTok] = kp[0], kp[1]
		}
	}
	if o := k.Own; o != nil {
		// A managed key's own limits replace the workspace's perKey and
		// keys entries for it, as a keys entry would.
		kp := pairOf(o.RateLimits)
		p.b[slotKeyReq], p.b[slotKeyTok] = kp[0], kp[1]
		p.keyBudgetUsd, p.keyBudgetTok = o.MonthlyBudgetUsdMicros, o.MonthlyTokens
	}
	return p
}
