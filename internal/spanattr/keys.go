package spanattr

import "go.opentelemetry.io/otel/attribute"

// Attribute keys both the server span (gateway) and the attempt spans
// (providers) carry, declared once: the GenAI and HTTP semantic
// conventions' and ours.
const (
	RequestModel = attribute.Key("gen_ai.request.model")
	InputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	OutputTokens = attribute.Key("gen_ai.usage.output_tokens")
	CacheRead    = attribute.Key("gen_ai.usage.cache_read.input_tokens")
	HTTPStatus   = attribute.Key("http.response.status_code")
	Outcome      = attribute.Key("moonborn.outcome")
)
