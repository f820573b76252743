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

// Credential header names: their value is removed up to the end of the
// header (CR, LF, a JSON quote or escape).
var credentialHeaders = []string{
	"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
	"cookie", "set-cookie",
}

// Credential parameter names (query strings, DSNs): name=value.
var credentialParams = []string{
	"password", "passwd", "pwd", "token", "access_token", "refresh_token", "id_token",
	"key", "api_key", "apikey", "secret", "client_secret",
}

// Key prefixes: a word starting with one of these and at least 8 more
// key characters is a credential.
var keyPrefixes = []string{"sk-", "sk_", "mb_", "pk_", "rk_", "ghp_", "xoxb-", "xoxp-", "xoxa-"}

// redact appends line to out with credentials replaced by the mark. It
// looks only at word starts whose first letter begins some pattern, and
// copies everything else in runs.
//
// A word is a run of word bytes, and a run starts a word at its first
// byte — or at its second when the first is the letter of a JSON escape
// (the n of \n): a backslash is no word byte, so that is the only place
// inside a run such a letter can be. So the scan goes run by run, not
// byte by byte, and tries the patterns once per run.
func redact(out, line []byte) []byte {
	last := 0 // line[last:i] is still to copy
	for i := 0; i < len(line); {
		if !wordBytes[line[i]] {
			i++
			continue
		}
		s := i
		if isEscapeLetter(line, s) {
			s++
		}
		if s < len(line) && triggers[line[s]] {
			if keep, end := match(line, s); end >= 0 {
				out = append(out, line[last:keep]...)
				if end > keep {
					out = append(out, redactedMark...)
				}
				last, i = end, end
				if !wordBytes[line[end-1]] {
					continue // what follows may start a word
				}
			}
		}
		for i < len(line) && wordBytes[line[i]] {
			i++ // no pattern starts inside a word
		}
	}
	return append(out, line[last:]...)
}

// wordBytes marks the bytes isWordByte accepts.
var wordBytes = func() (t [256]bool) {
	for c := range t {
		t[c] = isWordByte(byte(c))
	}
	return t
}()

// match tries the patterns starting with line[i]'s letter. It returns
// the end of what is kept (the name and separator of a header or
// parameter) and the end of the credential, or end < 0 when nothing
// matches.
func match(line []byte, i int) (keep, end int) {
	rest := line[i:]
	for _, p := range byFirst[line[i]] {
		switch p.kind {
		case patHeader:
			if n := credentialAt(rest, p.word); n > 0 {
				j := i + n
				for j < len(line) && !endsHeader(line[j]) {
					j++
				}
				return i + n, j
			}
		case patParam:
			if hasPrefixFold(rest, p.word) && len(rest) > len(p.word) && rest[len(p.word)] == '=' {
				j := i + len(p.word) + 1
				for j < len(line) && !endsParam(line[j]) {
					j++
				}
				return i + len(p.word) + 1, j
			}
		case patScheme:
			if hasPrefixFold(rest, p.word) {
				j := i + len(p.word)
				for j < len(line) && line[j] == ' ' {
					j++
				}
				k := j
				for j < len(line) && isTokenByte(line[j]) {
					j++
				}
				return k, j
			}
		case patKey:
			if n := keyAt(rest, p.word); n > 0 {
				return i, i + n
			}
		case patJWT:
			if n := jwtAt(rest); n > 0 {
				return i, i + n
			}
		}
	}
	return 0, -1
}

// The kinds of pattern.
const (
	patHeader = iota // Name: value (case-insensitive name)
	patParam         // name=value (case-insensitive name)
	patScheme        // Bearer token (case-insensitive scheme)
	patKey           // sk-… (case-sensitive prefix)
	patJWT           // eyJ….…
)

type pattern struct {
	word string
	kind int
}

// byFirst lists the patterns by their first byte, in both cases for the
// case-insensitive ones. Built once, read only.
var byFirst = func() (t [256][]pattern) {
	add := func(w string, kind int, fold bool) {
		t[w[0]] = append(t[w[0]], pattern{w, kind})
		if c := w[0]; fold && 'a' <= c && c <= 'z' {
			t[c-'a'+'A'] = append(t[c-'a'+'A'], pattern{w, kind})
		}
	}
	for _, w := range credentialHeaders {
		add(w, patHeader, true)
	}
	for _, w := range credentialParams {
		add(w, patParam, true)
	}
	for _, w := range []string{"bearer ", "basic "} {
		add(w, patScheme, true)
	}
	for _, w := range keyPrefixes {
		add(w, patKey, false)
	}
	add("eyJ", patJWT, false)
	return t
}()

// triggers marks the bytes some pattern starts with.
var triggers = func() (t [256]bool) {
	for c := range byFirst {
		t[c] = len(byFirst[c]) > 0
	}
	return t
}()

