package policy

// The lease section of the Redis limiter's config, and the fixed figures
// of the scheme.

import (
	"fmt"
	"time"
)

// LeaseConfig is `limits.redis.lease`: how a replica of a fleet admits
// most requests from slices of the shared buckets it holds, without a
// Redis round trip. The zero value (after SetDefaults) leases 1% slices
// for 1s.
type LeaseConfig struct {
	// Enabled turns leasing on. Default true; false makes every decision
	// one round trip to Redis.
	Enabled *bool `yaml:"enabled"`
	// MaxSlice is the largest slice of a bucket's capacity one lease
	// takes, a fraction. Default 0.01; between 0.0001 and 0.05. The last
	// 5 slices of every bucket (5% at the default) are never leased, and
	// a slice is at most a quarter of what lies above that floor, so
	// slices shrink as a bucket drains and near empty every decision is
	// exact. Monthly quotas are checked against the replica's view only
	// while the month's spend is below the same floor under the budget.
	MaxSlice float64 `yaml:"maxSlice"`
	// TTL is how long a slice may be held. Unspent units come back to
	// the shared bucket when the replica notices the expiry (its next
	// decision on that bucket) and at Close; the quota view is refreshed
	// at least this often. Default 1s; between 10ms and 1m.
	TTL time.Duration `yaml:"ttl"`
}

// SetDefaults fills unset fields.
func (c *LeaseConfig) SetDefaults() {
	if c.Enabled == nil {
		on := true
		c.Enabled = &on
	}
	if c.MaxSlice == 0 {
		c.MaxSlice = 0.01
	}
	if c.TTL == 0 {
		c.TTL = time.Second
	}
}

func (c *LeaseConfig) validate(p string, errs *[]error) {
	if c.MaxSlice < 0.0001 || c.MaxSlice > 0.05 {
		*errs = append(*errs, fmt.Errorf("%smaxSlice: must be between 0.0001 and 0.05", p))
	}
	if c.TTL < 10*time.Millisecond || c.TTL > time.Minute {
		*errs = append(*errs, fmt.Errorf("%sttl: must be between 10ms and 1m0s", p))
	}
}

// leaseFloorSlices is how many slices' worth of each bucket (and of each
// quota) are kept out of leases: below it decisions are exact.
const leaseFloorSlices = 5

// leaseSettleLinger replaces settleLinger while leasing: settlements of
// decisions made from a lease have no Admit to ride on, and sending them
// every 10 ms instead of 2 ms is most of what leasing saves.
const leaseSettleLinger = 10 * time.Millisecond
