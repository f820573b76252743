package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

// benchReply is a typical non-streaming reply, with escapes in the text
// as real replies have.
const benchReply = `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello! How can I assist you today?\nI am \"Moon\"."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10,"service_tier":"standard"}}`

// BenchmarkComplete runs a whole non-streaming exchange against a
// loopback upstream per op: allocs/op is the client's per-request cost.
func BenchmarkComplete(b *testing.B) {
	p := newProvider(b, testConfig(testkit.RawUpstream(b, testkit.JSONResponse(benchReply))))
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.Complete(context.Background(), &baseReq)
		if err != nil || res.Usage.OutputTokens != 10 {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	p := newProvider(b, testConfig("http://127.0.0.1:1"))
	body := []byte(benchReply)
	b.ReportAllocs()
	for b.Loop() {
		var res providers.Result
		if err := p.decodeMessage(body, &res); err != nil {
			b.Fatal(err)
		}
	}
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

var decodeCases = []struct {
	name, body string
	want       providers.Result
	wantErr    string // error detail; empty for success
}{
	{name: "typical", body: benchReply, want: providers.Result{Content: "Hello! How can I assist you today?\nI am \"Moon\".", Usage: providers.Usage{InputTokens: 19, OutputTokens: 10}}},
	{name: "text blocks joined, cache tokens", body: `{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"a"},{"type":"tool_use","input":{}},{"type":"t\u0065xt","text":"b\n"}],"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":3}}`, want: providers.Result{Content: "ab\n", Usage: providers.Usage{InputTokens: 155, OutputTokens: 3, CacheReadTokens: 50, CacheWrite5mTokens: 100}}},
	{name: "cache writes split by TTL", body: `{"content":[],"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":3}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 112, OutputTokens: 3, CacheReadTokens: 7, CacheWrite5mTokens: 60, CacheWrite1hTokens: 40}}},
	{name: "cache_creation merges, null clears", body: `{"usage":{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":4},"cache_creation":{"ephemeral_5m_input_tokens":6}}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheWrite5mTokens: 6, CacheWrite1hTokens: 4}}},
	{name: "cache_creation null", body: `{"usage":{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":4},"cache_creation":null}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 10, CacheWrite5mTokens: 10}}},
	{name: "cache_creation ill-typed", body: `{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":"4"}}}`, wantErr: "reply is not a message"},
	{name: "keys fold case", body: `{"Content":[{"TYPE":"text","Text":"x"}],"USAGE":{"Input_Tokens":1,"output_to` + "\u212a" + `ens":2}}`, want: providers.Result{Content: "x", Usage: providers.Usage{InputTokens: 1, OutputTokens: 2}}},
	{name: "type is case-sensitive", body: `{"content":[{"type":"Text","text":"x"}],"usage":{}}`, want: providers.Result{}},
	{name: "null text keeps earlier", body: `{"content":[{"type":"text","text":"a","text":null}],"usage":{}}`, want: providers.Result{Content: "a"}},
	{name: "duplicate content merges past a shorter array", body: `{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"content":[{}],"content":[{},{}],"usage":{}}`, want: providers.Result{Content: "ab"}},
	{name: "empty content resets", body: `{"content":[{"type":"text","text":"a"}],"content":[],"content":[{"text":"b"}],"usage":{}}`, want: providers.Result{}},
	{name: "many blocks", body: `{"content":[{"type":"text","text":"1"},{"type":"text","text":"2"},{"type":"text","text":"3"},{"type":"text","text":"4"},{"type":"text","text":"5"},{"type":"text","text":"6"},{"type":"text","text":"7"},{"type":"text","text":"8"},{"type":"text","text":"9"}],"usage":{}}`, want: providers.Result{Content: "123456789"}},
	{name: "usage merges", body: `{"usage":{"input_tokens":3},"usage":{"output_tokens":4,"input_tokens":null}}`, want: providers.Result{Usage: providers.Usage{InputTokens: 3, OutputTokens: 4}}},
	{name: "no usage", body: `{"content":[]}`, wantErr: "reply has no usage"},
	{name: "null usage", body: `{"usage":{"input_tokens":1},"usage":null}`, wantErr: "reply has no usage"},
	{name: "null body", body: `null`, wantErr: "reply has no usage"},
	{name: "block ill-typed", body: `{"content":[{"type":"text","text":"a"},{"type":1}],"usage":{}}`, wantErr: "reply is not a message"},
	{name: "block not an object", body: `{"content":["x"],"usage":{}}`, wantErr: "reply is not a message"},
	{name: "overflowing tokens", body: `{"usage":{"input_tokens":9223372036854775808}}`, wantErr: "reply is not a message"},
	{name: "syntax error", body: `{"usage":{},}`, wantErr: "reply is not a message"},
}

func TestDecodeMessage(t *testing.T) {
	p := newProvider(t, testConfig("http://127.0.0.1:1"))
	for _, c := range decodeCases {
		t.Run(c.name, func(t *testing.T) {
			var res providers.Result
			err := p.decodeMessage([]byte(c.body), &res)
			if c.wantErr != "" {
				var ue *providers.UpstreamError
				if !errors.As(err, &ue) || ue.Kind != providers.KindProtocol || ue.Detail != c.wantErr {
					t.Fatalf("err = %v, want protocol %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(res, c.want) {
				t.Fatalf("got %+v %v, want %+v", res, err, c.want)
			}
			if ref, err := refDecodeMessage(p.name, []byte(c.body)); err != nil || !reflect.DeepEqual(ref, res) {
				t.Fatalf("encoding/json gives %+v %v", ref, err)
			}
		})
	}
}

// FuzzDecodeMessage holds the JSON walk to the encoding/json decoding it
// replaced: same result, same error.
func FuzzDecodeMessage(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c.body))
	}
	p := newProvider(f, testConfig("http://127.0.0.1:1"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var res providers.Result
		err := p.decodeMessage(body, &res)
		want, wantErr := refDecodeMessage(p.name, body)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) || !reflect.DeepEqual(res, want) {
			t.Fatalf("decodeMessage = %+v, %v; encoding/json = %+v, %v", res, err, want, wantErr)
		}
	})
}
