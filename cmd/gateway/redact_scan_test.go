package main

import (
	"bytes"
	"testing"
)

// redactByteByByte is redact as it was before it went run by run: every
// byte tested for a word start. Kept as the reference the faster scan
// must equal, byte for byte, on every input (FuzzRedactScanMatchesReference).
func redactByteByByte(out, line []byte) []byte {
	last := 0
	for i := 0; i < len(line); i++ {
		if !triggers[line[i]] || !wordStart(line, i) {
			continue
		}
		keep, end := match(line, i)
		if end < 0 {
			for i+1 < len(line) && isWordByte(line[i+1]) {
				i++
			}
			continue
		}
		out = append(out, line[last:keep]...)
		if end > keep {
			out = append(out, redactedMark...)
		}
		last, i = end, end-1
	}
	return append(out, line[last:]...)
}

func TestRedactScanMatchesReference(t *testing.T) {
	for _, line := range []string{
		``, `x`, `\`, `\n`, `\nAuthorization: Bearer abc.def`, `Authorization: x\r\nCookie: y`,
		`{"msg":"GET /?token=abc&key=def HTTP/1.1\r\nX-Api-Key: sk-0123456789abcdef\r\n"}`,
		`eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig=sk-abcdefghij`, `bearer abc=sk-abcdefghijk`,
		`password=pw@host token=t;key=k,basic Zm9vOmJhcg==xoxb-1234567890`,
		`\tsk_live_12345678 \bmb_12345678 \fpk_12345678\rrk_12345678`, `api_key=` + "\xff" + `sk-12345678`,
		`{"time":"2026-12-03T15:31:35Z","level":"INFO","msg":"request","request_id":"req_1","credential":"key_demo","stream":false}`,
	} {
		got, want := redact(nil, []byte(line)), redactByteByByte(nil, []byte(line))
		if !bytes.Equal(got, want) {
			t.Errorf("redact(%q) = %q, the reference %q", line, got, want)
		}
	}
}

// FuzzRedactScanMatchesReference: the run-by-run scan removes exactly
// what the byte-by-byte one did.
func FuzzRedactScanMatchesReference(f *testing.F) {
	f.Add([]byte(`{"msg":"Authorization: Bearer abc\nCookie: sk-0123456789 eyJhbGci.eyJzdWIi.sig"}`))
	f.Add([]byte(`\\nkey=1\nsecret=2 xoxp-123456789`))
	f.Fuzz(func(t *testing.T, line []byte) {
		got, want := redact(nil, line), redactByteByByte(nil, line)
		if !bytes.Equal(got, want) {
			t.Fatalf("redact(%q) = %q, the reference %q", line, got, want)
		}
	})
}
