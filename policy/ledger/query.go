package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// UsageLedger is a Ledger that can also answer usage queries and report
// its counters: what Open returns, whatever the driver.
type UsageLedger interface {
	Ledger
	// Usage sums a workspace's records with from <= time < to.
	Usage(ctx context.Context, workspace string, from, to time.Time) (UsageSummary, error)
	// Stats returns a snapshot of the ledger's counters.
	Stats() Stats
}

// UsageTotals are sums over a set of usage records.
// InputTokens include the prompt cache's reads and writes, counted apart
// beside them; CacheSavingsUsdMicros is what caching saved against the
// same tokens all at the input price.
type UsageTotals struct {
	Requests              int64 `json:"requests"`
	InputTokens           int64 `json:"inputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
	CacheReadTokens       int64 `json:"cacheReadTokens"`
	CacheWrite5mTokens    int64 `json:"cacheWrite5mTokens"`
	CacheWrite1hTokens    int64 `json:"cacheWrite1hTokens"`
	CostUsdMicros         int64 `json:"costUsdMicros"`
	CacheSavingsUsdMicros int64 `json:"cacheSavingsUsdMicros"`
}

func (t *UsageTotals) add(o UsageTotals) {
	t.Requests += o.Requests
	t.InputTokens += o.InputTokens
	t.OutputTokens += o.OutputTokens
	t.CacheReadTokens += o.CacheReadTokens
	t.CacheWrite5mTokens += o.CacheWrite5mTokens
	t.CacheWrite1hTokens += o.CacheWrite1hTokens
	t.CostUsdMicros += o.CostUsdMicros
	t.CacheSavingsUsdMicros += o.CacheSavingsUsdMicros
}

// totalsOf is one record's contribution.
func totalsOf(r *UsageRecord) UsageTotals {
	return UsageTotals{Requests: 1, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
		CacheReadTokens: r.CacheReadTokens, CacheWrite5mTokens: r.CacheWrite5mTokens,
		CacheWrite1hTokens: r.CacheWrite1hTokens, CostUsdMicros: r.CostUsdMicros,
		CacheSavingsUsdMicros: r.CacheSavingsUsdMicros}
}

// UsageGroup is the totals of the records sharing one model or persona.
type UsageGroup struct {
	// Name is the model id or persona id; "" groups records without one
	// (a request refused before its persona was resolved).
	Name string `json:"name"`
	UsageTotals
}

// UsageSummary answers GET /admin/workspaces/{id}/usage: a workspace's
// totals over [From, To), overall and per model and per persona. Groups
// are sorted by name and never nil, so they encode as [] when empty.
type UsageSummary struct {
	Workspace string       `json:"workspace"`
	From      time.Time    `json:"from"`
	To        time.Time    `json:"to"`
	Total     UsageTotals  `json:"total"`
	ByModel   []UsageGroup `json:"byModel"`
	ByPersona []UsageGroup `json:"byPersona"`
}

// ErrBadUsageRange wraps every rejection of a usage query's range, so
// the admin handler can answer 400 with the message.
var ErrBadUsageRange = errors.New("bad usage range")

// ParseUsageRange reads the from and to query parameters of a usage
// request. Each is RFC 3339 ("2030-01-02T03:04:05Z") or a UTC date
// ("2030-01-02"); a date as to means the end of that day, so
// from=2030-01-01&to=2030-01-31 is all of January. An empty from is the
// start of now's UTC month, an empty to is now. from must be before to.
func ParseUsageRange(from, to string, now time.Time) (time.Time, time.Time, error) {
	var errs []error
	f, err := parseUsageTime(from, false)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: from: %w", ErrBadUsageRange, err))
	}
	t, err := parseUsageTime(to, true)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: to: %w", ErrBadUsageRange, err))
	}
	if len(errs) > 0 {
		return time.Time{}, time.Time{}, errors.Join(errs...)
	}
	now = now.UTC()
	if from == "" {
		f = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if to == "" {
		t = now
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: from must be before to", ErrBadUsageRange)
	}
	return f, t, nil
}

func parseUsageTime(s string, endOfDay bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if len(s) == len(time.DateOnly) {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return time.Time{}, errors.New("must be RFC 3339 or YYYY-MM-DD")
		}
		if endOfDay {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be RFC 3339 or YYYY-MM-DD")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, errors.New("year must be between 1 and 9999")
	}
	return t.UTC(), nil
}

// usageAgg folds (model, persona) rows into a UsageSummary.
type usageAgg struct {
	total          UsageTotals
	model, persona map[string]*UsageTotals
}

func newUsageAgg() *usageAgg {
	return &usageAgg{model: map[string]*UsageTotals{}, persona: map[string]*UsageTotals{}}
}

func (a *usageAgg) add(model, persona string, t UsageTotals) {
	a.total.add(t)
	addTo(a.model, model, t)
	addTo(a.persona, persona, t)
}

func addTo(m map[string]*UsageTotals, key string, t UsageTotals) {
	p := m[key]
	if p == nil {
		p = &UsageTotals{}
		m[key] = p
	}
	p.add(t)
}

func (a *usageAgg) summary(workspace string, from, to time.Time) UsageSummary {
	groups := func(m map[string]*UsageTotals) []UsageGroup {
		out := make([]UsageGroup, 0, len(m))
		for k, v := range m {
			out = append(out, UsageGroup{Name: k, UsageTotals: *v})
		}
		slices.SortFunc(out, func(a, b UsageGroup) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	return UsageSummary{
		Workspace: workspace, From: from.UTC(), To: to.UTC(), Total: a.total,
		ByModel: groups(a.model), ByPersona: groups(a.persona),
	}
}

func checkUsageQuery(workspace string, from, to time.Time) error {
	if workspace == "" {
		return fmt.Errorf("%w: workspace required", ErrBadUsageRange)
	}
	if !from.Before(to) {
		return fmt.Errorf("%w: from must be before to", ErrBadUsageRange)
	}
	return nil
}

// Usage sums workspace's committed records with from <= time < to in one
// indexed query (workspace, at). Records still queued or spooled are not
// counted yet.
func (l *SQL) Usage(ctx context.Context, workspace string, from, to time.Time) (UsageSummary, error) {
	if err := checkUsageQuery(workspace, from, to); err != nil {
		return UsageSummary{}, err
	}
	q := l.dialect.usageSQL()
	rows, err := l.db.QueryContext(ctx, q, workspace, l.dialect.timeArg(from), l.dialect.timeArg(to))
	if err != nil {
		return UsageSummary{}, fmt.Errorf("usage ledger: query: %w", err)
	}
	defer rows.Close()
	agg := newUsageAgg()
	for rows.Next() {
		var model, persona string
		var t UsageTotals
		if err := rows.Scan(&model, &persona, &t.Requests, &t.InputTokens, &t.OutputTokens, &t.CostUsdMicros,
			&t.CacheReadTokens, &t.CacheWrite5mTokens, &t.CacheWrite1hTokens, &t.CacheSavingsUsdMicros); err != nil {
			return UsageSummary{}, fmt.Errorf("usage ledger: query: %w", err)
		}
		agg.add(model, persona, t)
	}
	if err := rows.Err(); err != nil {
		return UsageSummary{}, fmt.Errorf("usage ledger: query: %w", err)
	}
	return agg.summary(workspace, from, to), nil
}

// Usage answers by reading the whole file, so its cost grows with the
// ledger: fine for a laptop, not for an admin API under load (use
// sqlite). Records still buffered (the last FlushInterval) are not
// counted yet; lines that do not decode are skipped.
func (l *JSONL) Usage(ctx context.Context, workspace string, from, to time.Time) (UsageSummary, error) {
	if err := checkUsageQuery(workspace, from, to); err != nil {
		return UsageSummary{}, err
	}
	f, err := os.Open(l.path)
	if err != nil {
		return UsageSummary{}, fmt.Errorf("usage ledger: %w", err)
	}
	defer f.Close()
	agg := newUsageAgg()
	if err := scanUsage(ctx, bufio.NewReaderSize(f, ledgerBufferSize), workspace, from, to, agg); err != nil {
		return UsageSummary{}, fmt.Errorf("usage ledger: %w", err)
	}
	return agg.summary(workspace, from, to), nil
}

// scanUsage adds the matching records of a JSON-lines stream to agg.
func scanUsage(ctx context.Context, r *bufio.Reader, workspace string, from, to time.Time, agg *usageAgg) error {
	needle := []byte(`"workspace":`)
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, readErr := r.ReadSlice('\n')
		if errors.Is(readErr, bufio.ErrBufferFull) {
			// A line longer than the buffer: read it whole.
			rest, err := r.ReadBytes('\n')
			line, readErr = append(slices.Clone(line), rest...), err
		}
		if bytes.Contains(line, needle) {
			var rec UsageRecord
			if json.Unmarshal(line, &rec) == nil && rec.Workspace == workspace &&
				!rec.Time.Before(from) && rec.Time.Before(to) {
				agg.add(rec.Model, rec.Persona, totalsOf(&rec))
			}
		}
		if readErr != nil {
			if errors.Is(readErr, io.EOF) {
				return nil
			}
			return readErr
		}
	}
}
