package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ServerConfig is the wire server's behaviour: delays, answer length and
// fault knobs. The zero value (after SetDefaults) is a healthy, instant
// server. It is a plain value; the Server swaps whole configs atomically,
// so a request sees one consistent config from start to end.
//
// As JSON (GET/PUT /_mock/config) the fields use the yaml names below and
// durations are strings such as "20ms".
type ServerConfig struct {
	// TimeToFirstToken is waited before the first byte of a stream (the
	// response headers go out with the first event) and before a
	// non-streaming reply. Default 0; must be ≥ 0.
	TimeToFirstToken time.Duration `yaml:"timeToFirstToken"`
	// TokenDelay is waited between deltas; a non-streaming reply waits it
	// once per token after the first. Default 0; must be ≥ 0.
	TokenDelay time.Duration `yaml:"tokenDelay"`
	// OutputTokens is the answer length when max_tokens does not cut it.
	// Default 20; 1 to 1,000,000.
	OutputTokens int `yaml:"outputTokens"`
	// FailStatus, when non-zero, answers requests with this status and the
	// protocol's genuine error body instead of an answer. 0 (default) is
	// off; else 400–599.
	FailStatus int `yaml:"failStatus"`
	// FailCount limits FailStatus to the first N requests after the config
	// was set, after which the server recovers. 0 (default) fails every
	// request while FailStatus is set; must be ≥ 0.
	FailCount int `yaml:"failCount"`
	// RetryAfter is sent as the retry-after header (seconds, fractions
	// allowed) on injected 429, 503 and 529 replies. 0 (default) sends
	// none; must be ≥ 0.
	RetryAfter time.Duration `yaml:"retryAfter"`
	// StallFor delays every answer by this long before anything is
	// written, on top of TimeToFirstToken. A negative value stalls until
	// the client goes away (or the server shuts down): no status line is
	// ever sent. Default 0 (no stall).
	StallFor time.Duration `yaml:"stallFor"`
	// CutAfterTokens, when > 0, breaks the reply. A stream closes the TCP
	// connection after that many deltas, with neither the protocol's end
	// marker nor the final HTTP chunk (it completes normally if the answer
	// is shorter). A non-streaming reply sends its headers with the full
	// Content-Length but only half the body, then closes. 0 (default) is
	// off; must be ≥ 0.
	CutAfterTokens int `yaml:"cutAfterTokens"`
	// ErrorEventAfterTokens, when > 0, ends a stream after that many
	// deltas with the protocol's mid-stream error (OpenAI: a data line
	// holding an "error" object; Anthropic: event: error with
	// overloaded_error) and no end marker. 0 (default) is off; must be ≥ 0.
	ErrorEventAfterTokens int `yaml:"errorEventAfterTokens"`
	// ChoicesNull makes the OpenAI usage chunk carry "choices":null
	// instead of "choices":[] (some OpenAI-compatible servers do).
	// Default false.
	ChoicesNull bool `yaml:"choicesNull"`
	// APIKey, when set, is required as "Authorization: Bearer KEY" (OpenAI)
	// or "x-api-key: KEY" (Anthropic); otherwise the server answers 401 in
	// the protocol's format. Default "" (no auth). Never reported back.
	APIKey string `yaml:"apiKey"`

	// PromptCacheOff turns the simulated prompt caches off: every reply
	// reports zero cache tokens, markers are still checked. Default false
	// (caching on).
	PromptCacheOff bool `yaml:"promptCacheOff"`
	// AnthropicMinCacheTokens is the shortest prefix (in the mock's
	// tokens) an Anthropic cache_control breakpoint caches; shorter ones
	// are silently not cached, as Anthropic does. Default 1024; ≥ 0.
	AnthropicMinCacheTokens int `yaml:"anthropicMinCacheTokens"`
	// OpenAIMinCacheTokens is the prompt length from which OpenAI's
	// automatic caching applies; cached prefixes then grow in steps of
	// 128 tokens. Default 1024; ≥ 0.
	OpenAIMinCacheTokens int `yaml:"openAIMinCacheTokens"`
	// PromptCacheTTL5m is how long an Anthropic "5m" breakpoint (the
	// default TTL) lives after its last write or read. Default 5m; ≥ 0.
	// Tests shorten it to see an expiry.
	PromptCacheTTL5m time.Duration `yaml:"promptCacheTTL5m"`
	// PromptCacheTTL1h is the same for "ttl":"1h" breakpoints. Default
	// 1h; ≥ 0.
	PromptCacheTTL1h time.Duration `yaml:"promptCacheTTL1h"`
	// PromptCacheTTLOpenAI is how long an OpenAI cached prefix survives
	// without use. Default 5m; ≥ 0.
	PromptCacheTTLOpenAI time.Duration `yaml:"promptCacheTTLOpenAI"`
	// PromptCacheMaxEntries bounds the cache (both protocols together):
	// past it the least recently used prefix goes. An entry is about 100
	// bytes. Default 10,000; ≥ 0.
	PromptCacheMaxEntries int `yaml:"promptCacheMaxEntries"`
}

