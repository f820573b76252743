package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/providers/mock/mocktest"
)

// TestPersonaOriginSingleflight: 100 concurrent chats for one uncached
// persona served by an HTTP origin make exactly one origin call, and the
// origin's 404 for another workspace's lookups never leaks existence.
func TestPersonaOriginSingleflight(t *testing.T) {
	var calls atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond) // hold the miss open so the others pile up
		if r.URL.Path != "/personas/psn_remote" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "psn_remote", "workspace": "wsp_demo", "name": "Remote",
			"systemPrompt": "You are remote.", "defaultModel": "mock-1"})
	}))
	defer origin.Close()
	w := newWorld(t, nil)
	src, err := persona.NewHTTPSource(persona.HTTPConfig{BaseURL: origin.URL})
	if err != nil {
		t.Fatal(err)
	}
	w.PersonaSource = src
	w.PersonaConfig.Source = persona.SourceHTTP
	g := w.start()
	var wg sync.WaitGroup
	codes := make([]int, 100)
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", g.Base+"/v1/personas/psn_remote/chat", strings.NewReader(`{"userText":"hi"}`))
			req.Header.Set("Authorization", "Bearer "+mocktest.KeyDemo)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}(i)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d origin calls for 100 concurrent misses, want 1", n)
	}
	// Another workspace's caller gets the same 404 as for a missing persona.
	if r := g.Chat(mocktest.KeyOther, "psn_remote", `{"userText":"hi"}`); r.Status != 404 {
		t.Fatalf("other workspace: %d %s", r.Status, r.Body)
	}
}
