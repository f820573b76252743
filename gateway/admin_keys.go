package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/policy"
)

// KeyManager is the key store the admin API drives; *policy.KeyStore
// implements it.
type KeyManager interface {
	Create(ctx context.Context, k policy.NewKey, now time.Time) (*policy.StoredKey, string, error)
	List(ctx context.Context, workspace string) ([]*policy.StoredKey, error)
	Get(ctx context.Context, id string) (*policy.StoredKey, error)
	Revoke(ctx context.Context, id string, now time.Time) (*policy.StoredKey, error)
	Rotate(ctx context.Context, id string, grace time.Duration, now time.Time) (*policy.StoredKey, string, error)
	Update(ctx context.Context, id string, u policy.KeyUpdate, now time.Time) (*policy.StoredKey, error)
}

// ReloadFunc re-reads the configuration and applies it (POST
// /admin/reload, and SIGHUP in cmd/gateway). It returns what the reply
// shows: the new config hash and the changed settings that need a
// restart. An error means the new config was refused whole and the old
// one serves on; its message lists every problem.
type ReloadFunc func() (ReloadResult, error)

// ReloadResult is a successful reload.
type ReloadResult struct {
	// ConfigHash names the configuration now serving.
	ConfigHash string `json:"configHash"`
	// RestartRequired lists settings that changed but apply only after a
	// restart (listen addresses, ledger, limits backend, ...).
	RestartRequired []string `json:"restartRequired"`
}

// DefaultRotationGrace is how long a rotated key keeps working when the
// rotate request names no gracePeriod.
const DefaultRotationGrace = time.Hour

// keyTimeout bounds one key-store call made by the admin API.
const keyTimeout = 10 * time.Second

// serveControl answers the admin API's key, reload and status routes; it
// reports false for any other path. The caller has checked the token.
func serveControl(ctx *fasthttp.RequestCtx, o *AdminOptions, path string) bool {
	method := string(ctx.Method())
	switch {
	case path == "/admin/reload" && o.Reload != nil:
		serveReload(ctx, o, method)
		return true
	case path == "/admin/status" && o.Status != nil:
		if allow(ctx, method, "GET") {
			writeJSON(ctx, http.StatusOK, o.Status())
		}
		return true
	case o.Keys == nil:
		return false
	}
	if ws, ok := strings.CutPrefix(path, "/admin/workspaces/"); ok {
		ws, ok = strings.CutSuffix(ws, "/keys")
		if !ok || ws == "" || strings.Contains(ws, "/") {
			return false
		}
		serveKeyCollection(ctx, o, method, ws)
		return true
	}
	if path == "/admin/keys" {
		// The same collection addressed by ?workspace= (GET) or a
		// "workspace" field (POST), for clients that prefer one URL.
		serveKeyCollection(ctx, o, method, "")
		return true
	}
	rest, ok := strings.CutPrefix(path, "/admin/keys/")
	if !ok || rest == "" {
		return false
	}
	return serveKey(ctx, o, method, rest)
}

// serveReload answers POST /admin/reload.
func serveReload(ctx *fasthttp.RequestCtx, o *AdminOptions, method string) {
	if !allow(ctx, method, "POST") {
		return
	}
	res, err := o.Reload()
	if err != nil {
		writeError(ctx, validationError("config", "reload refused, the running config stays: "+err.Error()))
		return
	}
	if res.RestartRequired == nil {
		res.RestartRequired = []string{}
	}
	writeJSON(ctx, http.StatusOK, res)
}

// serveKeyCollection answers GET and POST on a workspace's keys. ws is
// the workspace from the path, or "" for /admin/keys, where GET reads it
// from ?workspace= and POST from the body.
func serveKeyCollection(ctx *fasthttp.RequestCtx, o *AdminOptions, method, ws string) {
	switch method {
	case "GET":
		if ws == "" {
			ws = string(ctx.QueryArgs().Peek("workspace"))
			if ws == "" {
				writeError(ctx, validationError("workspace", "query parameter required"))
				return
			}
		}
		c, cancel := context.WithTimeout(context.Background(), keyTimeout)
		defer cancel()
		keys, err := o.Keys.List(c, ws)
		if err != nil {
			writeKeyError(ctx, err)
			return
		}
		writeJSON(ctx, http.StatusOK, map[string]any{"keys": keys})
	case "POST":
		createKey(ctx, o, ws)
	default:
		allow(ctx, method, "GET, POST")
	}
}

// serveKey answers /admin/keys/{id} and its actions (rest is what follows
// /admin/keys/); it reports false for an unknown action.
func serveKey(ctx *fasthttp.RequestCtx, o *AdminOptions, method, rest string) bool {
	id, action, _ := strings.Cut(rest, "/")
	c, cancel := context.WithTimeout(context.Background(), keyTimeout)
	defer cancel()
	now := o.Now()
	switch action {
	case "":
		switch method {
		case "GET":
			k, err := o.Keys.Get(c, id)
			replyKey(ctx, k, err)
		case "PATCH":
			u, err := decodeUpdate(ctx.Request.Body())
			if err != nil {
				writeError(ctx, validationError("body", err.Error()))
				return true
			}
			k, err := o.Keys.Update(c, id, u, now)
			replyKey(ctx, k, err)
		case "DELETE":
			k, err := o.Keys.Revoke(c, id, now)
			replyKey(ctx, k, err)
		default:
			allow(ctx, method, "GET, PATCH, DELETE")
		}
	case "revoke":
		if allow(ctx, method, "POST") {
			k, err := o.Keys.Revoke(c, id, now)
			replyKey(ctx, k, err)
		}
	case "rotate":
		if allow(ctx, method, "POST") {
			rotateKey(ctx, o, c, id, now)
		}
	default:
		return false
	}
	return true
}

