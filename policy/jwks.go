package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// JWKS is one issuer's JSON Web Key Set, fetched from its URL and kept in
// memory: at start, every refresh interval, and when a token names a kid
// the set lacks (at most once per minimum interval, so forged kids cannot
// make us hammer the issuer). A fetch that fails, or returns a document
// with no usable key, keeps the last good set. Every key is pinned to the
// algorithm its JWK declares.
//
// Safe for concurrent use; Close stops the schedule.
type JWKS struct {
	url         string
	refresh     time.Duration
	minInterval time.Duration
	timeout     time.Duration
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	keys        atomic.Pointer[map[string]*jwtKey]
	fetchMu     sync.Mutex   // one fetch at a time
	lastAttempt atomic.Int64 // Unix ns of the last fetch begun on a miss or schedule

	fetches, failures atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewJWKS fetches c.JWKSURL once (a failure is logged, not returned: the
// set starts empty and is tried again) and starts the refresh schedule.
// log may be nil; now nil means time.Now.
func NewJWKS(c JWTConfig, log *slog.Logger, now func() time.Time) *JWKS {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	j := &JWKS{
		url: c.JWKSURL, refresh: c.JWKSRefresh, minInterval: c.JWKSMinInterval, timeout: c.JWKSTimeout,
		client: &http.Client{Timeout: c.JWKSTimeout}, log: log, now: now,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	empty := map[string]*jwtKey{}
	j.keys.Store(&empty)
	j.fetch(now())
	go j.loop()
	return j
}

func (j *JWKS) sameSettings(c JWTConfig) bool {
	return j.url == c.JWKSURL && j.refresh == c.JWKSRefresh && j.minInterval == c.JWKSMinInterval && j.timeout == c.JWKSTimeout
}

// Close stops the refresh schedule.
func (j *JWKS) Close() {
	j.closeOnce.Do(func() { close(j.stop); <-j.done })
}

// Len is the number of keys in the current set.
func (j *JWKS) Len() int { return len(*j.keys.Load()) }

// Fetches returns the fetch attempts made and how many failed.
func (j *JWKS) Fetches() (attempts, failures uint64) { return j.fetches.Load(), j.failures.Load() }

func (j *JWKS) loop() {
	defer close(j.done)
	t := time.NewTicker(j.refresh)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			j.fetch(j.now())
		}
	}
}

// key returns the key for kid, fetching the set again when kid is unknown
// and the last fetch is at least minInterval old.
func (j *JWKS) key(kid string, now time.Time) *jwtKey {
	if k := (*j.keys.Load())[kid]; k != nil {
		return k
	}
	if now.UnixNano()-j.lastAttempt.Load() < int64(j.minInterval) {
		return nil
	}
	j.fetchMu.Lock()
	// Another caller may have fetched while we waited.
	if k := (*j.keys.Load())[kid]; k != nil || now.UnixNano()-j.lastAttempt.Load() < int64(j.minInterval) {
		j.fetchMu.Unlock()
		return k
	}
	j.fetchLocked(now)
	j.fetchMu.Unlock()
	return (*j.keys.Load())[kid]
}

// only returns the set's key when it holds exactly one (tokens without kid).
func (j *JWKS) only() *jwtKey {
	m := *j.keys.Load()
	if len(m) != 1 {
		return nil
	}
	for _, k := range m {
		return k
	}
	return nil
}

func (j *JWKS) fetch(now time.Time) {
	j.fetchMu.Lock()
	j.fetchLocked(now)
	j.fetchMu.Unlock()
}

func (j *JWKS) fetchLocked(now time.Time) {
	j.lastAttempt.Store(now.UnixNano())
	j.fetches.Add(1)
	keys, skipped, err := j.get()
	if err == nil && len(keys) == 0 {
		err = errors.New("no usable key in the set")
	}
	if err != nil {
		j.failures.Add(1)
		j.log.Warn("jwks: fetch failed; keeping the last good set", "url", j.url, "err", err.Error(), "keys", j.Len())
		return
	}
	for _, s := range skipped {
		j.log.Warn("jwks: key skipped", "url", j.url, "reason", s)
	}
	j.keys.Store(&keys)
}

func (j *JWKS) get() (map[string]*jwtKey, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("document larger than %d bytes", maxJWKSBytes)
	}
	return ParseJWKS(body)
}

// jwk is the part of RFC 7517 we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads a JWKS document into keys by kid, each pinned to its
// algorithm. Keys it cannot use (encryption keys, symmetric keys, unknown
// types or curves, RSA keys without alg or under 2048 bits, duplicate
// kids) are skipped with a reason; the error is for a document that is
// not a JWKS at all.
func ParseJWKS(doc []byte) (keys map[string]*jwtKey, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`not a JWKS document: no "keys" array`)
	}
	keys = make(map[string]*jwtKey, len(set.Keys))
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: not a JWK object", i))
			continue
		}
		jk, err := k.parse()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d] (kid %q): %v", i, k.Kid, err))
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			delete(keys, k.Kid) // ambiguous: neither is trusted
			skipped = append(skipped, fmt.Sprintf("keys[%d]: duplicate kid %q", i, k.Kid))
			continue
		}
		keys[k.Kid] = jk
	}
	return keys, skipped, nil
}

func (k *jwk) parse() (*jwtKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return nil, fmt.Errorf("use %q is not sig", k.Use)
	}
	b64 := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	alg := k.Alg
	var key any
	switch k.Kty {
	case "RSA":
		switch alg {
		case "RS256", "RS384", "RS512", "PS256":
		case "":
			return nil, errors.New("RSA key without alg (RS256 or PS256 cannot be told apart)")
		default:
			return nil, fmt.Errorf("alg %q not allowed for RSA", alg)
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA modulus or exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, need at least %d", pub.N.BitLen(), minRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		key = pub
	case "EC":
		var curve elliptic.Curve
		want := ""
		switch k.Crv {
		case "P-256":
			curve, want = elliptic.P256(), "ES256"
		case "P-384":
			curve, want = elliptic.P384(), "ES384"
		default:
			return nil, fmt.Errorf("curve %q not supported", k.Crv)
		}
		if alg == "" {
			alg = want
		} else if alg != want {
			return nil, fmt.Errorf("alg %q does not match curve %s", alg, k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC point")
		}
		pt := append([]byte{4}, append(x, y...)...)
		pub, err := ecdsaFromUncompressed(curve, pt)
		if err != nil {
			return nil, err
		}
		key = pub
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("curve %q not supported", k.Crv)
		}
		if alg == "" {
			alg = "EdDSA"
		} else if alg != "EdDSA" {
			return nil, fmt.Errorf("alg %q does not match Ed25519", alg)
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		key = ed25519.PublicKey(x)
	case "oct":
		return nil, errors.New("symmetric keys are not accepted from a JWKS")
	default:
		return nil, fmt.Errorf("key type %q not supported", k.Kty)
	}
	return pinKey(&jwtKey{id: k.Kid, alg: alg, key: key}), nil
}

// ecdsaFromUncompressed checks that the point is on the curve.
func ecdsaFromUncompressed(curve elliptic.Curve, pt []byte) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	x := new(big.Int).SetBytes(pt[1 : 1+size])
	y := new(big.Int).SetBytes(pt[1+size:])
	if !curve.IsOnCurve(x, y) {
		return nil, errors.New("EC point is not on the curve")
	}
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}
