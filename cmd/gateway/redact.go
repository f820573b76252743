package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
)

// redactor is the one writer every line the process logs passes through:
// newLogger takes nothing else, so no logger can bypass it. It removes
// credentials, whatever wrote the line (our code, fasthttp, go-redis,
// the access log, a recovered panic), and bounds the line's length:
//
//   - the value of credential headers (Authorization, Proxy-Authorization,
//     X-Api-Key, Api-Key, Cookie, Set-Cookie, X-Goog-Api-Key) and of
//     credential parameters (password=, token=, key=, api_key=, …);
//   - the token after Bearer and Basic;
//   - JWT-shaped tokens (eyJ….….…) and key-shaped tokens (sk-…, sk_…,
//     mb_…, pk_…, rk_…, ghp_…, xox?-…);
//   - every configured secret verbatim (upstream API keys, the admin
//     token, JWT secrets, the Redis password, database passwords).
//
// Lines are slog's JSON records; a line cut at maxLine is closed so it
// stays valid JSON. Safe for concurrent use.
type redactor struct {
	w       io.Writer
	secrets []secretForms // longest first, so a secret containing another goes whole
	maxLine int

	mu  sync.Mutex
	out []byte
}

// redactedMark replaces what is removed.
const redactedMark = "[REDACTED]"

// maxLogLine bounds one log line, in bytes.
const maxLogLine = 8 << 10

// secretForms is a configured secret as it can appear in a line: raw,
// and as JSON escapes it inside a string (with and without HTML
// escaping) when that differs, as for a secret holding a quote.
type secretForms struct {
	raw     []byte
	escaped [][]byte
}

// newRedactor writes redacted lines to w. Secrets shorter than 6 bytes
// are ignored: they would blank out ordinary words.
func newRedactor(w io.Writer, secrets []string) *redactor {
	r := &redactor{w: w, maxLine: maxLogLine}
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) < 6 || seen[s] {
			continue
		}
		seen[s] = true
		f := secretForms{raw: []byte(s)}
		for _, html := range []bool{false, true} {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(html)
			_ = enc.Encode(s)
			e := bytes.TrimSuffix(bytes.TrimSuffix(b.Bytes(), []byte("\n")), []byte("\""))
			e = bytes.TrimPrefix(e, []byte("\""))
			if !bytes.Equal(e, f.raw) && !slices.ContainsFunc(f.escaped, func(x []byte) bool { return bytes.Equal(x, e) }) {
				f.escaped = append(f.escaped, e)
			}
		}
		r.secrets = append(r.secrets, f)
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i].raw) > len(r.secrets[j].raw) })
	return r
}

// Write implements io.Writer for one or more whole lines.
func (r *redactor) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out[:0]
	for len(p) > 0 {
		line := p
		rest := []byte(nil)
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, rest = p[:i], p[i+1:]
		}
		out = r.appendLine(out, line)
		out = append(out, '\n')
		p = rest
	}
	r.out = out[:0]
	if cap(out) > 4*maxLogLine {
		r.out = nil // one huge write must not pin its buffer
	}
	_, err := r.w.Write(out)
	return n, err
}

// appendLine appends line, redacted and bounded, to out.
func (r *redactor) appendLine(out, line []byte) []byte {
	start := len(out)
	out = redact(out, line)
	for _, s := range r.secrets {
		out = r.replaceSecret(out, start, s)
	}
	if len(out)-start > r.maxLine {
		out = closeTruncated(out[:start+r.maxLine], start)
	}
	return out
}

// withheldLine stands in for a JSON line that a secret could not be cut
// out of without breaking it.
const withheldLine = `{"level":"WARN","msg":"` + redactedMark + `","withheld":"the line held a configured secret across its JSON structure"}`

// replaceSecret removes secret s from the line out[start:]. In a JSON
// line the secret appears escaped inside a string; its raw form, when it
// differs (a quote, a backslash), can only match across the line's
// structure. That raw match is removed all the same — a secret never
// survives — and should the line no longer be JSON it is withheld whole.
func (r *redactor) replaceSecret(out []byte, start int, s secretForms) []byte {
	for _, e := range s.escaped {
		out = replaceAll(out, start, e)
	}
	if len(s.escaped) == 0 || !bytes.Contains(out[start:], s.raw) {
		return replaceAll(out, start, s.raw)
	}
	wasJSON := json.Valid(out[start:])
	out = replaceAll(out, start, s.raw)
	if wasJSON && !json.Valid(out[start:]) {
		out = append(out[:start], withheldLine...)
	}
	return out
}

// replaceAll replaces every s in out[start:] with the mark. A match that
// begins or ends inside a JSON escape (a secret holding a quote is
// logged as \" ) takes the whole escape with it, so the line stays JSON.
func replaceAll(out []byte, start int, s []byte) []byte {
	from := start
	for {
		i := bytes.Index(out[from:], s)
		if i < 0 {
			return out
		}
		a, b := widenToEscapes(out, start, from+i, from+i+len(s))
		tail := append([]byte(nil), out[b:]...)
		out = append(append(out[:a], redactedMark...), tail...)
		from = a + len(redactedMark)
	}
}

// widenToEscapes widens [a, b) so that no escape sequence of the line
// out[start:] (\x or \uXXXX) is cut by either end.
func widenToEscapes(out []byte, start, a, b int) (int, int) {
	for k := start; k < len(out) && k < b; k++ {
		if out[k] != '\\' {
			continue
		}
		e := k + 2
		if k+1 < len(out) && out[k+1] == 'u' {
			e = k + 6
		}
		e = min(e, len(out))
		if k < a && a < e {
			a = k
		}
		if k < b && b < e {
			b = e
		}
		k = e - 1
	}
	return a, b
}

// secrets lists every credential the config holds in clear, for the
// redactor: it removes them from log lines verbatim.
func (c *Config) secrets() []string {
	out := []string{c.Server.AdminToken, c.Limits.Redis.Password, c.Personas.HTTP.BearerToken}
	for _, k := range c.Auth.JWT.Keys {
		out = append(out, k.Secret)
	}
	for i := range c.Providers {
		pc := &c.Providers[i]
		for _, k := range providerKinds { // every block set, even a wrong one
			if k.http != nil && k.present(pc) {
				out = append(out, k.http(pc).APIKey)
			}
		}
	}
	if pw := dsnPassword(c.Ledger.DSN); pw != "" {
		out = append(out, pw, url.QueryEscape(pw))
	}
	return out
}

// dsnPassword finds the password of a PostgreSQL URL or key=value DSN.
func dsnPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}
