package policy

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestLimitsConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  LimitsConfig
		want []string // substrings that must all appear; none means valid
	}{
		{"zero is valid", LimitsConfig{}, nil},
		{"full", LimitsConfig{
			Backend: BackendRedis, OnRedisDown: FailOpen,
			Redis:      RedisConfig{Addr: "redis:6379", Password: "hunter2-secret"},
			Default:    WorkspaceLimits{RateLimits: RateLimits{RequestsPerMinute: 60}},
			Workspaces: []WorkspaceLimits{{ID: "a", MonthlyTokens: 5, Keys: []KeyLimits{{CredentialID: "k", RateLimits: RateLimits{TokensPerMinute: 9}}}}},
		}, nil},
		{"problems", LimitsConfig{
			Backend: "memcached", OnRedisDown: "panic",
			Default: WorkspaceLimits{ID: "x", Keys: []KeyLimits{{CredentialID: "k"}}, RateLimits: RateLimits{RequestBurst: 3}},
			Workspaces: []WorkspaceLimits{
				{ID: "a", RateLimits: RateLimits{RequestsPerMinute: -1, RequestBurst: 1, TokensPerMinute: MaxLimit + 1}},
				{ID: "a", MonthlyBudgetUsdMicros: -5, PerKey: RateLimits{RequestBurst: 2}},
				{Keys: []KeyLimits{{CredentialID: "k"}, {CredentialID: "k"}, {RateLimits: RateLimits{RequestsPerMinute: 1}}}},
			},
		}, []string{
			`backend: must be local or redis, got "memcached"`,
			`onRedisDown: must be fail-closed or fail-open, got "panic"`,
			"default.id: must be empty",
			"default.keys: not allowed",
			"default.requestBurst: must be 0 when requestsPerMinute is 0",
			"workspaces[0].requestsPerMinute: must be between 0 and 10000000000",
			"workspaces[0].tokensPerMinute: must be between 0 and",
			`workspaces[1].id: duplicate of workspaces[0].id "a"`,
			"workspaces[1].monthlyBudgetUsdMicros: must be between",
			"workspaces[1].perKey.requestBurst: must be 0 when",
			"workspaces[2].id: required",
			`workspaces[2].keys[1].credentialId: duplicate of workspaces[2].keys[0].credentialId "k"`,
			"workspaces[2].keys[2].credentialId: required",
		}},
		{"redis section", LimitsConfig{Backend: BackendRedis, Redis: RedisConfig{
			Addr: "nohost", Password: "hunter2-secret", DB: -1, KeyPrefix: "a{b}", DialTimeout: -1, Timeout: -1, DownBackoff: time.Hour,
		}}, []string{
			"redis.addr: must be host:port",
			"redis.db: must be at least 0",
			"redis.keyPrefix: must not contain",
			"redis.dialTimeout: must be positive",
			"redis.timeout: must be positive",
			"redis.downBackoff: must be between",
		}},
		{"redis section ignored for local", LimitsConfig{Redis: RedisConfig{Addr: "nohost"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SetDefaults()
			msg := checkValidateErrors(t, cfg.Validate(), tc.want)
			if len(tc.want) == 0 {
				if _, err := NewLocalLimiter(tc.cfg); err != nil {
					t.Fatalf("NewLocalLimiter: %v", err)
				}
				return
			}
			if got, want := strings.Count(msg, "\n")+1, len(tc.want); got != want {
				t.Errorf("%d problems reported, want %d:\n%s", got, want, msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error leaks the password:\n%s", msg)
			}
			if _, err := NewLocalLimiter(tc.cfg); err == nil && tc.cfg.Backend != BackendRedis {
				t.Error("NewLocalLimiter accepted what Validate rejects")
			}
		})
	}
}

const exampleLimitsYAML = `
backend: redis
onRedisDown: fail-open
redis:
  addr: 127.0.0.1:6379
  password: s3cret
  db: 2
  keyPrefix: "edge:limits:"
  dialTimeout: 500ms
  timeout: 100ms
  downBackoff: 2s
default:
  requestsPerMinute: 600
  tokensPerMinute: 200000
  perKey:
    requestsPerMinute: 120
    requestBurst: 20
workspaces:
  - id: wsp_acme
    requestsPerMinute: 3000
    requestBurst: 500
    tokensPerMinute: 2000000
    monthlyBudgetUsdMicros: 250000000
    monthlyTokens: 50000000
    keys:
      - credentialId: key_ci
        requestsPerMinute: 30
        requestBurst: 5
        tokensPerMinute: 20000
`

func TestLimitsConfigYAML(t *testing.T) {
	var cfg LimitsConfig
	dec := yaml.NewDecoder(strings.NewReader(exampleLimitsYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.Timeout != 100*time.Millisecond || cfg.Redis.DB != 2 || cfg.OnRedisDown != FailOpen {
		t.Fatalf("redis %+v", cfg.Redis)
	}
	if cfg.Default.RequestBurst != 600 {
		t.Errorf("default burst %d, want 600 (= requestsPerMinute)", cfg.Default.RequestBurst)
	}
	w := cfg.Workspaces[0]
	if w.RequestBurst != 500 || w.MonthlyBudgetUsdMicros != 250_000_000 || w.Keys[0].TokensPerMinute != 20000 {
		t.Errorf("workspace %+v", w)
	}

	tbl, _, err := newLimitTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lookups := []struct {
		key  LimitKey
		want [numSlots]bucketParams
	}{
		{LimitKey{Workspace: "wsp_acme", CredentialID: "key_ci"}, [numSlots]bucketParams{{3000, 500}, {2000000, 2000000}, {30, 5}, {20000, 20000}}},
		{LimitKey{Workspace: "wsp_acme", CredentialID: "other"}, [numSlots]bucketParams{{3000, 500}, {2000000, 2000000}, {}, {}}},
		{LimitKey{Workspace: "wsp_else", CredentialID: "key_ci"}, [numSlots]bucketParams{{600, 600}, {200000, 200000}, {120, 20}, {}}},
	}
	for _, l := range lookups {
		if got := tbl.lookup(l.key); got.b != l.want {
			t.Errorf("lookup(%v) = %v, want %v", l.key, got.b, l.want)
		}
	}

	var def LimitsConfig
	def.SetDefaults()
	if def.Backend != BackendLocal || def.OnRedisDown != FailClosed || def.Redis.Addr != "127.0.0.1:6379" ||
		def.Redis.KeyPrefix != "moonborn:limits:" || def.Redis.Timeout != 250*time.Millisecond || def.Redis.DownBackoff != time.Second {
		t.Fatalf("defaults %+v", def)
	}
}

func FuzzLimitsConfig(f *testing.F) {
	f.Add(exampleLimitsYAML)
	f.Add("workspaces: [{id: a, keys: [{credentialId: b, requestBurst: 3}]}]")
	f.Fuzz(func(t *testing.T, src string) {
		var cfg LimitsConfig
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		if dec.Decode(&cfg) != nil {
			return
		}
		cfg.SetDefaults()
		if cfg.Validate() != nil {
			return
		}
		l, err := NewLocalLimiter(cfg)
		if err != nil {
			t.Fatalf("valid config refused: %v", err)
		}
		now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		for _, w := range append(cfg.Workspaces, WorkspaceLimits{ID: "unlisted"}) {
			d, err := l.Admit(t.Context(), LimitKey{Workspace: w.ID, CredentialID: "c"}, 100, now)
			if err != nil {
				t.Fatal(err)
			}
			if d.Requests.Remaining > d.Requests.Limit || d.Tokens.Remaining > d.Tokens.Limit {
				t.Fatalf("remaining above limit: %+v", d)
			}
		}
	})
}

// checkValidateErrors fails t unless err is nil when want is empty, or
// else names every entry of want; it returns err's message for further
// checks ("" for nil).
func checkValidateErrors(t *testing.T, err error, want []string) string {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate: %v", err)
		}
		return ""
	}
	if err == nil {
		t.Fatal("Validate accepted an invalid config")
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
	return msg
}
