package gateway_test

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

	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
	"github.com/moonborn/edge/providers/openai"
)

// TestUpstreamKilledUnderLoad runs steady traffic on a model served by two
// upstreams while one of them is killed and later restarted. Non-streaming
// requests must succeed at ≥ 99.9% (failover happens before the first
// byte); every stream must end with done or an error event, never a silent
// clean end. The success rate and the p99 during the fault are logged
// (go test -v -run TestUpstreamKilledUnderLoad ./gateway).
func TestUpstreamKilledUnderLoad(t *testing.T) {
	cfgA := mock.ServerConfig{OutputTokens: 8, TokenDelay: 2 * time.Millisecond}
	a := mocktest.Start(t, cfgA)
	b := mocktest.Start(t, mock.ServerConfig{OutputTokens: 8, TokenDelay: 2 * time.Millisecond})
	w := newWorld(t, nil)
	for name, up := range map[string]*mocktest.Upstream{"a": a, "b": b} {
		w.AddOpenAI(name, up.Addr, func(c *openai.Config) {
			c.APIKey, c.Timeout, c.FirstTokenTimeout, c.ConnectTimeout = "k", 2*time.Second, time.Second, 200*time.Millisecond
		})
	}
	w.AddModel("ha-1", providers.PoolConfig{Strategy: providers.StrategyWeighted, MaxAttempts: 3,
		Breaker: providers.BreakerConfig{ConsecutiveFailures: 3, OpenFor: 500 * time.Millisecond}}, policy.Prices{}, 4096,
		deployment{Provider: "a", Model: "m"}, deployment{Provider: "b", Model: "m"})
	g := w.start()

	const runFor = 6 * time.Second
	start := time.Now()
	stop := start.Add(runFor)
	var killed, restarted atomic.Int64 // ns since start
	go func() {
		time.Sleep(2 * time.Second)
		killed.Store(int64(time.Since(start)))
		_ = a.Srv.Shutdown()
		time.Sleep(2 * time.Second)
		ln, err := net.Listen("tcp", a.Addr)
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
				req.Header.Set("Authorization", "Bearer "+mocktest.KeyDemo)
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
