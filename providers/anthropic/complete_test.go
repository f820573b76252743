package anthropic

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

// benchReply is a typical non-streaming reply, with escapes in the text
// as real replies have.
const benchReply = `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello! How can I assist you today?\nI am \"Moon\"."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10,"service_tier":"standard"}}`

// BenchmarkComplete: allocs/op is the client's per-request cost.
func BenchmarkComplete(b *testing.B) { providertest.BenchComplete(b, proto, benchReply, 10) }

func BenchmarkDecodeMessage(b *testing.B) {
	providertest.BenchDecode(b, benchReply, newProvider(b, testConfig("http://127.0.0.1:1")).decodeMessage)
}

// refMessage is the encoding/json decoding the walk replaced, kept as the
// fuzz oracle.
type refMessage struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Usage *struct {
		InputTokens              int64 `json:"input_tokens"`
		OutputTokens             int64 `json:"output_tokens"`
		CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
		CacheCreation            *struct {
			Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
			Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
		} `json:"cache_creation"`
	} `json:"usage"`
}

func refDecodeMessage(name string, body []byte) (providers.Result, error) {
	var res providers.Result
	var m refMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return res, providers.Errorf(name, providers.KindProtocol, "reply is not a message")
	}
	if m.Usage == nil {
		return res, providers.Errorf(name, providers.KindProtocol, "reply has no usage")
	}
	var sb strings.Builder
	for _, b := range m.Content {
		if b.Type == "text" {
			sb.WriteString(b.Text)
		}
	}
	res.Content = sb.String()
	u := m.Usage
	res.Usage = providers.Usage{
		InputTokens:        u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		OutputTokens:       u.OutputTokens,
		CacheReadTokens:    u.CacheReadInputTokens,
		CacheWrite5mTokens: u.CacheCreationInputTokens,
	}
	if u.CacheCreation != nil {
		oneHour := min(max(u.CacheCreation.Ephemeral1h, 0), max(u.CacheCreationInputTokens, 0))
		res.Usage.CacheWrite1hTokens = oneHour
		res.Usage.CacheWrite5mTokens = u.CacheCreationInputTokens - oneHour
	}
	return res, nil
}

var decodeCases = []providertest.DecodeCase{
	{Name: "typical", Body: benchReply, Want: providers.Result{Content: "Hello! How can I assist you today?\nI am \"Moon\".", Usage: providers.Usage{InputTokens: 19, OutputTokens: 10}}},
	{Name: "text blocks joined, cache tokens", Body: `{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"a"},{"type":"tool_use","input":{}},{"type":"t\u0065xt","text":"b\n"}],"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":3}}`, Want: providers.Result{Content: "ab\n", Usage: providers.Usage{InputTokens: 155, OutputTokens: 3, CacheReadTokens: 50, CacheWrite5mTokens: 100}}},
	{Name: "cache writes split by TTL", Body: `{"content":[],"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":3}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 112, OutputTokens: 3, CacheReadTokens: 7, CacheWrite5mTokens: 60, CacheWrite1hTokens: 40}}},
	{Name: "cache_creation merges, null clears", Body: `{"usage":{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":4},"cache_creation":{"ephemeral_5m_input_tokens":6}}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheWrite5mTokens: 6, CacheWrite1hTokens: 4}}},
	{Name: "cache_creation null", Body: `{"usage":{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":4},"cache_creation":null}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheWrite5mTokens: 10}}},
	{Name: "cache_creation ill-typed", Body: `{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":"4"}}}`, WantErr: "reply is not a message"},
	{Name: "keys fold case", Body: `{"Content":[{"TYPE":"text","Text":"x"}],"USAGE":{"Input_Tokens":1,"output_to` + "\u212a" + `ens":2}}`, Want: providers.Result{Content: "x", Usage: providers.Usage{InputTokens: 1, OutputTokens: 2}}},
	{Name: "type is case-sensitive", Body: `{"content":[{"type":"Text","text":"x"}],"usage":{}}`, Want: providers.Result{}},
	{Name: "null text keeps earlier", Body: `{"content":[{"type":"text","text":"a","text":null}],"usage":{}}`, Want: providers.Result{Content: "a"}},
	{Name: "duplicate content merges past a shorter array", Body: `{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"content":[{}],"content":[{},{}],"usage":{}}`, Want: providers.Result{Content: "ab"}},
	{Name: "empty content resets", Body: `{"content":[{"type":"text","text":"a"}],"content":[],"content":[{"text":"b"}],"usage":{}}`, Want: providers.Result{}},
	{Name: "many blocks", Body: `{"content":[{"type":"text","text":"1"},{"type":"text","text":"2"},{"type":"text","text":"3"},{"type":"text","text":"4"},{"type":"text","text":"5"},{"type":"text","text":"6"},{"type":"text","text":"7"},{"type":"text","text":"8"},{"type":"text","text":"9"}],"usage":{}}`, Want: providers.Result{Content: "123456789"}},
	{Name: "usage merges", Body: `{"usage":{"input_tokens":3},"usage":{"output_tokens":4,"input_tokens":null}}`, Want: providers.Result{Usage: providers.Usage{InputTokens: 3, OutputTokens: 4}}},
	{Name: "no usage", Body: `{"content":[]}`, WantErr: "reply has no usage"},
	{Name: "null usage", Body: `{"usage":{"input_tokens":1},"usage":null}`, WantErr: "reply has no usage"},
	{Name: "null body", Body: `null`, WantErr: "reply has no usage"},
	{Name: "block ill-typed", Body: `{"content":[{"type":"text","text":"a"},{"type":1}],"usage":{}}`, WantErr: "reply is not a message"},
	{Name: "block not an object", Body: `{"content":["x"],"usage":{}}`, WantErr: "reply is not a message"},
	{Name: "overflowing tokens", Body: `{"usage":{"input_tokens":9223372036854775808}}`, WantErr: "reply is not a message"},
	{Name: "syntax error", Body: `{"usage":{},}`, WantErr: "reply is not a message"},
}

// refDecoder is refDecodeMessage as the suite's oracle.
func refDecoder(name string) providertest.Decoder {
	return func(body []byte, res *providers.Result) (err error) {
		*res, err = refDecodeMessage(name, body)
		return err
	}
}

func TestDecodeMessage(t *testing.T) {
	p := newProvider(t, testConfig("http://127.0.0.1:1"))
	providertest.Decode(t, decodeCases, p.decodeMessage, refDecoder(p.name))
}

// FuzzDecodeMessage holds the JSON walk to the encoding/json decoding it
// replaced: same result, same error.
func FuzzDecodeMessage(f *testing.F) {
	p := newProvider(f, testConfig("http://127.0.0.1:1"))
	providertest.FuzzDecode(f, decodeCases, p.decodeMessage, refDecoder(p.name))
}
