package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// Duration is a time.Duration read from JSON as a Go duration string
// ("500ms", "10s").
type Duration time.Duration

// UnmarshalJSON reads "10s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string like \"10s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Client is one credential and persona of a scenario; requests cycle
// through clients in proportion to their weights.
type Client struct {
	// Label names the client in error counts (e.g. its workspace).
	Label   string `json:"label"`
	Key     string `json:"key"`
	Persona string `json:"persona"`
	// Weight is the client's share of requests; default 1.
	Weight int `json:"weight"`
}

// MockPhase reconfigures a mockllm (PUT /_mock/config) at an offset into
// the measured run, e.g. to inject an error burst.
type MockPhase struct {
	At Duration `json:"at"`
	// Control is the mock's base URL; default the -mock-control flag.
	Control string `json:"control"`
	// Config is a whole mock ServerConfig in its JSON form.
	Config json.RawMessage `json:"config"`
}

// Scenario is a load test saved as a file in bench/scenarios. Zero fields
// take the command line's values; flags given explicitly win over the file.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Rate is requests per second (open loop); 0 with Concurrency > 0 is
	// closed loop.
	Rate            float64  `json:"rate"`
	Concurrency     int      `json:"concurrency"`
	Count           int      `json:"count"`
	Duration        Duration `json:"duration"`
	Warmup          Duration `json:"warmup"`
	Timeout         Duration `json:"timeout"`
	Stream          bool     `json:"stream"`
	UserText        string   `json:"userText"`
	MaxOutputTokens int      `json:"maxOutputTokens"`
	// Compare runs direct and gateway interleaved.
	Compare bool     `json:"compare"`
	Clients []Client `json:"clients"`
	// MockPhases steer the mock upstream(s) during the run.
	MockPhases []MockPhase `json:"mockPhases"`
	// MockStart is PUT to the mock before the warm-up (and the mock's
	// previous config restored after the run).
	MockStart json.RawMessage `json:"mockStart"`
	// GatewayConfig names the gateway config file the scenario needs
	// (relative to the scenario), for bench/run.sh; the bench ignores it.
	GatewayConfig string `json:"gatewayConfig"`
}

// LoadScenario reads a scenario file strictly: unknown fields are errors.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes and validates a scenario's JSON text.
func ParseScenario(b []byte) (*Scenario, error) {
	var s Scenario
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate reports every problem at once.
func (s *Scenario) Validate() error {
	var errs []error
	if s.Rate < 0 {
		errs = append(errs, errors.New("rate: must be ≥ 0"))
	}
	if s.Concurrency < 0 || s.Count < 0 || s.Duration < 0 || s.Warmup < 0 || s.Timeout < 0 || s.MaxOutputTokens < 0 {
		errs = append(errs, errors.New("concurrency, count, duration, warmup, timeout, maxOutputTokens: must be ≥ 0"))
	}
	for i, c := range s.Clients {
		if c.Key == "" || c.Persona == "" {
			errs = append(errs, fmt.Errorf("clients[%d]: key and persona are required", i))
		}
		if c.Weight < 0 {
			errs = append(errs, fmt.Errorf("clients[%d].weight: must be ≥ 0", i))
		}
	}
	for i, p := range s.MockPhases {
		if len(p.Config) == 0 {
			errs = append(errs, fmt.Errorf("mockPhases[%d].config: is required", i))
		}
	}
	return errors.Join(errs...)
}

// ExpandClients returns the clients repeated by weight, the cycle requests
// follow.
func ExpandClients(cs []Client) []Client {
	var out []Client
	for _, c := range cs {
		w := c.Weight
		if w == 0 {
			w = 1
		}
		for range w {
			out = append(out, c)
		}
	}
	return out
}

// MockControl steers a mockllm through its /_mock/config endpoint.
type MockControl struct {
	HTTP *http.Client
}

// Get returns the mock's current config JSON.
func (m MockControl) Get(base string) (json.RawMessage, error) {
	resp, err := m.HTTP.Get(base + "/_mock/config")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Put replaces the mock's config.
func (m MockControl) Put(base string, cfg json.RawMessage) error {
	req, err := http.NewRequest(http.MethodPut, base+"/_mock/config", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("mock control %s: status %d", base, resp.StatusCode)
	}
	return nil
}
