package gateway

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/moonborn/edge/internal/jsonx"
)

// chatRequest is the decoded body of POST /v1/personas/{id}/chat. A Has*
// flag is false when the field was absent or null ("null means absent",
// API.md). ModelID aliases the request body: use it before the handler
// returns.
type chatRequest struct {
	UserText           string
	HasUserText        bool
	ModelID            []byte
	HasModelID         bool
	Temperature        float64
	HasTemperature     bool
	MaxOutputTokens    float64
	HasMaxOutputTokens bool
	MemoryDigest       string
	Stream             bool
}

// decodeChatRequest parses and checks the body on its own terms (shape,
// types, ranges that need no persona or model). Every failure is a 422
// naming the field and the rule. It walks the body in place with the
// allocation-free JSON iterator, which accepts exactly what encoding/json
// accepts; unknown fields are validated and ignored.
func decodeChatRequest(body []byte) (chatRequest, *apiError) {
	var req chatRequest
	if !jsonx.IsObject(body) {
		return req, validationError("body", "must be a JSON object")
	}
	if !utf8.Valid(body) {
		return req, validationError("body", "must be valid UTF-8")
	}
	obj, err := jsonx.NewObject(body)
	if err != nil {
		return req, validationError("body", "malformed JSON")
	}
	var typeErr *apiError // the first wrong type; syntax errors win over it
	for key, v, ok := obj.Member(); ok; key, v, ok = obj.Member() {
		if jsonx.IsNull(v) {
			continue
		}
		typeErr = decodeChatMember(&req, key, v, typeErr)
	}
	if obj.Err() != nil {
		return req, validationError("body", "malformed JSON")
	}
	if typeErr != nil {
		return req, typeErr
	}
	return req, checkChatRequest(&req)
}

// decodeChatMember stores one non-null member of the body in req and
// returns the first type error so far (typeErr, or this member's).
func decodeChatMember(req *chatRequest, key, v []byte, typeErr *apiError) *apiError {
	switch {
	case jsonx.KeyIs(key, "userText"):
		s, ok := jsonText(v)
		if !ok {
			return firstErr(typeErr, "userText", "must be a string")
		}
		req.UserText, req.HasUserText = string(s), true
	case jsonx.KeyIs(key, "modelId"):
		s, ok := jsonText(v)
		if !ok {
			return firstErr(typeErr, "modelId", "must be a string")
		}
		req.ModelID, req.HasModelID = s, true
	case jsonx.KeyIs(key, "memoryDigest"):
		s, ok := jsonText(v)
		if !ok {
			return firstErr(typeErr, "memoryDigest", "must be a string")
		}
		req.MemoryDigest = string(s)
	case jsonx.KeyIs(key, "temperature"):
		f, err := jsonNumber(v)
		if err != nil {
			return firstErr(typeErr, "temperature", "must be a number")
		}
		req.Temperature, req.HasTemperature = f, true
	case jsonx.KeyIs(key, "maxOutputTokens"):
		f, err := jsonNumber(v)
		if err != nil {
			return firstErr(typeErr, "maxOutputTokens", "must be a number")
		}
		req.MaxOutputTokens, req.HasMaxOutputTokens = f, true
	case jsonx.KeyIs(key, "stream"):
		switch string(v) {
		case "true":
			req.Stream = true
		case "false":
			req.Stream = false
		default:
			return firstErr(typeErr, "stream", "must be a boolean")
		}
	}
	return typeErr
}

// checkChatRequest applies the rules that need the whole body: required
// fields and ranges.
func checkChatRequest(req *chatRequest) *apiError {
	if !req.HasUserText {
		return validationError("userText", "is required")
	}
	if strings.TrimSpace(req.UserText) == "" {
		return validationError("userText", "must not be empty")
	}
	if req.HasModelID && len(req.ModelID) == 0 {
		return validationError("modelId", "must not be empty")
	}
	if t := req.Temperature; req.HasTemperature && (t < 0 || t > 2 || math.IsNaN(t)) {
		return validationError("temperature", "must be between 0 and 2")
	}
	if m := req.MaxOutputTokens; req.HasMaxOutputTokens && (m < 1 || m != math.Trunc(m)) {
		return validationError("maxOutputTokens", "must be a whole number of at least 1")
	}
	return nil
}

// jsonText decodes a string value; ok is false for any other JSON type.
// The result aliases v when v holds no escapes.
func jsonText(v []byte) ([]byte, bool) {
	if len(v) == 0 || v[0] != '"' {
		return nil, false
	}
	s, err := jsonx.Unquote(nil, v)
	return s, err == nil
}

// jsonNumber reads a number value; strings holding digits are not numbers.
func jsonNumber(v []byte) (float64, error) {
	return jsonx.Float(v)
}

func firstErr(prev *apiError, field, rule string) *apiError {
	if prev != nil {
		return prev
	}
	return validationError(field, rule)
}
