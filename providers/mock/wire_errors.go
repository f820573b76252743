package mock

import (
	"strconv"

	"github.com/moonborn/edge/internal/jsonx"
	"github.com/valyala/fasthttp"
)

// This file holds the error bodies of both protocols, each with the
// status, type and message the real API sends, and the mock's own
// refusals (auth, decoding, shutdown, injected failures) in them.

// writeOpenAIError writes {"error":{"message","type","param","code"}};
// empty param or code are null.
func writeOpenAIError(ctx *fasthttp.RequestCtx, status int, typ, param, code, msg string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"message":`...)
	b = jsonx.AppendString(b, msg)
	b = append(b, `,"type":`...)
	b = jsonx.AppendString(b, typ)
	b = append(b, `,"param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = jsonx.AppendString(b, param)
	}
	b = append(b, `,"code":`...)
	if code == "" {
		b = append(b, "null"...)
	} else {
		b = jsonx.AppendString(b, code)
	}
	b = append(b, "}}"...)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(b)
}

// writeAnthropicError writes {"type":"error","error":{"type","message"}}.
func writeAnthropicError(ctx *fasthttp.RequestCtx, status int, typ, msg string) {
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"type":"error","error":{"type":`...)
	b = jsonx.AppendString(b, typ)
	b = append(b, `,"message":`...)
	b = jsonx.AppendString(b, msg)
	b = append(b, "}}"...)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(b)
}

// openAIErrorFor is the error OpenAI sends with status.
func openAIErrorFor(status int) (typ, code, msg string) {
	switch status {
	case 400:
		return "invalid_request_error", "", "Invalid request."
	case 401:
		return "invalid_request_error", "invalid_api_key", "Incorrect API key provided."
	case 403:
		return "invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"
	case 404:
		return "invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."
	case 429:
		return "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."
	case 500:
		return "server_error", "", "The server had an error while processing your request. Sorry about that!"
	case 503:
		return "server_error", "", "The engine is currently overloaded, please try again later"
	}
	if status < 500 {
		return "invalid_request_error", "", "Invalid request."
	}
	return "server_error", "", "The server had an error while processing your request. Sorry about that!"
}

// anthropicErrorFor is the error Anthropic sends with status.
func anthropicErrorFor(status int) (typ, msg string) {
	switch status {
	case 400:
		return "invalid_request_error", "Invalid request."
	case 401:
		return "authentication_error", "invalid x-api-key"
	case 403:
		return "permission_error", "Your API key does not have permission to use the specified resource."
	case 404:
		return "not_found_error", "Not found."
	case 413:
		return "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case 429:
		return "rate_limit_error", "Number of requests has exceeded your rate limit."
	case 500:
		return "api_error", "Internal server error"
	case 504:
		return "timeout_error", "Request timed out"
	case 529:
		return "overloaded_error", "Overloaded"
	}
	if status < 500 {
		return "invalid_request_error", "Invalid request."
	}
	return "api_error", "Internal server error"
}

// writeInjectedError answers with cfg.FailStatus.
func writeInjectedError(ctx *fasthttp.RequestCtx, cfg *ServerConfig, p protocol) {
	st := cfg.FailStatus
	if cfg.RetryAfter > 0 && (st == 429 || st == 503 || st == 529) {
		ctx.Response.Header.Set("retry-after", strconv.FormatFloat(cfg.RetryAfter.Seconds(), 'f', -1, 64))
	}
	if p == protoOpenAI {
		typ, code, msg := openAIErrorFor(st)
		writeOpenAIError(ctx, st, typ, "", code, msg)
		return
	}
	typ, msg := anthropicErrorFor(st)
	writeAnthropicError(ctx, st, typ, msg)
}

// writeAuthError answers a missing or wrong credential. Like OpenAI, the
// 401 quotes a masked form of a wrong key (first three and last four
// characters), which lets gateway tests check that upstream error bodies
// never reach clients.
func writeAuthError(ctx *fasthttp.RequestCtx, p protocol, present bool) {
	if p == protoAnthropic {
		msg := "invalid x-api-key"
		if !present {
			msg = "x-api-key header is required"
		}
		writeAnthropicError(ctx, 401, "authentication_error", msg)
		return
	}
	if !present {
		writeOpenAIError(ctx, 401, "invalid_request_error", "", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
		return
	}
	h := ctx.Request.Header.Peek("Authorization")
	key := ""
	if len(h) > 7 {
		key = string(h[7:])
	}
	writeOpenAIError(ctx, 401, "invalid_request_error", "", "invalid_api_key",
		"Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.")
}

func maskKey(k string) string {
	if len(k) < 12 {
		return "********"
	}
	return k[:3] + "****************" + k[len(k)-4:]
}

func writeDecodeError(ctx *fasthttp.RequestCtx, p protocol, err error) {
	param := "body"
	if te, ok := err.(*typeError); ok {
		param = te.Param
	} else {
		if p == protoOpenAI {
			writeOpenAIError(ctx, 400, "invalid_request_error", "", "",
				"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
		} else {
			writeAnthropicError(ctx, 400, "invalid_request_error", "There was an error parsing the body of your request: invalid JSON")
		}
		return
	}
	if p == protoOpenAI {
		writeOpenAIError(ctx, 400, "invalid_request_error", param, "invalid_type", "Invalid type for '"+param+"'.")
		return
	}
	writeAnthropicError(ctx, 400, "invalid_request_error", param+": Input has an invalid type")
}

func writeShuttingDown(ctx *fasthttp.RequestCtx, p protocol) {
	ctx.SetConnectionClose()
	if p == protoOpenAI {
		writeOpenAIError(ctx, 503, "server_error", "", "", "The server is shutting down.")
		return
	}
	writeAnthropicError(ctx, 503, "api_error", "The server is shutting down.")
}
