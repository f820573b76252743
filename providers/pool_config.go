package providers

import (
	"errors"
	"fmt"
	"time"
)

// Strategy names accepted by PoolConfig.Strategy and NewSelector.
const (
	StrategyPriority    = "priority"
	StrategyWeighted    = "weighted"
	StrategyLeastLoaded = "least-loaded"
)

// MaxDeployments caps the deployments of one pool (selection works on a
// 64-bit candidate mask).
const MaxDeployments = 64

// PoolConfig is the resilience policy of one public model: how a
// deployment is chosen, how often a request may be tried, hedging and the
// breakers. The zero value is valid after SetDefaults.
type PoolConfig struct {
	// Strategy picks among healthy deployments: "priority" (lowest
	// priority value first, then config order), "weighted" (smooth
	// weighted round robin) or "least-loaded" (fewest in-flight requests,
	// ties by EWMA latency). Default "priority".
	Strategy string `yaml:"strategy"`
	// MaxAttempts caps upstream attempts per request, the first included
	// (failover retries and hedges alike). Default 3; 1 to 10.
	MaxAttempts int `yaml:"maxAttempts"`
	// Hedge configures hedged streams. Off by default.
	Hedge HedgeConfig `yaml:"hedge"`
	// Breaker configures each deployment's circuit breaker.
	Breaker BreakerConfig `yaml:"breaker"`
}

// HedgeConfig turns on hedging for streamed requests: when the running
// attempt has produced no first token within the delay, the same request
// starts on the next deployment and the first to produce a token wins.
// Non-streaming requests are never hedged (a Complete cannot be
// cancelled). Hedges count as retries against the retry budget.
type HedgeConfig struct {
	// Enabled turns hedging on. Default false.
	Enabled bool `yaml:"enabled"`
	// Delay is the wait for a first token before hedging, and the
	// fallback when UseP95 has too few samples. Default 2s; must be
	// positive.
	Delay time.Duration `yaml:"delay"`
	// UseP95 uses the running deployment's observed p95 time to first
	// token (over its last 64 streams, once it has 16) as the delay,
	// never less than MinDelay. Default false.
	UseP95 bool `yaml:"useP95"`
	// MinDelay is the floor of a p95-derived delay, so a fast deployment
	// does not hedge nearly every request. Default 50ms; must be positive.
	MinDelay time.Duration `yaml:"minDelay"`
}

// BreakerConfig configures the circuit breaker of each deployment
// (sony/gobreaker TwoStepCircuitBreaker plus our own open-until hold, see
// breaker.go). Failures are connect errors, timeouts, cut streams,
// unreadable replies, 5xx, 408, 429, 401 and 403; other 4xx (the caller's
// fault), client aborts and saturation never count.
type BreakerConfig struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Default 5; at least 1.
	ConsecutiveFailures int `yaml:"consecutiveFailures"`
	// MinRequests is the number of counted outcomes in Window before
	// FailureRatio can trip the breaker. Default 20; at least 1.
	MinRequests int `yaml:"minRequests"`
	// FailureRatio trips the breaker when failures ÷ outcomes in Window
	// reach it. Default 0.5; in (0, 1].
	FailureRatio float64 `yaml:"failureRatio"`
	// OpenFor is how long a tripped breaker refuses requests before it
	// lets HalfOpenProbes through. An upstream retry-after longer than
	// OpenFor (up to MaxOpenFor) holds the breaker open that long instead.
	// Default 10s; must be positive.
	OpenFor time.Duration `yaml:"openFor"`
	// MaxOpenFor caps how long an upstream retry-after may hold a
	// deployment open. Default 5m; at least OpenFor.
	MaxOpenFor time.Duration `yaml:"maxOpenFor"`
	// HalfOpenProbes is how many requests a half-open breaker lets
	// through; that many successes in a row close it, one failure reopens
	// it. Default 1; 1 to 100.
	HalfOpenProbes int `yaml:"halfOpenProbes"`
	// Window is the rolling period over which FailureRatio and the health
	// view's error rate are computed (ten buckets). Default 30s; at least
	// 100ms.
	Window time.Duration `yaml:"window"`
}

// RetryBudgetConfig bounds retries and hedges across every pool sharing
// one RetryBudget: over a sliding Window, retries ≤ Ratio × requests +
// MinPerSecond × Window seconds, so a full outage cannot multiply the load
// on upstreams by MaxAttempts.
type RetryBudgetConfig struct {
	// Ratio is the fraction of requests that may be retried. Default 0.2;
	// 0 to 10.
	Ratio float64 `yaml:"ratio"`
	// MinPerSecond allows this many retries per second of Window
	// regardless of traffic, so a quiet gateway can still fail over.
	// Default 10; at least 0.
	MinPerSecond int `yaml:"minPerSecond"`
	// Window is the sliding period (ten buckets). Default 10s; at least
	// 1s.
	Window time.Duration `yaml:"window"`
}

