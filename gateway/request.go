package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"unicode/utf8"
)

// chatRequest is the decoded body of POST /v1/personas/{id}/chat. Pointer
// fields are nil when absent or null ("null means absent", API.md).
type chatRequest struct {
	UserText        *string  `json:"userText"`
	ModelID         *string  `json:"modelId"`
	Temperature     *float64 `json:"temperature"`
	MaxOutputTokens *float64 `json:"maxOutputTokens"`
	MemoryDigest    *string  `json:"memoryDigest"`
	Stream          *bool    `json:"stream"`
}

// jsonType names the JSON type a body field must have, for 422 messages.
func jsonType(field string) string {
	switch field {
	case "userText", "modelId", "memoryDigest":
		return "a string"
	case "temperature", "maxOutputTokens":
		return "a number"
	case "stream":
		return "a boolean"
	}
	return ""
}

// decodeChatRequest parses and checks the body on its own terms (shape,
// types, ranges that need no persona or model). Every failure is a 422
// naming the field and the rule.
func decodeChatRequest(body []byte) (chatRequest, *apiError) {
	var req chatRequest
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, validationError("body", "must be a JSON object")
	}
	if !utf8.Valid(body) {
		return req, validationError("body", "must be valid UTF-8")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			field := te.Field
			if i := strings.LastIndexByte(field, '.'); i >= 0 {
				field = field[i+1:]
			}
			if want := jsonType(field); want != "" {
				return req, validationError(field, "must be "+want)
			}
			return req, validationError(field, "has the wrong type")
		case errors.As(err, &se):
			return req, validationError("body", "malformed JSON: "+se.Error())
		default:
			return req, validationError("body", "malformed JSON")
		}
	}
	if req.UserText == nil {
		return req, validationError("userText", "is required")
	}
	if strings.TrimSpace(*req.UserText) == "" {
		return req, validationError("userText", "must not be empty")
	}
	if req.ModelID != nil && *req.ModelID == "" {
		return req, validationError("modelId", "must not be empty")
	}
	if t := req.Temperature; t != nil && (*t < 0 || *t > 2 || math.IsNaN(*t)) {
		return req, validationError("temperature", "must be between 0 and 2")
	}
	if m := req.MaxOutputTokens; m != nil && (*m < 1 || *m != math.Trunc(*m)) {
		return req, validationError("maxOutputTokens", "must be a whole number of at least 1")
	}
	return req, nil
}
