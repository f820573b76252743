package policy

import "errors"

// CredentialLimits are the limits a managed API key carries itself: its
// own request and token buckets (checked with the workspace's, in place
// of the workspace's perKey and keys entries) and its own monthly budget
// (checked after the workspace's). Zero fields limit nothing.
type CredentialLimits struct {
	RateLimits
	// MonthlyBudgetUsdMicros is the key's spend allowed per calendar month
	// (UTC), in micro-USD. 0 = none.
	MonthlyBudgetUsdMicros int64 `json:"monthlyBudgetUsdMicros"`
	// MonthlyTokens is the key's tokens allowed per calendar month (UTC).
	// 0 = none.
	MonthlyTokens int64 `json:"monthlyTokens"`
}

// setDefaults fills RequestBurst from RequestsPerMinute.
func (c *CredentialLimits) setDefaults() { c.RateLimits.setDefaults() }

// Validate reports every problem, each named by its JSON field.
func (c *CredentialLimits) Validate() error {
	var errs []error
	c.RateLimits.validate("limits.", &errs)
	checkRange("limits.monthlyBudgetUsdMicros", c.MonthlyBudgetUsdMicros, &errs)
	checkRange("limits.monthlyTokens", c.MonthlyTokens, &errs)
	return errors.Join(errs...)
}