// credentialAt returns the length of "name:" (with spaces and JSON quotes
// around the colon) when rest starts with the credential header name.
func credentialAt(rest []byte, name string) int {
	if !hasPrefixFold(rest, name) {
		return 0
	}
	j := len(name)
	if j < len(rest) && isWordByte(rest[j]) {
		return 0
	}
	if j < len(rest) && rest[j] == '"' {
		j++
	}
	for j < len(rest) && rest[j] == ' ' {
		j++
	}
	if j >= len(rest) || rest[j] != ':' {
		return 0
	}
	j++
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '"') {
		j++
	}
	return j
}

// keyAt returns the length of a key-shaped token: prefix and at least 8
// more key characters.
func keyAt(rest []byte, prefix string) int {
	if len(rest) < len(prefix) || string(rest[:len(prefix)]) != prefix {
		return 0
	}
	n := len(prefix)
	for n < len(rest) && isKeyByte(rest[n]) {
		n++
	}
	if n-len(prefix) < 8 {
		return 0
	}
	return n
}

// jwtAt returns the length of a JWT-shaped token (eyJ…, dotted base64url).
func jwtAt(rest []byte) int {
	if len(rest) <= 3 || string(rest[:3]) != "eyJ" {
		return 0
	}
	n, dots := 0, 0
	for n < len(rest) && (isB64URL(rest[n]) || rest[n] == '.') {
		if rest[n] == '.' {
			dots++
		}
		n++
	}
	if dots < 1 || n < 16 {
		return 0
	}
	return n
}

func hasPrefixFold(b []byte, lower string) bool {
	if len(b) < len(lower) {
		return false
	}
	for k := 0; k < len(lower); k++ {
		c := b[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[k] {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func isKeyByte(c byte) bool { return isWordByte(c) }

func isB64URL(c byte) bool { return isWordByte(c) || c == '+' || c == '/' || c == '=' }

// isTokenByte: the characters of an RFC 6750 bearer token.
func isTokenByte(c byte) bool {
	return isWordByte(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '='
}

// endsHeader: a header value ends at CR, LF, or where the JSON string
// quoting it ends or escapes (\r\n quoted in a message).
func endsHeader(c byte) bool { return c == '\r' || c == '\n' || c == '"' || c == '\\' }

func endsParam(c byte) bool {
	return endsHeader(c) || c == '&' || c == ' ' || c == ';' || c == ',' || c == '@'
}

// closeTruncated ends a JSON line cut short, out[start:], so it stays
// valid JSON: it backs off an escape or UTF-8 sequence cut in half,
// closes an open string, drops a dangling separator and closes open
// objects and arrays, then marks the line "truncated".
func closeTruncated(out []byte, start int) []byte {
	line := out[start:]
	// Back off a cut UTF-8 sequence.
	for len(line) > 0 && line[len(line)-1]&0xC0 == 0x80 {
		line = line[:len(line)-1]
	}
	if len(line) > 0 && line[len(line)-1] >= 0xC0 {
		line = line[:len(line)-1]
	}
	var stack []byte
	inString, isKey, escaped, escStart := false, false, false, -1
	var lastSig byte // last byte outside strings, spaces aside
	for k, c := range line {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped, escStart = true, k
		case inString && c == '"':
			inString = false
			lastSig = '"'
		case inString:
		case c == '"':
			inString = true
			isKey = len(stack) > 0 && stack[len(stack)-1] == '{' && (lastSig == '{' || lastSig == ',')
		case c == ' ':
		case c == '{' || c == '[':
			stack = append(stack, c)
			lastSig = c
		case (c == '}' || c == ']') && len(stack) > 0:
			stack = stack[:len(stack)-1]
			lastSig = c
		default:
			lastSig = c
		}
	}
	if inString {
		switch {
		case escaped: // cut right after a backslash
			line = line[:escStart]
		case escStart >= 0 && len(line)-escStart < 6 && line[escStart+1] == 'u': // a cut \uXXXX
			line = line[:escStart]
		}
		line = append(line, "…\""...)
		if isKey {
			line = append(line, ":null"...)
		}
	} else {
		line = bytes.TrimRight(line, " ")
		switch {
		case len(line) > 0 && line[len(line)-1] == ',':
			line = line[:len(line)-1]
		case len(line) > 0 && line[len(line)-1] == ':':
			line = append(line, "null"...)
		}
	}
	for k := len(stack) - 1; k >= 0; k-- {
		if k == 0 && stack[0] == '{' {
			line = append(line, `,"truncated":true`...)
		}
		if stack[k] == '{' {
			line = append(line, '}')
		} else {
			line = append(line, ']')
		}
	}
	return append(out[:start], line...)
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

// wordStart reports whether a word starts at i. The letter of a JSON
// escape (the n of \n) is not part of the word after it: a raw request
// quoted in a log message has its header names right after \r\n.
func wordStart(line []byte, i int) bool {
	if !isWordByte(line[i]) || isEscapeLetter(line, i) {
		return false
	}
	return i == 0 || !isWordByte(line[i-1]) || isEscapeLetter(line, i-1)
}

func isEscapeLetter(line []byte, i int) bool {
	if i == 0 || line[i-1] != '\\' {
		return false
	}
	switch line[i] {
	case 'n', 'r', 't', 'b', 'f':
		return true
	}
	return false
}