// rotateKey answers POST /admin/keys/{id}/rotate.
func rotateKey(ctx *fasthttp.RequestCtx, o *AdminOptions, c context.Context, id string, now time.Time) {
	var body struct {
		GracePeriod *string `json:"gracePeriod"`
	}
	if err := decodeStrict(ctx.Request.Body(), &body); err != nil {
		writeError(ctx, validationError("body", err.Error()))
		return
	}
	grace := DefaultRotationGrace
	if body.GracePeriod != nil {
		d, err := time.ParseDuration(*body.GracePeriod)
		if err != nil {
			writeError(ctx, validationError("gracePeriod", `must be a Go duration such as "1h" or "0s"`))
			return
		}
		grace = d
	}
	k, secret, err := o.Keys.Rotate(c, id, grace, now)
	if err != nil {
		writeKeyError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusCreated, withSecret{StoredKey: k, Key: secret})
}

// withSecret is a created key as the one reply that ever shows its secret.
type withSecret struct {
	*policy.StoredKey
	// Key is the secret: shown once, stored nowhere (only its hash).
	Key string `json:"key"`
}

// createBody is POST /admin/workspaces/{id}/keys.
type createBody struct {
	// Workspace is taken from the path; in POST /admin/keys, from here.
	Workspace string `json:"workspace"`
	Name      string `json:"name"`
	// ExpiresAt (RFC 3339) or ExpiresIn (a Go duration), not both.
	ExpiresAt *time.Time               `json:"expiresAt"`
	ExpiresIn *string                  `json:"expiresIn"`
	Limits    *policy.CredentialLimits `json:"limits"`
}

func createKey(ctx *fasthttp.RequestCtx, o *AdminOptions, ws string) {
	var body createBody
	if err := decodeStrict(ctx.Request.Body(), &body); err != nil {
		writeError(ctx, validationError("body", err.Error()))
		return
	}
	switch {
	case ws == "":
		ws = body.Workspace
	case body.Workspace != "" && body.Workspace != ws:
		writeError(ctx, validationError("workspace", "differs from the workspace in the path"))
		return
	}
	now := o.Now()
	nk := policy.NewKey{Workspace: ws, Name: body.Name, ExpiresAt: body.ExpiresAt, Limits: body.Limits}
	if body.ExpiresIn != nil {
		if body.ExpiresAt != nil {
			writeError(ctx, validationError("expiresIn", "set expiresAt or expiresIn, not both"))
			return
		}
		d, err := time.ParseDuration(*body.ExpiresIn)
		if err != nil || d <= 0 {
			writeError(ctx, validationError("expiresIn", `must be a positive Go duration such as "720h"`))
			return
		}
		t := now.Add(d)
		nk.ExpiresAt = &t
	}
	c, cancel := context.WithTimeout(context.Background(), keyTimeout)
	defer cancel()
	k, secret, err := o.Keys.Create(c, nk, now)
	if err != nil {
		writeKeyError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusCreated, withSecret{StoredKey: k, Key: secret})
}

// decodeUpdate reads a PATCH body: absent fields stay, null clears
// expiresAt and limits.
func decodeUpdate(b []byte) (policy.KeyUpdate, error) {
	var raw struct {
		Name      *string         `json:"name"`
		ExpiresAt json.RawMessage `json:"expiresAt"`
		Limits    json.RawMessage `json:"limits"`
	}
	var u policy.KeyUpdate
	if err := decodeStrict(b, &raw); err != nil {
		return u, err
	}
	u.Name = raw.Name
	if raw.ExpiresAt != nil {
		t := time.Time{}
		if !bytes.Equal(raw.ExpiresAt, []byte("null")) {
			if err := json.Unmarshal(raw.ExpiresAt, &t); err != nil {
				return u, errors.New("expiresAt: must be an RFC 3339 time or null")
			}
		}
		u.ExpiresAt = &t
	}
	if raw.Limits != nil {
		if bytes.Equal(raw.Limits, []byte("null")) {
			u.ClearLimits = true
		} else {
			var l policy.CredentialLimits
			if err := decodeStrict(raw.Limits, &l); err != nil {
				return u, errors.New("limits: " + err.Error())
			}
			u.Limits = &l
		}
	}
	return u, nil
}

// decodeStrict decodes one JSON object, refusing unknown fields; an empty
// body is an empty object.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return errors.New("malformed JSON or wrong field: " + err.Error())
	}
	if d.More() {
		return errors.New("one JSON object expected")
	}
	return nil
}

func replyKey(ctx *fasthttp.RequestCtx, k *policy.StoredKey, err error) {
	if err != nil {
		writeKeyError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, k)
}

func writeKeyError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, policy.ErrKeyNotFound):
		writeError(ctx, notFoundError("no such API key"))
	case errors.Is(err, policy.ErrInvalidKey):
		writeError(ctx, validationError("key", strings.TrimPrefix(err.Error(), policy.ErrInvalidKey.Error()+": ")))
	default:
		writeError(ctx, unavailableError("key store unavailable"))
	}
}

// allow answers 405 unless method is one of list's.
func allow(ctx *fasthttp.RequestCtx, method, list string) bool {
	for _, m := range strings.Split(list, ", ") {
		if m == method {
			return true
		}
	}
	ctx.Response.Header.Set("Allow", list)
	writeError(ctx, methodNotAllowedError("use "+list))
	return false
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, internalError())
		return
	}
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(b)
}
