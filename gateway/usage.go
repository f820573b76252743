package gateway

// How a chat request ends: metrics, limiter settlement, the usage
// record, the access line.

import (
	"context"
	"log/slog"
	"time"

	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// finish is the one place a chat request ends, whatever ended it: metrics,
// the access log and, for an authenticated caller (one with a workspace),
// limiter settlement and the ledger. Called exactly once per request.
func (s *Server) finish(x *exchange, u providers.Usage, status int, code string, end time.Time) {
	if x.cancel != nil {
		// Unwatch before the connection can be closed or serve another
		// request (see goneWatcher); cancel releases the context's timer.
		s.gone.unwatch(x.watch)
		x.cancel()
	}
	var cost int64
	if x.model != nil {
		cost = costOf(x.model, u)
	}
	total := end.Sub(x.start)
	route := routeChat
	if x.route != "" {
		route = x.route
	}
	s.opts.Metrics.answered(route, status, code)
	s.opts.Metrics.finished(x, total, &u, cost)
	if s.opts.AccessLog {
		s.accessLog(x, u, cost, status, code, total)
	}
	if x.span != nil {
		s.endSpan(x, u, status, code)
	}
	if x.principal.Workspace == "" {
		return
	}
	if x.admitted {
		x.admitted = false
		if err := s.opts.Limiter.Settle(context.Background(), x.decision.Reservation,
			u.InputTokens+u.OutputTokens, cost, end); err != nil {
			s.log.Warn("limiter settle failed", "request_id", x.requestID, "err", err.Error())
		}
	}
	s.opts.Ledger.Record(s.usageRecord(x, x.deployment, u, cost, status, code, end))
}

// usageRecord is the ledger line of an exchange answered by deployment
// (empty: the model's provider). It reads only what is fixed once the
// upstream call started, so a losing hedge's goroutine may call it while
// the handler goes on.
func (s *Server) usageRecord(x *exchange, deployment string, u providers.Usage, cost int64, status int, code string, end time.Time) ledger.UsageRecord {
	r := ledger.UsageRecord{
		RequestID:          x.requestID,
		Time:               x.start,
		Workspace:          x.principal.Workspace,
		CredentialID:       x.principal.CredentialID,
		Persona:            x.personaID,
		Stream:             x.stream,
		InputTokens:        u.InputTokens,
		OutputTokens:       u.OutputTokens,
		CacheReadTokens:    u.CacheReadTokens,
		CacheWrite5mTokens: u.CacheWrite5mTokens,
		CacheWrite1hTokens: u.CacheWrite1hTokens,
		Estimated:          u.Estimated,
		CostUsdMicros:      cost,
		LatencyMs:          end.Sub(x.start).Milliseconds(),
		Status:             status,
		ErrorCode:          code,
		Route:              x.route,
	}
	if x.model != nil {
		if u.CacheReadTokens != 0 || u.CacheWriteTokens() != 0 {
			// Against the same tokens all at the input price.
			r.CacheSavingsUsdMicros = x.model.Prices.Cost(policy.Tokens{Input: u.InputTokens, Output: u.OutputTokens}) - cost
		}
		r.Model = x.model.ID
		r.Provider = x.model.ProviderName
		if deployment != "" {
			r.Provider = deployment
		}
	}
	return r
}

// accessLog writes the request's access line. Credentials never appear:
// the credential id is the key's configured id or the JWT subject.
func (s *Server) accessLog(x *exchange, u providers.Usage, cost int64, status int, code string, total time.Duration) {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	model, deployment := "", x.deployment
	if x.model != nil {
		model = x.model.ID
		if deployment == "" {
			deployment = x.model.ProviderName
		}
	}
	l := s.newAccessLine("request")
	l.str("request_id", x.requestID)
	l.str("workspace", x.principal.Workspace)
	l.str("credential", x.principal.CredentialID)
	l.str("persona", x.personaID)
	l.str("model", model)
	l.str("deployment", deployment)
	l.bool("stream", x.stream)
	l.int("status", int64(status))
	l.str("code", code)
	l.int("input_tokens", u.InputTokens)
	l.int("output_tokens", u.OutputTokens)
	l.int("cache_read_tokens", u.CacheReadTokens)
	l.int("cache_write_tokens", u.CacheWriteTokens())
	l.int("cost_usd_micros", cost)
	l.int("latency_ms", total.Milliseconds())
	l.int("overhead_us", (total - x.upstreamWait).Microseconds())
	l.str("trace_id", x.traceIDOf())
	s.writeAccess(l)
}

// reasonLabel names a refusal reason for the rejections metric.
func reasonLabel(r policy.Reason) string {
	switch r {
	case policy.ReasonRequests:
		return "requests"
	case policy.ReasonTokens:
		return "tokens"
	case policy.ReasonQuotaCost:
		return "quota_cost"
	case policy.ReasonQuotaTokens:
		return "quota_tokens"
	}
	return "other"
}
