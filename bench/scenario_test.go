package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedScenariosLoad(t *testing.T) {
	files, _ := filepath.Glob("scenarios/*.json")
	if len(files) < 5 {
		t.Fatalf("found %d scenarios, want the 5 shipped", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name+".json" != filepath.Base(f) || s.Description == "" || (s.Rate == 0 && s.Concurrency == 0) {
				t.Errorf("scenario %q: name must match the file, description and load set", s.Name)
			}
			if s.GatewayConfig != "" {
				if _, err := os.Stat(filepath.Join("scenarios", s.GatewayConfig)); err != nil {
					t.Errorf("gatewayConfig: %v", err)
				}
			}
		})
	}
}

func TestLoadScenarioRejects(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"unknown field", `{"name":"x","rat":5}`, "unknown field"},
		{"bad duration", `{"duration":"ten"}`, "invalid duration"},
		{"negative rate", `{"rate":-1}`, "rate: must be ≥ 0"},
		{"client without key", `{"clients":[{"persona":"psn_a"}]}`, "clients[0]: key and persona are required"},
		{"phase without config", `{"mockPhases":[{"at":"1s"}]}`, "mockPhases[0].config: is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.json")
			os.WriteFile(p, []byte(c.body), 0o600)
			_, err := LoadScenario(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestExpandClients(t *testing.T) {
	got := ExpandClients([]Client{{Label: "a", Weight: 3}, {Label: "b"}})
	if len(got) != 4 || got[0].Label != "a" || got[2].Label != "a" || got[3].Label != "b" {
		t.Errorf("expanded %+v", got)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("1234 (gateway) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0")
	f.Add("1 ((x)) R")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseStatCPU([]byte(s))
		if err != nil && d != 0 {
			t.Fatalf("error with a value: %v %v", d, err)
		}
	})
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(`{"name":"x","rate":100,"duration":"1s","clients":[{"key":"k","persona":"p"}]}`))
	f.Add([]byte(`{"mockPhases":[{"at":"1s","config":{}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseScenario(b)
		if err == nil && (s.Rate < 0 || s.Duration < 0 || s.Count < 0) {
			t.Fatalf("accepted an invalid scenario: %+v", s)
		}
	})
}