// Prompt cache defaults, the providers' own figures.
const (
	DefaultMinCacheTokens        = 1024
	DefaultPromptCacheMaxEntries = 10000
)

// SetDefaults fills zero fields with their defaults.
func (c *ServerConfig) SetDefaults() {
	if c.OutputTokens == 0 {
		c.OutputTokens = DefaultOutputTokens
	}
	if c.AnthropicMinCacheTokens == 0 {
		c.AnthropicMinCacheTokens = DefaultMinCacheTokens
	}
	if c.OpenAIMinCacheTokens == 0 {
		c.OpenAIMinCacheTokens = DefaultMinCacheTokens
	}
	if c.PromptCacheTTL5m == 0 {
		c.PromptCacheTTL5m = 5 * time.Minute
	}
	if c.PromptCacheTTL1h == 0 {
		c.PromptCacheTTL1h = time.Hour
	}
	if c.PromptCacheTTLOpenAI == 0 {
		c.PromptCacheTTLOpenAI = 5 * time.Minute
	}
	if c.PromptCacheMaxEntries == 0 {
		c.PromptCacheMaxEntries = DefaultPromptCacheMaxEntries
	}
}

// Validate reports every invalid field, each message prefixed with the
// field's path.
func (c *ServerConfig) Validate() error {
	var errs []error
	nonNeg := func(name string, bad bool) {
		if bad {
			errs = append(errs, errors.New(name+": must be ≥ 0"))
		}
	}
	nonNeg("timeToFirstToken", c.TimeToFirstToken < 0)
	nonNeg("tokenDelay", c.TokenDelay < 0)
	if c.OutputTokens < 1 || c.OutputTokens > maxOutputTokens {
		errs = append(errs, fmt.Errorf("outputTokens: must be between 1 and %d", maxOutputTokens))
	}
	if c.FailStatus != 0 && (c.FailStatus < 400 || c.FailStatus > 599) {
		errs = append(errs, errors.New("failStatus: must be 0 or between 400 and 599"))
	}
	nonNeg("failCount", c.FailCount < 0)
	nonNeg("retryAfter", c.RetryAfter < 0)
	nonNeg("cutAfterTokens", c.CutAfterTokens < 0)
	nonNeg("errorEventAfterTokens", c.ErrorEventAfterTokens < 0)
	nonNeg("anthropicMinCacheTokens", c.AnthropicMinCacheTokens < 0)
	nonNeg("openAIMinCacheTokens", c.OpenAIMinCacheTokens < 0)
	nonNeg("promptCacheTTL5m", c.PromptCacheTTL5m < 0)
	nonNeg("promptCacheTTL1h", c.PromptCacheTTL1h < 0)
	nonNeg("promptCacheTTLOpenAI", c.PromptCacheTTLOpenAI < 0)
	nonNeg("promptCacheMaxEntries", c.PromptCacheMaxEntries < 0)
	return errors.Join(errs...)
}

