package mock

import (
	"encoding/json"
	"testing"
)

func FuzzServerConfigJSON(f *testing.F) {
	f.Add([]byte(`{"timeToFirstToken":"20ms","tokenDelay":"1ms","outputTokens":5,"failStatus":429,"failCount":2,"retryAfter":"1.5s","stallFor":"-1s","cutAfterTokens":3,"errorEventAfterTokens":4,"choicesNull":true,"apiKey":"k"}`))
	f.Add([]byte(`{"apiKeySet":true}`))
	f.Add([]byte(`{"tokenDelay":5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ServerConfig{APIKey: "previous"}
		if err := json.Unmarshal(b, &c); err != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		if c.APIKey != "" && containsKey(out) {
			t.Fatalf("marshalled config shows the key: %s", out)
		}
		back := ServerConfig{APIKey: c.APIKey}
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("round trip of %s: %v", out, err)
		}
		if back != c {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, back)
		}
	})
}

func containsKey(out []byte) bool {
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	_, ok := m["apiKey"]
	return ok
}
