package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/providers/mock"
)

// TestUpstreamKilledUnderLoad runs steady traffic on a model served by two
// upstreams while one of them is killed and later restarted. Non-streaming
// requests must succeed at ≥ 99.9% (failover happens before the first
// byte); every stream must end with done or an error event, never a silent
// clean end. The success rate and the p99 during the fault are logged
// (go test -v -run TestUpstreamKilledUnderLoad ./cmd/gateway).
func TestUpstreamKilledUnderLoad(t *testing.T) {
	cfgA := mock.ServerConfig{OutputTokens: 8, TokenDelay: 2 * time.Millisecond}
	a := startUpstream(t, cfgA)
	b := startUpstream(t, mock.ServerConfig{OutputTokens: 8, TokenDelay: 2 * time.Millisecond})
	text := testConfig(t, nil, "")
	text = strings.Replace(text, "providers:\n", fmt.Sprintf(`providers:
  - {name: a, type: openai, openai: {baseURL: "http://%s/v1", apiKey: k, timeout: 2s, firstTokenTimeout: 1s, connectTimeout: 200ms}}
  - {name: b, type: openai, openai: {baseURL: "http://%s/v1", apiKey: k, timeout: 2s, firstTokenTimeout: 1s, connectTimeout: 200ms}}
`, a.addr, b.addr), 1)
	text = strings.Replace(text, "models:\n", `models:
  - id: ha-1
    deployments: [{provider: a, upstreamModel: m}, {provider: b, upstreamModel: m}]
    pool: {strategy: weighted, maxAttempts: 3, breaker: {consecutiveFailures: 3, openFor: 500ms}}
`, 1)
	text = strings.Replace(text, "  ratio: 0.2", "  ratio: 1", 1)
	g := startGateway(t, text)

	const runFor = 6 * time.Second
	start := time.Now()
	stop := start.Add(runFor)
	var killed, restarted atomic.Int64 // ns since start
	go func() {
		time.Sleep(2 * time.Second)
		killed.Store(int64(time.Since(start)))
		_ = a.srv.Shutdown()
		time.Sleep(2 * time.Second)
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			t.Errorf("restart upstream a: %v", err)
			return
		}
		srv := mock.NewServer(cfgA)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Shutdown() })
		restarted.Store(int64(time.Since(start)))
	}()

	type sample struct {
		at, took time.Duration
		ok       bool
	}
	var mu sync.Mutex
	var plain []sample
	streams := map[string]int{}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for w := 0; w < 12; w++ {
		stream := w%3 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				body := fmt.Sprintf(`{"userText":"hi","modelId":"ha-1","stream":%v}`, stream)
				req, _ := http.NewRequest("POST", g.Base+"/v1/personas/psn_demo/chat", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+keyDemo)
				t0 := time.Now()
				resp, err := client.Do(req)
				if !stream {
					ok := err == nil && resp.StatusCode == 200
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					mu.Lock()
					plain = append(plain, sample{at: t0.Sub(start), took: time.Since(t0), ok: ok})
					mu.Unlock()
					continue
				}
				outcome := "transport error"
				if err == nil {
					outcome = streamOutcome(resp)
				}
				mu.Lock()
				streams[outcome]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	okN := 0
	var fault []time.Duration
	from, to := time.Duration(killed.Load()), time.Duration(restarted.Load())+time.Second
	for _, s := range plain {
		if s.ok {
			okN++
		}
		if s.at >= from && s.at <= to {
			fault = append(fault, s.took)
		}
	}
	slices.Sort(fault)
	p99 := time.Duration(0)
	if len(fault) > 0 {
		p99 = fault[len(fault)*99/100]
	}
	rate := float64(okN) / float64(len(plain))
	t.Logf("non-streaming: %d/%d succeeded (%.3f%%); p99 during the fault window %v over %d requests; streams: %v",
		okN, len(plain), 100*rate, p99, len(fault), streams)
	if len(plain) < 100 || rate < 0.999 {
		t.Fatalf("success rate %.4f over %d requests, want ≥ 0.999", rate, len(plain))
	}
	if streams["silent end"] > 0 || streams["transport error"] > 0 {
		t.Fatalf("streams ended badly: %v", streams)
	}
	if restarted.Load() == 0 {
		t.Fatal("upstream a was never restarted")
	}
}

// streamOutcome reads a stream to its end: "done", "error event", or
// "silent end" when the body ends without either.
func streamOutcome(resp *http.Response) string {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "http error"
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		switch sc.Text() {
		case "event: done":
			return "done"
		case "event: error":
			return "error event"
		}
	}
	return "silent end"
}
