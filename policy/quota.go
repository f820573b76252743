package policy

import "time"

// Quotas count a workspace's real spend (USD micros and tokens, as
// settled) per calendar month in UTC. Admission refuses once a counter has
// reached its budget; it does not reserve against the quota, so requests
// already in flight when the budget runs out may overshoot it by their own
// cost. Only workspaces with a budget are counted.

// monthIndex numbers UTC calendar months: year*12 + month-1.
func monthIndex(t time.Time) int64 {
	y, m, _ := t.UTC().Date()
	return int64(y)*12 + int64(m) - 1
}

// nextMonthStart is the first instant of the UTC month after t's.
func nextMonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// quotaRetryMs is how long until the quota resets, in whole milliseconds
// rounded up.
func quotaRetryMs(now time.Time) int64 {
	d := nextMonthStart(now).Sub(now)
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// checkQuota compares a month's counters with the workspace's budgets.
func checkQuota(p *limitParams, usd, tok int64) Reason {
	return checkBudget(p.budgetUsd, p.budgetTok, usd, tok)
}

// checkBudget compares a month's counters with a pair of budgets (0 =
// none).
func checkBudget(budgetUsd, budgetTok, usd, tok int64) Reason {
	switch {
	case budgetUsd > 0 && usd >= budgetUsd:
		return ReasonQuotaCost
	case budgetTok > 0 && tok >= budgetTok:
		return ReasonQuotaTokens
	}
	return ReasonNone
}

// quotaCounter is one workspace's spend in one month.
type quotaCounter struct {
	month    int64
	usd, tok int64
}

// at returns the counter's figures for month m (zero for another month).
func (q *quotaCounter) at(m int64) (usd, tok int64) {
	if q.month != m {
		return 0, 0
	}
	return q.usd, q.tok
}

// add counts spend in month m, starting over when the month changed.
func (q *quotaCounter) add(m, usd, tok int64) {
	if q.month != m {
		*q = quotaCounter{month: m}
	}
	q.usd += max(usd, 0)
	q.tok += max(tok, 0)
}
