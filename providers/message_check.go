package providers

// FieldError says a request cannot be translated faithfully for a wire
// protocol: Field names the canonical field (as OpenAI spells it), Rule
// why. The gateway answers it with a 400 before any upstream is called.
type FieldError struct {
	Field, Rule string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Rule }

// Checker is implemented by providers that can say, before calling, that
// a request would not survive their wire protocol. Protocols that can
// carry everything need not implement it.
type Checker interface {
	Check(r *Request) *FieldError
}

// Check checks r against every deployment, so that whichever one
// answers (failover, hedging) the request means the same thing.
func (p *Pool) Check(r *Request) *FieldError {
	for _, d := range p.deps {
		if c, ok := d.provider.(Checker); ok {
			if fe := c.Check(r); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// ToolCalls implements ToolCallStream for the deployment's stream.
func (s *poolStream) ToolCalls() []ToolCall {
	if ts, ok := s.st.(ToolCallStream); ok {
		return ts.ToolCalls()
	}
	return nil
}

// FinishReason implements ToolCallStream for the deployment's stream.
func (s *poolStream) FinishReason() string {
	if ts, ok := s.st.(ToolCallStream); ok {
		return ts.FinishReason()
	}
	return ""
}
