package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/gateway/persona"
	"github.com/moonborn/edge/policy"
	"github.com/moonborn/edge/policy/ledger"
	"github.com/moonborn/edge/providers"
)

// panicProvider is a provider with a bug: the gateway must turn its panic
// into a 500 in the API's shape, on both paths.
type panicProvider struct{}

func (panicProvider) Complete(context.Context, *providers.Request) (providers.Result, error) {
	panic("bug")
}
func (panicProvider) Stream(context.Context, *providers.Request) (providers.Stream, error) {
	panic("bug")
}

// memLedger keeps records for assertions.
type memLedger struct {
	mu   sync.Mutex
	recs []ledger.UsageRecord
}

func (l *memLedger) Record(r ledger.UsageRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}
func (l *memLedger) Close() error { return nil }

func TestPanicBecomes500(t *testing.T) {
	auth, err := policy.NewAuthenticator(policy.AuthConfig{APIKeys: []policy.APIKeyConfig{
		{ID: "k", Workspace: "w", SHA256: policy.HashKey("key")}}})
	if err != nil {
		t.Fatal(err)
	}
	var pc persona.Config
	pc.SetDefaults()
	res, err := persona.NewResolver(persona.NewFileSource([]persona.Persona{
		{ID: "psn_x", Workspace: "w", SystemPrompt: "s", DefaultModel: "m"}}), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	s, err := New(Options{Auth: auth, Personas: res, Ledger: &memLedger{},
		Models: map[string]*Model{"m": {ID: "m", Provider: panicProvider{}, MaxOutputTokens: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	for _, body := range []string{`{"userText":"hi"}`, `{"userText":"hi","stream":true}`} {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/personas/psn_x/chat", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 500 || e.Error.Code != "internal" || resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("%s: status %d body %+v err %v", body, resp.StatusCode, e, err)
		}
	}
}
