package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// routingConfig serves model ha-1 from two real upstreams: primary a and
// secondary b, with a breaker that opens after 3 failures for 1s.
func routingConfig(t *testing.T, a, b *mocktest.Upstream) string {
	t.Helper()
	text := testConfig(t, nil, "  adminToken: admin-secret")
	text = strings.Replace(text, "providers:\n", fmt.Sprintf(`providers:
  - {name: a, type: openai, openai: {baseURL: "http://%s/v1", apiKey: k, timeout: 2s, firstTokenTimeout: 500ms}}
  - {name: b, type: anthropic, anthropic: {baseURL: "http://%s", apiKey: k, timeout: 2s}}
`, a.Addr, b.Addr), 1)
	text = strings.Replace(text, "models:\n", `models:
  - id: ha-1
    inputPricePerMTok: 1
    outputPricePerMTok: 2
    deployments:
      - {provider: a, upstreamModel: gpt-a, priority: 0}
      - {provider: b, upstreamModel: claude-b, priority: 1}
    pool: {strategy: priority, maxAttempts: 2, breaker: {consecutiveFailures: 3, openFor: 1s}}
  - id: solo-1
    provider: a
    pool: {maxAttempts: 1, breaker: {consecutiveFailures: 2, openFor: 1s}}
`, 1)
	return text
}

// TestFailoverToSecondary: a primary answering 500 never reaches the
// client; every request succeeds on the secondary and is recorded there.
func TestFailoverToSecondary(t *testing.T) {
	a := mocktest.Start(t, mock.ServerConfig{FailStatus: 500})
	b := mocktest.Start(t, mock.ServerConfig{OutputTokens: 7})
	g := startGateway(t, routingConfig(t, a, b))
	for i := 0; i < 20; i++ {
		stream := i%2 == 1
		body := `{"userText":"hi","modelId":"ha-1","stream":` + strconv.FormatBool(stream) + `}`
		if !stream {
			ok := testkit.DecodeOK(t, g.Chat(mocktest.KeyDemo, "psn_demo", body))
			if ok.OutputTokens != 7 || ok.Model != "ha-1" {
				t.Fatalf("reply %+v", ok)
			}
			continue
		}
		_, sr := g.OpenStream(mocktest.KeyDemo, "psn_demo", body)
		for {
			ev, err := sr.Next()
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if ev.Name == "done" {
				break
			}
			if ev.Name != "delta" {
				t.Fatalf("request %d: %s", i, ev.Raw)
			}
		}
	}
	if n := a.Srv.Stats().Requests; n < 3 || n > 6 {
		t.Fatalf("primary saw %d requests; its breaker should have opened after 3", n)
	}
	recs := g.readLedger()
	served := 0
	for _, r := range recs {
		if r["status"].(float64) == 200 && r["provider"] == "b" {
			served++
		}
	}
	if served != 20 {
		t.Fatalf("%d of 20 requests recorded as served by b", served)
	}
}

// TestSingleDeploymentBreaker: a model whose only upstream is down fails
// fast with 503 and Retry-After once its breaker opens, then recovers
// through half-open when the upstream returns; /readyz and
// /admin/upstreams show it.
func TestSingleDeploymentBreaker(t *testing.T) {
	a := mocktest.Start(t, mock.ServerConfig{FailStatus: 502})
	b := mocktest.Start(t, mock.ServerConfig{})
	g := startGateway(t, routingConfig(t, a, b))
	body := `{"userText":"hi","modelId":"solo-1"}`
	for i := 0; i < 2; i++ {
		if r := g.Chat(mocktest.KeyDemo, "psn_demo", body); r.Status != 502 {
			t.Fatalf("attempt %d: %d %s", i, r.Status, r.Body)
		}
	}
	before := a.Srv.Stats().Requests
	r := g.Chat(mocktest.KeyDemo, "psn_demo", body)
	if e := testkit.DecodeErr(t, r); r.Status != 503 || e.Error.Code != "upstream_unavailable" || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("open breaker: %d %s Retry-After %q", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if a.Srv.Stats().Requests != before {
		t.Fatal("an open breaker still sent the request upstream")
	}
	admin := "http://" + g.app.AdminAddr
	if resp, err := http.Get(admin + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("readyz with a dead model: %v %v", err, resp)
	}
	req, _ := http.NewRequest("GET", admin+"/admin/upstreams", nil)
	req.Header.Set("Authorization", "Bearer admin-secret")
	view := g.Do(req)
	var snap struct {
		Models []struct {
			Model       string
			Deployments []struct{ Name, Breaker string }
		}
	}
	if err := json.Unmarshal(view.Body, &snap); err != nil || view.Status != 200 {
		t.Fatalf("upstreams view %d %s", view.Status, view.Body)
	}
	found := false
	for _, m := range snap.Models {
		if m.Model == "solo-1" && len(m.Deployments) == 1 && m.Deployments[0].Breaker == "open" {
			found = true
		}
	}
	if !found {
		t.Fatalf("upstreams view %s", view.Body)
	}
	if r := g.Do(mustReq("GET", admin+"/admin/upstreams")); r.Status != 401 {
		t.Fatalf("admin without token: %d", r.Status)
	}
	a.Srv.SetConfig(mock.ServerConfig{})
	testkit.Eventually(t, 5*time.Second, "recovery through half-open", func() bool {
		return g.Chat(mocktest.KeyDemo, "psn_demo", body).Status == 200
	})
}

func mustReq(method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}
