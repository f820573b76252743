package providers

// Role is who speaks a Message.
type Role uint8

// The roles of a conversation. Developer messages (OpenAI's newer name
// for system instructions) arrive as RoleSystem.
const (
	RoleSystem Role = iota + 1
	RoleUser
	RoleAssistant
	RoleTool
)

// Message is one turn of a conversation in a Request. Text is the turn's
// text (parts joined); an assistant turn may carry ToolCalls, and a tool
// turn answers the call named by ToolCallID with its Text.
type Message struct {
	Role       Role
	Text       string
	ToolCalls  []ToolCall
	ToolCallID string
	// IsError marks a tool result that reports a failure (Anthropic's
	// is_error); OpenAI has no such flag, so it is refused there.
	IsError bool
}

// ToolCall is one function call the model asked for. Arguments is the
// JSON object text exactly as the model produced it.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Tool is one function the model may call. Parameters is its JSON Schema
// (an object), kept verbatim; empty means none.
type Tool struct {
	Name        string
	Description string
	Parameters  []byte
}

// ToolChoiceMode says whether and which tool the model must call.
type ToolChoiceMode uint8

// The tool choice modes; the zero value leaves it to the upstream's
// default (auto when tools are given).
const (
	ToolChoiceDefault ToolChoiceMode = iota
	ToolChoiceAuto
	ToolChoiceNone
	ToolChoiceRequired // any tool
	ToolChoiceNamed    // the tool in ToolChoice.Name
)

// ToolChoice is a request's tool choice.
type ToolChoice struct {
	Mode ToolChoiceMode
	Name string
	// NoParallel asks for at most one tool call per turn.
	NoParallel bool
}

// Finish reasons of a completion, in canonical (OpenAI) spelling; each
// protocol maps its own to these.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishToolCalls = "tool_calls"
)

// ToolCallStream is implemented by streams that can carry tool calls: the
// calls and the finish reason are known once Next returned io.EOF (they
// are collected as they stream, so text deltas cost nothing extra).
type ToolCallStream interface {
	ToolCalls() []ToolCall
	FinishReason() string
}

// Conversation reports whether r carries a whole conversation (Messages)
// rather than the persona route's system prompt and one user text.
func (r *Request) Conversation() bool { return len(r.Messages) > 0 }

// LastIsToolResult reports whether the conversation's last turn answers a
// tool call.
func (r *Request) LastIsToolResult() bool {
	return len(r.Messages) > 0 && r.Messages[len(r.Messages)-1].Role == RoleTool
}
