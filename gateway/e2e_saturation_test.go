package gateway_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/mock"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestSaturationQueues: a deployment at maxConns makes requests wait for a
// connection rather than fail; only a full queue answers 503, and then
// says the capacity is exhausted (no breaker opened, no outage claimed).
func TestSaturationQueues(t *testing.T) {
	up := mocktest.Start(t, mock.ServerConfig{OutputTokens: 5, TimeToFirstToken: 100 * time.Millisecond})
	for _, tc := range []struct {
		name    string
		queue   int
		want503 bool
		wantAll bool
	}{
		{"queue holds the burst", 64, false, true},
		{"queue full", 1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, up)
			w.AddProtocols(up.Addr, func(provider string, h *providers.HTTPConfig) {
				if provider == "oa" {
					h.MaxConns, h.MaxQueue = 2, tc.queue
				}
			})
			g := w.start()
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[int]int{}
			var msgs []string
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := g.Chat(mocktest.KeyDemo, "psn_demo", `{"userText":"hi","modelId":"oa-1"}`)
					mu.Lock()
					defer mu.Unlock()
					codes[r.Status]++
					if r.Status != 200 {
						msgs = append(msgs, testkit.DecodeErr(t, r).Error.Message)
					}
				}()
			}
			wg.Wait()
			if tc.wantAll && codes[200] != 20 {
				t.Fatalf("with room in the queue: %v %v, want 20 × 200", codes, msgs)
			}
			if tc.want503 {
				if codes[503] == 0 || codes[200] == 0 {
					t.Fatalf("with a queue of 1: %v, want some 200 and some 503", codes)
				}
				for _, m := range msgs {
					if !strings.Contains(m, "capacity") {
						t.Errorf("503 message %q does not say the capacity is exhausted", m)
					}
				}
			}
			for _, p := range w.pools() {
				for _, d := range p.Snapshot(time.Now()).Deployments {
					if d.Breaker != "closed" {
						t.Errorf("deployment %s breaker %s after saturation, want closed", d.Name, d.Breaker)
					}
				}
			}
		})
	}
}
