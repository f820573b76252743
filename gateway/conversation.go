package gateway

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/internal/jsonx"
	"github.com/moonborn/edge/providers"
)

// conversation is a decoded request of an SDK-compatible route (OpenAI
// chat completions, Anthropic messages), in canonical form, before the
// persona and model are resolved. Field names in errors are the wire
// protocol's own, so a 400 names what the caller sent.
type conversation struct {
	model  string
	system []string // the caller's leading system texts, in order
	// systemCache are the caller's breakpoints in those texts.
	systemCache    []systemBreak
	req            providers.Request
	maxTokens      int64
	hasMaxTokens   bool
	maxTokensField string
	stream         bool
	includeUsage   bool
}

// systemBreak is a caller's cache breakpoint in its system text: after
// byte at of system[part].
type systemBreak struct {
	part, at int
	ttl      providers.CacheTTL
}

// personaModelPrefix introduces a persona in the model field: the
// mechanism every SDK supports without custom headers or options, visible
// in the caller's own code and logs. "persona/psn_x" uses the persona's
// default model; "persona/psn_x/model-id" picks one of its allowed models.
const personaModelPrefix = "persona/"

// badRequest is a validation error naming the field: the persona route's
// 422, which the SDK routes answer as 400 (see sdkStatus), the status
// their SDKs raise BadRequestError for.
func badRequest(field, rule string) *apiError { return validationError(field, rule) }

// resolveConversation applies the persona named by the model field (if
// any) and the model, filling x.req: the persona's prompt first, then the
// caller's leading system messages; the persona's temperature and output
// cap unless the caller set them; its allowed models.
func (s *Server) resolveConversation(x *exchange, c *conversation) error {
	modelID := c.model
	var p *persona.Persona
	if rest, ok := strings.CutPrefix(modelID, personaModelPrefix); ok {
		id, m, _ := strings.Cut(rest, "/")
		x.personaID = id
		if !persona.ValidID(id) {
			return personaNotFound(id)
		}
		var err error
		p, err = x.st.Personas.Resolve(context.Background(), x.principal.Workspace, id, x.start)
		if err != nil {
			if errors.Is(err, persona.ErrNotFound) {
				return personaNotFound(id)
			}
			return err
		}
		modelID = m
		if modelID == "" {
			modelID = p.DefaultModel
		}
	}
	m := x.st.Models[modelID]
	if m == nil {
		return notFoundError("model: unknown model " + strconv.Quote(modelID))
	}
	if p != nil && len(p.AllowedModels) > 0 && !contains(p.AllowedModels, m.ID) {
		return badRequest("model", "model "+strconv.Quote(m.ID)+" is not allowed for this persona")
	}
	x.model = m
	x.stream = c.stream
	req := &x.req
	*req = c.req
	req.Observer = x
	req.Model = m.UpstreamModel
	var sys []string
	if p != nil && p.SystemPrompt != "" {
		sys = append(sys, p.SystemPrompt)
	}
	sys = append(sys, c.system...)
	req.System = strings.Join(sys, "\n\n")
	req.SystemCache = nil
	for _, b := range c.systemCache {
		at := b.at
		for _, t := range sys[:b.part+len(sys)-len(c.system)] {
			at += len(t) + len("\n\n")
		}
		req.SystemCache = append(req.SystemCache, providers.CacheBreak{At: at, TTL: b.ttl})
	}
	if p != nil {
		cachePersona(x, p, len(p.SystemPrompt))
	}
	switch {
	case req.HasTemperature:
	case p != nil && p.Temperature != nil:
		req.Temperature, req.HasTemperature = *p.Temperature, true
	case m.Temperature != nil:
		req.Temperature, req.HasTemperature = *m.Temperature, true
	}
	switch {
	case c.hasMaxTokens:
		if c.maxTokens > int64(m.MaxOutputTokens) {
			return badRequest(c.maxTokensField, "must be at most "+strconv.Itoa(m.MaxOutputTokens)+" for model "+m.ID)
		}
		req.MaxOutputTokens = int(c.maxTokens)
	case p != nil && p.MaxOutputTokens > 0:
		req.MaxOutputTokens = min(p.MaxOutputTokens, m.MaxOutputTokens)
	default:
		req.MaxOutputTokens = m.MaxOutputTokens
	}
	if ch, ok := m.Provider.(providers.Checker); ok {
		if fe := ch.Check(req); fe != nil {
			return badRequest(fe.Field, fe.Rule+" by the deployments serving model "+m.ID)
		}
	}
	return nil
}

