package providers

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/moonborn/edge/internal/jsonx"
)

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
	Role Role
	Text string
	// Parts is set only for a user turn that carries images: its text and
	// image parts in order (Text is then the text parts joined).
	Parts      []Part
	ToolCalls  []ToolCall
	ToolCallID string
	// IsError marks a tool result that reports a failure (Anthropic's
	// is_error); OpenAI has no such flag, so it is refused there.
	IsError bool
	// Cache marks a prompt-cache breakpoint on the turn's last content
	// block (Anthropic's cache_control); CacheNone for none.
	Cache CacheTTL
}

// Part is one piece of a user turn that mixes text and images: Text, or
// the Image when Image is non-nil.
type Part struct {
	Text  string
	Image *Image
}

// Image is an image a user turn shows the model: base64 Data of
// MediaType, or a URL the upstream fetches itself (exactly one is set).
// Detail is OpenAI's resolution hint ("low", "high"; empty or "auto" is
// the default), which only OpenAI-compatible upstreams understand.
type Image struct {
	MediaType string
	Data      string
	URL       string
	Detail    string
}

// imageMediaTypes are the image types both wire protocols accept inline.
var imageMediaTypes = [...]string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// ParseImageURL reads an image given as a URL, as OpenAI's image_url parts
// carry it: a base64 data URL of an image type both protocols accept
// ("data:image/png;base64,…"), or an absolute http(s) URL.
func ParseImageURL(u string) (Image, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		mt, data, ok := strings.Cut(rest, ";base64,")
		if !ok || data == "" {
			return Image{}, errors.New("must be a base64 data URL (data:image/png;base64,…) or an http(s) URL")
		}
		return NewInlineImage(mt, data)
	}
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return Image{}, errors.New("must be a base64 data URL (data:image/png;base64,…) or an http(s) URL")
	}
	return Image{URL: u}, nil
}

// NewInlineImage checks an inline image: one of the media types both
// protocols accept, and base64 data.
func NewInlineImage(mediaType, data string) (Image, error) {
	known := false
	for _, t := range imageMediaTypes {
		known = known || t == mediaType
	}
	if !known {
		return Image{}, errors.New("media type must be image/jpeg, image/png, image/gif or image/webp")
	}
	if _, err := base64.StdEncoding.DecodeString(data); err != nil {
		return Image{}, errors.New("data must be base64")
	}
	return Image{MediaType: mediaType, Data: data}, nil
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
	// Cache marks a prompt-cache breakpoint on the tool's definition
	// (Anthropic's cache_control); CacheNone for none.
	Cache CacheTTL
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

// AppendTemperature appends `,"temperature":t`, the member both HTTP
// wire protocols name alike, when r carries a finite temperature (NaN
// and ±Inf have no JSON form and are left out).
func AppendTemperature(dst []byte, r *Request) []byte {
	if r.HasTemperature && !math.IsNaN(r.Temperature) && !math.IsInf(r.Temperature, 0) {
		dst = append(dst, `,"temperature":`...)
		dst = strconv.AppendFloat(dst, r.Temperature, 'g', -1, 64)
	}
	return dst
}

// AppendTopP appends `,"top_p":p`, named alike on both HTTP wire
// protocols, when r carries one that is a number (NaN has no JSON form).
func AppendTopP(dst []byte, r *Request) []byte {
	if r.HasTopP && !math.IsNaN(r.TopP) {
		dst = append(dst, `,"top_p":`...)
		dst = strconv.AppendFloat(dst, r.TopP, 'g', -1, 64)
	}
	return dst
}

// AppendStop appends r's stop sequences as the member field (Anthropic's
// stop_sequences, OpenAI's stop), an array of strings, when it has any.
func AppendStop(dst []byte, field string, r *Request) []byte {
	if len(r.Stop) > 0 {
		dst = append(dst, `,"`...)
		dst = append(dst, field...)
		dst = append(dst, `":`...)
		dst = jsonx.AppendStrings(dst, r.Stop)
	}
	return dst
}

// AppendTextPart appends {"type":"text","text":text}: an Anthropic text
// block and an OpenAI text content part are spelled alike.
func AppendTextPart(dst []byte, text string) []byte {
	dst = append(dst, `{"type":"text","text":`...)
	dst = jsonx.AppendString(dst, text)
	return append(dst, '}')
}

// AppendToolName appends a tool's "name" member and, when it has one, its
// "description", which both HTTP wire protocols spell alike inside their
// own tool objects (dst ends just after the object's opening brace, or a
// member before the name's key: the name is written without a comma).
func AppendToolName(dst []byte, t *Tool) []byte {
	dst = append(dst, `"name":`...)
	dst = jsonx.AppendString(dst, t.Name)
	if t.Description != "" {
		dst = append(dst, `,"description":`...)
		dst = jsonx.AppendString(dst, t.Description)
	}
	return dst
}

// AppendTools appends `,"tools":[…]` when r offers tools, each written
// by the wire protocol's tool (which may start with AppendToolName).
func AppendTools(dst []byte, r *Request, tool func(dst []byte, t *Tool) []byte) []byte {
	if len(r.Tools) == 0 {
		return dst
	}
	dst = append(dst, `,"tools":[`...)
	for i := range r.Tools {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = tool(dst, &r.Tools[i])
	}
	return append(dst, ']')
}
