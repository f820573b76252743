package persona

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFileSource(t *testing.T) {
	in := []Persona{demo("psn_a", "wsp_a"), demo("psn_b", "wsp_b")}
	s := NewFileSource(in)
	in[0].Name = "changed after construction"
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"hit", "psn_a", nil},
		{"other hit", "psn_b", nil},
		{"miss", "psn_c", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.Get(context.Background(), tt.id)
			if err != tt.wantErr {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (p.ID != tt.id || p.Name != "Demo") {
				t.Fatalf("got %+v", p)
			}
		})
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d", s.Len())
	}
}

func TestHTTPSourceGet(t *testing.T) {
	const token = "tok-very-secret-123"
	big := `{"id":"psn_x","workspace":"w","systemPrompt":"` + strings.Repeat("a", maxOriginBody) + `"}`
	tests := []struct {
		name       string
		setup      func(o *testOrigin)
		id         string
		wantErr    error  // errors.Is target
		wantErrMsg string // in the error text
	}{
		{"found", func(o *testOrigin) {}, "psn_x", nil, ""},
		{"not found", func(o *testOrigin) {}, "psn_nope", ErrNotFound, ""},
		{"server error", func(o *testOrigin) { o.status = http.StatusServiceUnavailable }, "psn_x", nil, "unexpected status 503"},
		{"unauthorized", func(o *testOrigin) { o.status = http.StatusUnauthorized }, "psn_x", nil, "unexpected status 401"},
		{"other id", func(o *testOrigin) { o.rawBody = `{"id":"psn_y","workspace":"w"}` }, "psn_x", nil, `answered persona "psn_y" for "psn_x"`},
		{"empty workspace", func(o *testOrigin) { o.rawBody = `{"id":"psn_x"}` }, "psn_x", nil, "workspace: required"},
		{"not json", func(o *testOrigin) { o.rawBody = `<html>` }, "psn_x", nil, "decoding persona"},
		{"body over 1 MiB", func(o *testOrigin) { o.rawBody = big }, "psn_x", nil, "body over 1048576 bytes"},
		{"unknown fields ignored", func(o *testOrigin) { o.rawBody = `{"id":"psn_x","workspace":"w","future":1}` }, "psn_x", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newTestOrigin(t, demo("psn_x", "wsp_a"))
			o.set(tt.setup)
			s := o.source(t, time.Second, token)
			p, err := s.Get(context.Background(), tt.id)
			switch {
			case tt.wantErr == nil && tt.wantErrMsg == "":
				if err != nil || p == nil || p.ID != tt.id {
					t.Fatalf("got %+v, %v", p, err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tt.wantErrMsg) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErrMsg)
				}
				if errors.Is(err, ErrNotFound) {
					t.Fatalf("err %v must not read as not found", err)
				}
			}
			if err != nil && strings.Contains(err.Error(), token) {
				t.Fatalf("error leaks the token: %v", err)
			}
			o.mu.Lock()
			req := o.lastReq
			o.mu.Unlock()
			if got := req.Header.Get("Authorization"); got != "Bearer "+token {
				t.Errorf("Authorization = %q", got)
			}
			if got := req.Header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept = %q", got)
			}
			if req.Method != http.MethodGet || req.URL.Path != "/personas/"+tt.id {
				t.Errorf("request = %s %s", req.Method, req.URL.Path)
			}
		})
	}
}

func TestHTTPSourceStatusErrorIsTyped(t *testing.T) {
	o := newTestOrigin(t)
	o.set(func(o *testOrigin) { o.status = http.StatusTooManyRequests })
	_, err := o.source(t, time.Second, "").Get(context.Background(), "psn_x")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests {
		t.Fatalf("err = %v, want *StatusError 429", err)
	}
}

func TestHTTPSourceNoAuthorizationWithoutToken(t *testing.T) {
	o := newTestOrigin(t, demo("psn_x", "wsp_a"))
	// A trailing slash on baseURL must not double the slash in the path.
	s, err := NewHTTPSource(HTTPConfig{BaseURL: o.srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "psn_x"); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if h, ok := o.lastReq.Header["Authorization"]; ok {
		t.Fatalf("Authorization sent without a token: %q", h)
	}
	if o.lastReq.URL.Path != "/personas/psn_x" {
		t.Fatalf("path = %q", o.lastReq.URL.Path)
	}
}

func TestHTTPSourceTransportErrorHidesToken(t *testing.T) {
	o := newTestOrigin(t)
	url := o.srv.URL
	o.srv.Close() // nothing listens there any more
	s, err := NewHTTPSource(HTTPConfig{BaseURL: url, Timeout: time.Second, BearerToken: "tok-secret"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(context.Background(), "psn_x")
	if err == nil || errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "tok-secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewHTTPSourceRejectsBadConfig(t *testing.T) {
	for _, base := range []string{"", "origin:8080", "ftp://origin", "http://origin/?q=1"} {
		if _, err := NewHTTPSource(HTTPConfig{BaseURL: base}); err == nil || !strings.Contains(err.Error(), "baseURL") {
			t.Errorf("%q: err = %v, want a baseURL error", base, err)
		}
	}
}

func FuzzDecodeOrigin(f *testing.F) {
	f.Add([]byte(`{"id":"psn_x","workspace":"w","temperature":0.5,"allowedModels":["a"]}`), "psn_x")
	f.Add([]byte(`{"id":"psn_x"}`), "psn_x")
	f.Add([]byte(`null`), "psn_x")
	f.Add([]byte(`{"temperature":"hot"}`), "")
	f.Add([]byte(`[1,2,3]`), "psn_y")
	f.Fuzz(func(t *testing.T, body []byte, id string) {
		p, err := decodeOrigin(body, id)
		if err != nil {
			if p != nil {
				t.Fatalf("persona with error %v", err)
			}
			return
		}
		if p.ID != id || !ValidID(p.ID) || p.Workspace == "" {
			t.Fatalf("accepted %+v for %q", p, id)
		}
	})
}
