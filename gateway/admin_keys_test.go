package gateway

import (
	"testing"
)

func TestDecodeUpdate(t *testing.T) {
	cases := []struct {
		name, body string
		ok         bool
		check      func(t *testing.T, name string, clearLimits, hasLimits, hasExpiry, zeroExpiry bool)
	}{
		{"empty body changes nothing", ``, true, func(t *testing.T, n string, c, l, e, z bool) {
			if c || l || e {
				t.Fatalf("%s: changed something", n)
			}
		}},
		{"null limits clear them", `{"limits":null}`, true, func(t *testing.T, n string, c, l, e, z bool) {
			if !c || l {
				t.Fatalf("%s: clear %v set %v", n, c, l)
			}
		}},
		{"null expiry clears it", `{"expiresAt":null}`, true, func(t *testing.T, n string, c, l, e, z bool) {
			if !e || !z {
				t.Fatalf("%s: expiry %v zero %v", n, e, z)
			}
		}},
		{"limits set", `{"limits":{"requestsPerMinute":5,"monthlyTokens":9}}`, true, func(t *testing.T, n string, c, l, e, z bool) {
			if c || !l {
				t.Fatalf("%s", n)
			}
		}},
		{"unknown field", `{"limit":{}}`, false, nil},
		{"unknown limits field", `{"limits":{"rpm":5}}`, false, nil},
		{"bad time", `{"expiresAt":"tomorrow"}`, false, nil},
		{"two objects", `{} {}`, false, nil},
	}
	for _, c := range cases {
		u, err := decodeUpdate([]byte(c.body))
		if (err == nil) != c.ok {
			t.Fatalf("%s: err %v", c.name, err)
		}
		if c.check != nil {
			c.check(t, c.name, u.ClearLimits, u.Limits != nil, u.ExpiresAt != nil, u.ExpiresAt != nil && u.ExpiresAt.IsZero())
		}
	}
}

func FuzzDecodeUpdate(f *testing.F) {
	f.Add([]byte(`{"name":"x","expiresAt":"2030-01-01T00:00:00Z","limits":{"requestsPerMinute":1}}`))
	f.Add([]byte(`{"limits":null,"expiresAt":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeUpdate(b)
		if err != nil {
			return
		}
		if u.ClearLimits && u.Limits != nil {
			t.Fatal("limits both cleared and set")
		}
	})
}
