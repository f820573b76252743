// Package policy decides who a caller is and what they may spend:
// authentication (API keys, session JWTs, the managed key store), rate
// limits and monthly quotas (local or in Redis), and prices and cost. The
// usage ledger every finished request is recorded in is its own package,
// policy/ledger, which the key store shares a database with. It imports
// neither gateway nor providers.
package policy

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
