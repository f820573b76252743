// Package ledger stores usage records, one per finished request: a
// bounded queue in front of one writer goroutine (queue.go), drivers for
// an append-only JSON-lines file (jsonl.go) and SQL databases, SQLite and
// PostgreSQL (sql.go), with a local spool for the batches a database
// refused (spool.go), the schema and its migrations (schema.go), the
// usage queries the admin API answers (query.go), and the configuration
// and counters every driver shares (config.go). The SQL database is also
// where policy's managed API keys live: their table is one of this
// package's migrations, and OpenDB opens the database for them.
//
// It imports nothing of the gateway's but other leaf packages, so policy,
// gateway and cmd/gateway import it and never the reverse.
package ledger

import "time"

// UsageRecord is what one finished request cost: one per request, whether
// it succeeded, failed or was cancelled.
type UsageRecord struct {
	RequestID    string    `json:"requestId"`
	Time         time.Time `json:"time"`
	Workspace    string    `json:"workspace"`
	CredentialID string    `json:"credentialId"`
	Persona      string    `json:"persona"`
	Model        string    `json:"model"`
	Provider     string    `json:"provider"`
	Stream       bool      `json:"stream"`
	// InputTokens is all the input, the prompt cache's reads and writes
	// included; the Cache fields say how much of it the cache served or
	// stored.
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	// CacheReadTokens, CacheWrite5mTokens and CacheWrite1hTokens are the
	// input tokens the upstream's prompt cache served, and stored with
	// the 5-minute and the 1-hour TTL.
	CacheReadTokens    int64 `json:"cacheReadTokens,omitempty"`
	CacheWrite5mTokens int64 `json:"cacheWrite5mTokens,omitempty"`
	CacheWrite1hTokens int64 `json:"cacheWrite1hTokens,omitempty"`
	Estimated          bool  `json:"estimated,omitempty"`
	CostUsdMicros      int64 `json:"costUsdMicros"`
	// CacheSavingsUsdMicros is what the prompt cache saved: the cost of
	// the same tokens all at the input price, less CostUsdMicros, at the
	// prices of the time. Negative when writes cost more than reads saved.
	CacheSavingsUsdMicros int64 `json:"cacheSavingsUsdMicros,omitempty"`
	LatencyMs             int64 `json:"latencyMs"`
	// Status is the HTTP status the client got (200 for a stream that
	// started, even if it later ended with an error event; 499 when the
	// client left).
	Status int `json:"status"`
	// ErrorCode is the API error code, empty on success.
	ErrorCode string `json:"errorCode,omitempty"`
	// Route is the route template of an SDK-compatible request
	// ("/v1/chat/completions", "/v1/messages"); empty for the persona
	// route, so its records read as before.
	Route string `json:"route,omitempty"`
}

// Ledger stores usage records. Record must not block the request path for
// long; Close flushes everything accepted and releases the store.
type Ledger interface {
	Record(r UsageRecord)
	Close() error
}
