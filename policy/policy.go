// Package policy decides who a caller is and what they may spend:
// authentication (API keys, session JWTs), prices and cost, and the usage
// ledger every finished request is recorded in. Limits and quotas join it
// later. It imports neither gateway nor providers.
package policy

import "time"

// Principal is an authenticated caller.
type Principal struct {
	// Workspace the credential is bound to.
	Workspace string
	// CredentialID is the API key's id, or the JWT's subject.
	CredentialID string
	// Kind is "api_key" or "jwt".
	Kind string
	// Limits are a managed key's own limits (shared, read-only); nil for
	// config keys, JWTs and managed keys without their own.
	Limits *CredentialLimits
}

// UsageRecord is what one finished request cost: one per request, whether
// it succeeded, failed or was cancelled.
type UsageRecord struct {
	RequestID     string    `json:"requestId"`
	Time          time.Time `json:"time"`
	Workspace     string    `json:"workspace"`
	CredentialID  string    `json:"credentialId"`
	Persona       string    `json:"persona"`
	Model         string    `json:"model"`
	Provider      string    `json:"provider"`
	Stream        bool      `json:"stream"`
	InputTokens   int64     `json:"inputTokens"`
	OutputTokens  int64     `json:"outputTokens"`
	Estimated     bool      `json:"estimated,omitempty"`
	CostUsdMicros int64     `json:"costUsdMicros"`
	LatencyMs     int64     `json:"latencyMs"`
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
