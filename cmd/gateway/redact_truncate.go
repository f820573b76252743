package main

// Closing a JSON log line cut at maxLogLine, so it stays JSON.

import "bytes"

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
