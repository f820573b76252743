package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/providers/mock/mocktest"
)

// maxSeries bounds the sample lines on /metrics for the test config: a few
// hundred from the configured models, deployments, routes, status classes
// and error codes, plus the Go runtime's. Traffic must not move it.
const maxSeries = 1500

// TestMetricsCardinalityBounded: 10,000 requests with random persona ids,
// random model ids, random (mostly invalid) API keys and random paths
// leave the number of series on /metrics under maxSeries, barely growing
// after the first thousand, and no persona id, workspace id, key or
// unknown model id appears in the scrape.
func TestMetricsCardinalityBounded(t *testing.T) {
	g := startGateway(t, testConfig(t, nil, ""))
	admin := "http://" + g.app.AdminAddr
	rng := rand.New(rand.NewPCG(5, 10_000))
	const n = 10_000
	reqs := make([]cardReq, n)
	for i := range reqs {
		reqs[i] = randomCardReq(rng)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	statuses := map[int]int{}
	send := func(part []cardReq) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan cardReq)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range next {
					status := r.do(client, g.Base)
					mu.Lock()
					statuses[status]++
					mu.Unlock()
				}
			}()
		}
		for _, r := range part {
			next <- r
		}
		close(next)
		wg.Wait()
	}

	send(reqs[:1000])
	early := countSeries(scrapeMetrics(t, admin))
	send(reqs[1000:])
	body := scrapeMetrics(t, admin)
	late := countSeries(body)

	if statuses[0] > 0 {
		t.Fatalf("%d requests failed at the transport: %v", statuses[0], statuses)
	}
	for _, want := range []int{200, 401, 404, 422} {
		if statuses[want] == 0 {
			t.Fatalf("no %d among the replies %v: the random mix no longer covers it", want, statuses)
		}
	}
	t.Logf("statuses %v; series after 1,000 requests %d, after 10,000 %d", statuses, early, late)
	if late > maxSeries {
		t.Errorf("%d series on /metrics after %d requests, bound %d", late, n, maxSeries)
	}
	if late-early > 20 {
		t.Errorf("series grew from %d to %d between 1,000 and 10,000 requests of the same mix: a label follows the input", early, late)
	}

	scrape := string(body)
	leaks := []string{"psn_demo", "psn_other", "wsp_demo", "wsp_other", mocktest.KeyDemo, mocktest.KeyOther, "key_demo", hashOf(mocktest.KeyDemo)}
	for _, r := range reqs {
		leaks = append(leaks, r.secrets...)
	}
	found := map[string]bool{}
	for _, s := range leaks {
		if !found[s] && strings.Contains(scrape, s) {
			found[s] = true
			t.Errorf("%q appears in the /metrics scrape", s)
			if len(found) > 10 {
				t.Fatal("too many leaks; stopping")
			}
		}
	}
}

// cardReq is one request of the random mix; secrets are the random ids and
// keys it carries, none of which may reach /metrics.
type cardReq struct {
	method, path, token, body string
	secrets                   []string
}

func (r cardReq) do(c *http.Client, base string) int {
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func randHex(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rng.IntN(16)]
	}
	return string(b)
}

// randomCardReq draws one request: 85% random API keys (valid-looking or
// not), persona ids half random, model ids half random, 1 in 20 a random
// path and 1 in 50 a stream.
func randomCardReq(rng *rand.Rand) cardReq {
	var r cardReq
	r.method = http.MethodPost
	switch x := rng.IntN(100); {
	case x < 70:
		r.token = "mb_" + randHex(rng, 24)
		r.secrets = append(r.secrets, r.token)
	case x < 80:
		r.token = "eyJ" + randHex(rng, 16) + "." + randHex(rng, 16) + "." + randHex(rng, 8) // JWT-shaped garbage
		r.secrets = append(r.secrets, r.token)
	case x < 85:
		r.token = ""
	default:
		r.token = mocktest.KeyDemo
	}
	persona := "psn_demo"
	switch x := rng.IntN(100); {
	case x < 45:
		persona = "psn_" + randHex(rng, 12)
		r.secrets = append(r.secrets, persona)
	case x < 50:
		persona = "ws_" + randHex(rng, 10) // not even a persona id
		r.secrets = append(r.secrets, persona)
	}
	model := ""
	switch x := rng.IntN(100); {
	case x < 50:
		model = "m-" + randHex(rng, 10)
		r.secrets = append(r.secrets, model)
	case x < 90:
		model = "mock-1"
	}
	stream := rng.IntN(50) == 0
	r.path = "/v1/personas/" + persona + "/chat"
	if model == "" {
		r.body = fmt.Sprintf(`{"userText":"hi","stream":%t}`, stream)
	} else {
		r.body = fmt.Sprintf(`{"userText":"hi","modelId":%q,"stream":%t}`, model, stream)
	}
	switch x := rng.IntN(100); {
	case x < 5:
		seg := randHex(rng, 12)
		r.path = "/v1/" + seg + "/x/" + persona
		r.secrets = append(r.secrets, seg)
	case x < 7:
		r.method = http.MethodGet
		r.body = ""
	}
	return r
}

// countSeries counts the sample lines of a text exposition.
func countSeries(body []byte) int {
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}
