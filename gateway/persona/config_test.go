package persona

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigYAML(t *testing.T) {
	const doc = `
personas:
  source: file
  cacheTTL: 30s
  negativeTTL: 2s
  staleTTL: 0s
  cacheMaxItems: 500
  dir: ""
  http:
    baseURL: ""
    timeout: 1500ms
    bearerToken: ""
  items:
    - id: psn_demo
      workspace: wsp_demo
      name: Demo
      systemPrompt: "You are a concise, friendly assistant."
      defaultModel: mock-1
      temperature: 0.7
      maxOutputTokens: 256
      allowedModels: []
`
	var root struct {
		Personas Config `yaml:"personas"`
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&root); err != nil {
		t.Fatal(err)
	}
	c := root.Personas
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.CacheTTL != 30*time.Second || c.NegativeTTL != 2*time.Second || c.HTTP.Timeout != 1500*time.Millisecond {
		t.Fatalf("durations: %+v", c)
	}
	if c.StaleTTL == nil || *c.StaleTTL != 0 {
		t.Fatalf("explicit staleTTL 0 lost: %v", c.StaleTTL)
	}
	if len(c.Items) != 1 || *c.Items[0].Temperature != 0.7 || c.Items[0].MaxOutputTokens != 256 {
		t.Fatalf("items: %+v", c.Items)
	}
}

func TestConfigSetDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	want := Config{
		Source: SourceFile, CacheTTL: DefaultCacheTTL, NegativeTTL: DefaultNegativeTTL,
		StaleTTL: ptr(DefaultStaleTTL), CacheMaxItems: DefaultCacheMaxItems,
		HTTP: HTTPConfig{Timeout: DefaultHTTPTimeout},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := demo("psn_ok", "wsp_a")
	with := func(f func(p *Persona)) Persona {
		p := demo("psn_x", "wsp_a")
		f(&p)
		return p
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // each must appear; none means valid
	}{
		{"valid file", Config{Items: []Persona{ok}}, nil},
		{"valid http", Config{Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "https://origin.internal/v1/"}}, nil},
		{"unknown source", Config{Source: "redis"}, []string{`source: must be one of file, http (got "redis")`}},
		{"id without prefix", Config{Items: []Persona{ok, ok, with(func(p *Persona) { p.ID = "demo" })}},
			[]string{`items[2].id: must start with "psn_"`, `items[1].id: duplicate id "psn_ok" (also items[0])`}},
		{"id bad chars", Config{Items: []Persona{with(func(p *Persona) { p.ID = "psn_a/b" })}},
			[]string{"items[0].id: must be 5–128 characters"}},
		{"id too long", Config{Items: []Persona{with(func(p *Persona) { p.ID = "psn_" + strings.Repeat("x", 125) })}},
			[]string{"items[0].id: must be 5–128 characters"}},
		{"workspace missing", Config{Items: []Persona{with(func(p *Persona) { p.Workspace = "" })}},
			[]string{"items[0].workspace: required"}},
		{"temperature high", Config{Items: []Persona{with(func(p *Persona) { p.Temperature = ptr(2.5) })}},
			[]string{"items[0].temperature: must be between 0 and 2"}},
		{"temperature negative", Config{Items: []Persona{with(func(p *Persona) { p.Temperature = ptr(-0.1) })}},
			[]string{"items[0].temperature: must be between 0 and 2"}},
		{"maxOutputTokens negative", Config{Items: []Persona{with(func(p *Persona) { p.MaxOutputTokens = -1 })}},
			[]string{"items[0].maxOutputTokens: must be ≥ 0"}},
		{"defaultModel not allowed", Config{Items: []Persona{with(func(p *Persona) { p.AllowedModels = []string{"other"} })}},
			[]string{"items[0].defaultModel: must be one of allowedModels"}},
		{"http without baseURL", Config{Source: SourceHTTP},
			[]string{"http.baseURL: must be an absolute http(s) URL"}},
		{"http relative baseURL", Config{Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "/personas"}},
			[]string{"http.baseURL: must be an absolute http(s) URL"}},
		{"http ftp baseURL", Config{Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "ftp://origin"}},
			[]string{"http.baseURL: must be an absolute http(s) URL"}},
		{"http baseURL with query", Config{Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "https://origin/?token=x"}},
			[]string{"http.baseURL: must not have a query or fragment"}},
		{"http with items", Config{Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "http://o"}, Items: []Persona{ok}},
			[]string{"items: only used by the file source"}},
		{"bad durations and size", Config{CacheTTL: -1, NegativeTTL: -1, StaleTTL: ptr(-time.Second), CacheMaxItems: -5, Source: SourceHTTP, HTTP: HTTPConfig{BaseURL: "http://o", Timeout: -1}},
			[]string{"cacheTTL: must be > 0", "negativeTTL: must be > 0", "staleTTL: must be ≥ 0", "cacheMaxItems: must be > 0", "http.timeout: must be > 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.SetDefaults()
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadFilePersonas(t *testing.T) {
	const single = "id: psn_one\nworkspace: wsp_a\nsystemPrompt: hi\n"
	const list = "- id: psn_two\n  workspace: wsp_a\n- id: psn_three\n  workspace: wsp_b\n  temperature: 1\n"
	tests := []struct {
		name    string
		items   []Persona
		files   map[string]string
		wantIDs []string
		wantErr []string // each must appear, with the file name where relevant
	}{
		{
			name:  "items then files in name order",
			items: []Persona{demo("psn_item", "wsp_a")},
			files: map[string]string{
				"b.yml": list, "a.yaml": single, "notes.txt": "not yaml: [", "empty.yaml": "",
				"sub/c.yaml": "id: psn_nested\nworkspace: wsp_a\n",
			},
			wantIDs: []string{"psn_item", "psn_one", "psn_two", "psn_three"},
		},
		{
			name:    "unknown field names the file",
			files:   map[string]string{"a.yaml": single, "bad.yaml": "id: psn_bad\nworkspace: w\nprompt: x\n"},
			wantErr: []string{"bad.yaml: yaml: ", "field prompt not found"},
		},
		{
			name:    "bad entry names the file and entry",
			files:   map[string]string{"b.yml": "- id: psn_ok\n  workspace: w\n- id: psn_bad\n"},
			wantErr: []string{"b.yml: [1].workspace: required"},
		},
		{
			name:    "bad single persona names the file",
			files:   map[string]string{"a.yaml": "id: nope\nworkspace: w\n"},
			wantErr: []string{`a.yaml: id: must start with "psn_"`},
		},
		{
			name:    "duplicate across items and files",
			items:   []Persona{demo("psn_one", "wsp_a")},
			files:   map[string]string{"a.yaml": single},
			wantErr: []string{`a.yaml: id: duplicate id "psn_one" (also items[0])`},
		},
		{
			name:    "duplicate across files",
			files:   map[string]string{"a.yaml": single, "b.yml": "- id: psn_one\n  workspace: w\n"},
			wantErr: []string{`b.yml: [0].id: duplicate id "psn_one" (also `, `a.yaml)`},
		},
		{
			name:    "scalar document",
			files:   map[string]string{"a.yaml": "just text\n"},
			wantErr: []string{"a.yaml: must hold one persona or a list of personas"},
		},
		{
			name:    "two documents",
			files:   map[string]string{"a.yaml": single + "---\n" + single},
			wantErr: []string{"a.yaml: must hold a single YAML document"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			c := Config{Items: tt.items, Dir: dir}
			got, err := c.LoadFilePersonas()
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				c.SetDefaults()
				if verr := c.Validate(); verr == nil || !strings.Contains(verr.Error(), tt.wantErr[0]) {
					t.Errorf("Validate() = %v, want it to report %q", verr, tt.wantErr[0])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range got {
				ids = append(ids, p.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Fatalf("ids = %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestLoadFilePersonasMissingDir(t *testing.T) {
	c := Config{Dir: filepath.Join(t.TempDir(), "absent")}
	if _, err := c.LoadFilePersonas(); err == nil || !strings.HasPrefix(err.Error(), "dir: ") {
		t.Fatalf("err = %v, want a dir: error", err)
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"psn_a", true},
		{"psn_01HZX-abc_DEF", true},
		{"psn_" + strings.Repeat("z", 124), true},
		{"psn_" + strings.Repeat("z", 125), false},
		{"psn_", false},
		{"", false},
		{"psn", false},
		{"Psn_a", false},
		{"psn_a.b", false},
		{"psn_a\x00", false},
		{"psn_ä", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func FuzzDecodeFile(f *testing.F) {
	f.Add([]byte("id: psn_one\nworkspace: wsp_a\ntemperature: 0.5\n"))
	f.Add([]byte("- id: psn_two\n  workspace: wsp_a\n  allowedModels: [a, b]\n"))
	f.Add([]byte("id: psn_x\nbogus: 1\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, single, err := decodeFile(data)
		if err != nil {
			if list != nil || single {
				t.Fatalf("error %v with results", err)
			}
			return
		}
		if single && len(list) != 1 {
			t.Fatalf("single with %d personas", len(list))
		}
		for i := range list {
			_ = checkPersona(&list[i])
		}
	})
}