// SetDefaults fills every unset field.
func (c *PoolConfig) SetDefaults() {
	if c.Strategy == "" {
		c.Strategy = StrategyPriority
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	c.Hedge.SetDefaults()
	c.Breaker.SetDefaults()
}

// Validate reports every problem of a defaulted PoolConfig at once, each
// message starting with the field's path.
func (c *PoolConfig) Validate() error {
	var errs []error
	switch c.Strategy {
	case StrategyPriority, StrategyWeighted, StrategyLeastLoaded:
	default:
		errs = append(errs, errors.New("strategy: must be one of priority, weighted, least-loaded"))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 10 {
		errs = append(errs, errors.New("maxAttempts: must be between 1 and 10"))
	}
	errs = appendPrefixed(errs, "hedge.", c.Hedge.problems())
	errs = appendPrefixed(errs, "breaker.", c.Breaker.problems())
	return errors.Join(errs...)
}

// SetDefaults fills every unset field.
func (c *HedgeConfig) SetDefaults() {
	if c.Delay == 0 {
		c.Delay = 2 * time.Second
	}
	if c.MinDelay == 0 {
		c.MinDelay = 50 * time.Millisecond
	}
}

// Validate reports every problem of a defaulted HedgeConfig at once.
func (c *HedgeConfig) Validate() error { return errors.Join(c.problems()...) }

func (c *HedgeConfig) problems() []error {
	var errs []error
	if c.Delay <= 0 {
		errs = append(errs, errors.New("delay: must be positive"))
	}
	if c.MinDelay <= 0 {
		errs = append(errs, errors.New("minDelay: must be positive"))
	}
	return errs
}

// SetDefaults fills every unset field.
func (c *BreakerConfig) SetDefaults() {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.FailureRatio == 0 {
		c.FailureRatio = 0.5
	}
	if c.OpenFor == 0 {
		c.OpenFor = 10 * time.Second
	}
	if c.MaxOpenFor == 0 {
		c.MaxOpenFor = max(5*time.Minute, c.OpenFor)
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 1
	}
	if c.Window == 0 {
		c.Window = 30 * time.Second
	}
}

// Validate reports every problem of a defaulted BreakerConfig at once.
func (c *BreakerConfig) Validate() error { return errors.Join(c.problems()...) }

func (c *BreakerConfig) problems() []error {
	var errs []error
	if c.ConsecutiveFailures < 1 {
		errs = append(errs, errors.New("consecutiveFailures: must be at least 1"))
	}
	if c.MinRequests < 1 {
		errs = append(errs, errors.New("minRequests: must be at least 1"))
	}
	if !(c.FailureRatio > 0 && c.FailureRatio <= 1) {
		errs = append(errs, errors.New("failureRatio: must be in (0, 1]"))
	}
	if c.OpenFor <= 0 {
		errs = append(errs, errors.New("openFor: must be positive"))
	}
	if c.MaxOpenFor < c.OpenFor {
		errs = append(errs, errors.New("maxOpenFor: must be at least openFor"))
	}
	if c.HalfOpenProbes < 1 || c.HalfOpenProbes > 100 {
		errs = append(errs, errors.New("halfOpenProbes: must be between 1 and 100"))
	}
	if c.Window < 100*time.Millisecond {
		errs = append(errs, errors.New("window: must be at least 100ms"))
	}
	return errs
}

// SetDefaults fills every unset field. A Ratio of 0 stays 0 only when
// MinPerSecond is also set: the zero value means "defaults".
func (c *RetryBudgetConfig) SetDefaults() {
	if c.Ratio == 0 && c.MinPerSecond == 0 {
		c.Ratio = 0.2
		c.MinPerSecond = 10
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
}

// Validate reports every problem of a defaulted RetryBudgetConfig at once.
func (c *RetryBudgetConfig) Validate() error {
	var errs []error
	if !(c.Ratio >= 0 && c.Ratio <= 10) {
		errs = append(errs, errors.New("ratio: must be between 0 and 10"))
	}
	if c.MinPerSecond < 0 {
		errs = append(errs, errors.New("minPerSecond: must be at least 0"))
	}
	if c.Window < time.Second {
		errs = append(errs, errors.New("window: must be at least 1s"))
	}
	return errors.Join(errs...)
}

func appendPrefixed(dst []error, prefix string, errs []error) []error {
	for _, e := range errs {
		dst = append(dst, fmt.Errorf("%s%w", prefix, e))
	}
	return dst
}