// jsonWhole reads a whole number ≥ min.
func jsonWhole(v []byte, field string, least int64) (int64, *apiError) {
	f, err := jsonx.Float(v)
	if err != nil {
		return 0, badRequest(field, "must be an integer")
	}
	if f != math.Trunc(f) || f < float64(least) || f > 1<<53 {
		return 0, badRequest(field, "must be a whole number of at least "+strconv.FormatInt(least, 10))
	}
	return int64(f), nil
}

// jsonRange reads a number in [lo, hi].
func jsonRange(v []byte, field string, lo, hi float64) (float64, *apiError) {
	f, err := jsonx.Float(v)
	if err != nil {
		return 0, badRequest(field, "must be a number")
	}
	if math.IsNaN(f) || f < lo || f > hi {
		return 0, badRequest(field, "must be between "+strconv.FormatFloat(lo, 'g', -1, 64)+" and "+strconv.FormatFloat(hi, 'g', -1, 64))
	}
	return f, nil
}

// jsonStr reads a string value.
func jsonStr(v []byte, field string) (string, *apiError) {
	s, ok := jsonText(v)
	if !ok {
		return "", badRequest(field, "must be a string")
	}
	return string(s), nil
}

// jsonBool reads a boolean.
func jsonBool(v []byte, field string) (bool, *apiError) {
	switch string(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, badRequest(field, "must be a boolean")
}

// jsonStop reads a stop-sequence field: a string or an array of strings.
func jsonStop(v []byte, field string, max int) ([]string, *apiError) {
	if len(v) > 0 && v[0] == '"' {
		s, ae := jsonStr(v, field)
		return []string{s}, ae
	}
	arr, err := jsonx.NewArray(v)
	if err != nil {
		return nil, badRequest(field, "must be a string or an array of strings")
	}
	var out []string
	for el, ok := arr.Element(); ok; el, ok = arr.Element() {
		s, ae := jsonStr(el, field+"["+strconv.Itoa(len(out))+"]")
		if ae != nil {
			return nil, ae
		}
		out = append(out, s)
	}
	if arr.Err() != nil {
		return nil, badRequest("body", "malformed JSON")
	}
	if max > 0 && len(out) > max {
		return nil, badRequest(field, "at most "+strconv.Itoa(max)+" sequences")
	}
	return out, nil
}

// sdkBody is one SDK route's part of the body walk both routes share
// (decodeSDKBody): how its messages and other members decode, and how it
// words a missing field. The zero value is not usable; each route has one
// package-level value, read only.
type sdkBody struct {
	// messages decodes the (non-null) messages member into c.
	messages func(v []byte, c *conversation) *apiError
	// member decodes any other non-null member but model into c.
	member func(key, v []byte, c *conversation) *apiError
	// required is the rule a missing required field is refused with.
	required string
	// noMessages is the rule for messages that hold no turn.
	noMessages string
	// needMaxTokens makes max_tokens required (Anthropic's Messages API).
	needMaxTokens bool
}

// decodeSDKBody walks an SDK route's body into c: the shared checks, the
// members (nulls skipped, the first error stops the walk), the required
// fields, then the tool choice against the tools offered. Failures are
// 400s naming the field as the route's protocol spells it.
func decodeSDKBody(body []byte, c *conversation, d *sdkBody) *apiError {
	if ae := checkBody(body); ae != nil {
		return ae
	}
	obj, _ := jsonx.NewObject(body)
	hasModel, hasMessages := false, false
	c.maxTokensField = "max_tokens"
	var ae *apiError
	for key, v, ok := obj.Member(); ok && ae == nil; key, v, ok = obj.Member() {
		if jsonx.IsNull(v) {
			continue
		}
		switch {
		case jsonx.KeyIs(key, "model"):
			c.model, ae = jsonStr(v, "model")
			hasModel = true
		case jsonx.KeyIs(key, "messages"):
			hasMessages = true
			ae = d.messages(v, c)
		default:
			ae = d.member(key, v, c)
		}
	}
	if ae != nil {
		return ae
	}
	switch {
	case !hasModel || c.model == "":
		return badRequest("model", d.required)
	case d.needMaxTokens && !c.hasMaxTokens:
		return badRequest("max_tokens", d.required)
	case !hasMessages:
		return badRequest("messages", d.required)
	case len(c.req.Messages) == 0:
		return badRequest("messages", d.noMessages)
	}
	return checkToolChoice(&c.req, "tool_choice")
}

// elements walks an array in an SDK body in the manner of
// bufio.Scanner: next and nextObject report false at the end or at the
// first element refused, and err says which. name spells an element's
// field as the route's protocol spells an index (Anthropic's tools.0,
// OpenAI's tools[0]). The body was checked whole by checkBody, so no
// syntax error surfaces mid-walk. Build one with anthropicArray or
// openAIArray.
//
// The array's field name is passed to each call rather than kept here:
// escape analysis does not tell one field of a struct from another, so a
// name kept beside err (which callers return) would escape, and a caller
// that builds it (messages[0].content) would allocate it on the heap.
type elements struct {
	arr         jsonx.Iter
	open, close string // around an index: "[" "]" (OpenAI) or "." ""
	i           int    // the index of the element last read; -1 before
	err         *apiError
}

// anthropicArray walks v (field) naming elements field.0, field.1, …;
// rule refuses a v that is not an array.
func anthropicArray(v []byte, field, rule string) elements {
	return newElements(v, field, rule, ".", "")
}

// openAIArray walks v (field) naming elements field[0], field[1], …;
// rule refuses a v that is not an array.
func openAIArray(v []byte, field, rule string) elements {
	return newElements(v, field, rule, "[", "]")
}

func newElements(v []byte, field, rule, open, close string) elements {
	e := elements{open: open, close: close, i: -1}
	arr, err := jsonx.NewArray(v)
	if err != nil {
		e.err = badRequest(field, rule)
	}
	e.arr = arr
	return e
}

// next returns the next element.
func (e *elements) next() (el []byte, ok bool) {
	if e.err != nil {
		return nil, false
	}
	if el, ok = e.arr.Element(); ok {
		e.i++
	}
	return el, ok
}

// nextObject is next for arrays of objects: an element that is not an
// object ends the walk with "must be an object" in err, naming it in the
// array field.
func (e *elements) nextObject(field string) (obj jsonx.Iter, ok bool) {
	el, ok := e.next()
	if !ok {
		return obj, false
	}
	obj, err := jsonx.NewObject(el)
	if err != nil {
		e.err = badRequest(e.name(field), "must be an object")
		return obj, false
	}
	return obj, true
}

// name is the field name of the element last read in the array field.
// It is small enough to inline, so the name is built on the caller's
// stack when the caller keeps it only to name fields in errors.
func (e *elements) name(field string) string {
	return field + e.open + strconv.Itoa(e.i) + e.close
}

// checkBody applies the checks every SDK route shares before walking.
func checkBody(body []byte) *apiError {
	if !jsonx.IsObject(body) {
		return badRequest("body", "must be a JSON object")
	}
	if !jsonx.Valid(body) {
		return badRequest("body", "malformed JSON")
	}
	if !utf8Valid(body) {
		return badRequest("body", "must be valid UTF-8")
	}
	return nil
}
