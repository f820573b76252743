package main

// The credential patterns the redactor removes, matched word by word.

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