// configJSON is ServerConfig's JSON form.
type configJSON struct {
	TimeToFirstToken      jsonDuration `json:"timeToFirstToken"`
	TokenDelay            jsonDuration `json:"tokenDelay"`
	OutputTokens          int          `json:"outputTokens"`
	FailStatus            int          `json:"failStatus"`
	FailCount             int          `json:"failCount"`
	RetryAfter            jsonDuration `json:"retryAfter"`
	StallFor              jsonDuration `json:"stallFor"`
	CutAfterTokens        int          `json:"cutAfterTokens"`
	ErrorEventAfterTokens int          `json:"errorEventAfterTokens"`
	ChoicesNull           bool         `json:"choicesNull"`
	// APIKey is accepted on input and never written.
	APIKey string `json:"apiKey,omitempty"`
	// APIKeySet is written instead of the key. On input, true with no
	// apiKey keeps the key already configured, so a GET body can be edited
	// and PUT back.
	APIKeySet bool `json:"apiKeySet,omitempty"`

	PromptCacheOff          bool         `json:"promptCacheOff"`
	AnthropicMinCacheTokens int          `json:"anthropicMinCacheTokens"`
	OpenAIMinCacheTokens    int          `json:"openAIMinCacheTokens"`
	PromptCacheTTL5m        jsonDuration `json:"promptCacheTTL5m"`
	PromptCacheTTL1h        jsonDuration `json:"promptCacheTTL1h"`
	PromptCacheTTLOpenAI    jsonDuration `json:"promptCacheTTLOpenAI"`
	PromptCacheMaxEntries   int          `json:"promptCacheMaxEntries"`
}

// MarshalJSON writes the config with durations as strings and the API key
// replaced by "apiKeySet".
func (c ServerConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(configJSON{
		TimeToFirstToken:      jsonDuration(c.TimeToFirstToken),
		TokenDelay:            jsonDuration(c.TokenDelay),
		OutputTokens:          c.OutputTokens,
		FailStatus:            c.FailStatus,
		FailCount:             c.FailCount,
		RetryAfter:            jsonDuration(c.RetryAfter),
		StallFor:              jsonDuration(c.StallFor),
		CutAfterTokens:        c.CutAfterTokens,
		ErrorEventAfterTokens: c.ErrorEventAfterTokens,
		ChoicesNull:           c.ChoicesNull,
		APIKeySet:             c.APIKey != "",

		PromptCacheOff:          c.PromptCacheOff,
		AnthropicMinCacheTokens: c.AnthropicMinCacheTokens,
		OpenAIMinCacheTokens:    c.OpenAIMinCacheTokens,
		PromptCacheTTL5m:        jsonDuration(c.PromptCacheTTL5m),
		PromptCacheTTL1h:        jsonDuration(c.PromptCacheTTL1h),
		PromptCacheTTLOpenAI:    jsonDuration(c.PromptCacheTTLOpenAI),
		PromptCacheMaxEntries:   c.PromptCacheMaxEntries,
	})
}

// UnmarshalJSON reads the JSON form strictly: unknown fields are errors.
// "apiKeySet":true without "apiKey" leaves c.APIKey as it was.
func (c *ServerConfig) UnmarshalJSON(b []byte) error {
	var j configJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	key := j.APIKey
	if key == "" && j.APIKeySet {
		key = c.APIKey
	}
	*c = ServerConfig{
		TimeToFirstToken:      time.Duration(j.TimeToFirstToken),
		TokenDelay:            time.Duration(j.TokenDelay),
		OutputTokens:          j.OutputTokens,
		FailStatus:            j.FailStatus,
		FailCount:             j.FailCount,
		RetryAfter:            time.Duration(j.RetryAfter),
		StallFor:              time.Duration(j.StallFor),
		CutAfterTokens:        j.CutAfterTokens,
		ErrorEventAfterTokens: j.ErrorEventAfterTokens,
		ChoicesNull:           j.ChoicesNull,
		APIKey:                key,

		PromptCacheOff:          j.PromptCacheOff,
		AnthropicMinCacheTokens: j.AnthropicMinCacheTokens,
		OpenAIMinCacheTokens:    j.OpenAIMinCacheTokens,
		PromptCacheTTL5m:        time.Duration(j.PromptCacheTTL5m),
		PromptCacheTTL1h:        time.Duration(j.PromptCacheTTL1h),
		PromptCacheTTLOpenAI:    time.Duration(j.PromptCacheTTLOpenAI),
		PromptCacheMaxEntries:   j.PromptCacheMaxEntries,
	}
	return nil
}

// jsonDuration is a time.Duration written and read as a Go duration string.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`duration must be a string such as "20ms"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = jsonDuration(v)
	return nil
}
