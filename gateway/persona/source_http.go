package persona

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxOriginBody caps a persona document from the origin; a bigger answer is
// an origin fault, not something to buffer.
const maxOriginBody = 1 << 20

// StatusError is an origin answer other than 200 or 404.
type StatusError struct {
	// Status is the HTTP status code the origin returned.
	Status int
}

// Error names the status only: the URL may carry credentials.
func (e *StatusError) Error() string {
	return fmt.Sprintf("persona origin: unexpected status %d", e.Status)
}

// HTTPSource fetches personas from an origin service: GET
// {baseURL}/personas/{id} → 200 with a JSON Persona, or 404. It is safe for
// concurrent use and keeps connections to the origin alive between calls.
type HTTPSource struct {
	client *http.Client
	prefix string // baseURL + "/personas/"
	auth   string // "Bearer …" or ""
}

// NewHTTPSource checks cfg (after its defaults) and builds the client.
func NewHTTPSource(cfg HTTPConfig) (*HTTPSource, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("persona: http source: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Misses for different ids run in parallel against one host; keep
	// enough idle connections for a burst of them.
	tr.MaxIdleConnsPerHost = 32
	s := &HTTPSource{
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		prefix: strings.TrimRight(cfg.BaseURL, "/") + "/personas/",
	}
	if cfg.BearerToken != "" {
		s.auth = "Bearer " + cfg.BearerToken
	}
	return s, nil
}

// Get fetches one persona. A persona whose id differs from id, or that
// fails the checks of the file source, is an error: the origin is trusted
// with content, not with routing. Errors never include the bearer token.
func (s *HTTPSource) Get(ctx context.Context, id string) (*Persona, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.prefix+url.PathEscape(id), nil)
	if err != nil {
		return nil, fmt.Errorf("persona origin: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL; the cause is what matters.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("persona origin: get %s: %w", id, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		drain(resp.Body)
		return nil, ErrNotFound
	default:
		drain(resp.Body)
		return nil, fmt.Errorf("persona origin: get %s: %w", id, &StatusError{Status: resp.StatusCode})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOriginBody+1))
	if err != nil {
		return nil, fmt.Errorf("persona origin: get %s: reading body: %w", id, err)
	}
	if len(body) > maxOriginBody {
		return nil, fmt.Errorf("persona origin: get %s: body over %d bytes", id, maxOriginBody)
	}
	p, err := decodeOrigin(body, id)
	if err != nil {
		return nil, fmt.Errorf("persona origin: get %s: %w", id, err)
	}
	return p, nil
}

// CloseIdleConnections closes the kept-alive connections to the origin.
func (s *HTTPSource) CloseIdleConnections() { s.client.CloseIdleConnections() }

// decodeOrigin decodes an origin's JSON persona and checks that it is the
// persona asked for and is well formed. Unknown fields are ignored so the
// origin can grow.
func decodeOrigin(body []byte, id string) (*Persona, error) {
	var p Persona
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("decoding persona: %w", err)
	}
	if p.ID != id {
		return nil, fmt.Errorf("origin answered persona %.64q for %q", p.ID, id)
	}
	if errs := checkPersona(&p); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("invalid persona: %s", strings.Join(msgs, "; "))
	}
	return &p, nil
}

// drain reads a little of an unwanted body so the connection can be
// reused; a big one is cheaper to drop with the connection.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 4<<10))
}
