package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type sseEv struct{ name, data string }

func readAllEvents(r *Reader) ([]sseEv, error) {
	var out []sseEv
	for {
		ev, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, sseEv{string(ev.Name), string(ev.Data)})
	}
}

func TestSSEReader(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		max     int
		want    []sseEv
		wantErr error
	}{
		{"single", "data: hello\n\n", 0, []sseEv{{"", "hello"}}, io.EOF},
		{"named", "event: delta\ndata: {\"a\":1}\n\n", 0, []sseEv{{"delta", `{"a":1}`}}, io.EOF},
		{"multi data lines join with LF", "data: a\ndata: b\ndata\n\n", 0, []sseEv{{"", "a\nb\n"}}, io.EOF},
		{"one space stripped only", "data:  two\ndata:none\n\n", 0, []sseEv{{"", " two\nnone"}}, io.EOF},
		{"CRLF", "event: x\r\ndata: y\r\n\r\n", 0, []sseEv{{"x", "y"}}, io.EOF},
		{"CR only", "event: x\rdata: y\r\r", 0, []sseEv{{"x", "y"}}, io.EOF},
		{"comments skipped", ": ping\n\n:another\ndata: z\n\n", 0, []sseEv{{"", "z"}}, io.EOF},
		{"id retry unknown ignored", "id: 7\nretry: 100\nfoo: bar\ndata: d\n\n", 0, []sseEv{{"", "d"}}, io.EOF},
		{"no data not dispatched, name reset", "event: lonely\n\ndata: x\n\n", 0, []sseEv{{"", "x"}}, io.EOF},
		{"empty data dispatched", "data:\n\n", 0, []sseEv{{"", ""}}, io.EOF},
		{"partial at EOF dropped", "data: a\n\ndata: b\n", 0, []sseEv{{"", "a"}}, io.EOF},
		{"unterminated line at EOF dropped", "data: a\n\ndata: b", 0, []sseEv{{"", "a"}}, io.EOF},
		{"BOM stripped", "\xEF\xBB\xBFdata: a\n\n", 0, []sseEv{{"", "a"}}, io.EOF},
		{"openai done", "data: {\"x\":1}\n\ndata: [DONE]\n\n", 0, []sseEv{{"", `{"x":1}`}, {"", "[DONE]"}}, io.EOF},
		{"last event name wins", "event: a\nevent: b\ndata: 1\n\n", 0, []sseEv{{"b", "1"}}, io.EOF},
		{"event too large", "data: " + strings.Repeat("x", 100) + "\n\n", 64, nil, ErrEventTooLarge},
		{"many lines too large", strings.Repeat("data: 0123456789\n", 10) + "\n", 64, nil, ErrEventTooLarge},
		{"long comment too large", ":" + strings.Repeat("x", 100) + "\ndata: a\n\n", 64, nil, ErrEventTooLarge},
		{"within limit", "data: " + strings.Repeat("x", 58) + "\n\n", 64, []sseEv{{"", strings.Repeat("x", 58)}}, io.EOF},
		{"large event grows buffer", "data: " + strings.Repeat("y", 20000) + "\n\n", 0, []sseEv{{"", strings.Repeat("y", 20000)}}, io.EOF},
	}
	for _, c := range cases {
		for _, split := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"bytewise", iotest.OneByteReader}, {"halves", iotest.HalfReader}} {
			t.Run(c.name+"/"+split.name, func(t *testing.T) {
				got, err := readAllEvents(NewReader(split.wrap(strings.NewReader(c.in)), c.max))
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				if !equalEvents(got, c.want) {
					t.Fatalf("events = %q, want %q", got, c.want)
				}
			})
		}
	}
}

func TestSSEReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom)), 0)
	got, err := readAllEvents(r)
	if !errors.Is(err, boom) || !equalEvents(got, []sseEv{{"", "a"}}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("error not sticky: %v", err)
	}
}

func TestSSEReaderReset(t *testing.T) {
	r := NewReader(strings.NewReader("data: a\n\ndata: partial"), 0)
	if _, err := readAllEvents(r); err != io.EOF {
		t.Fatal(err)
	}
	r.Reset(strings.NewReader("event: n\ndata: b\n\n"), 0)
	got, err := readAllEvents(r)
	if err != io.EOF || !equalEvents(got, []sseEv{{"n", "b"}}) {
		t.Fatalf("after Reset: %q, %v", got, err)
	}
}

func equalEvents(a, b []sseEv) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// refSSE is a direct, unoptimised reading of the WHATWG rules over the
// whole input, the oracle for the fuzz test.
func refSSE(in []byte) []sseEv {
	in = bytes.TrimPrefix(in, utf8BOM)
	var out []sseEv
	var name, data []byte
	hasData := false
	for len(in) > 0 {
		i := bytes.IndexAny(in, "\r\n")
		if i < 0 {
			break // unterminated line at EOF: dropped with its event
		}
		line := in[:i]
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			i++
		}
		in = in[i+1:]
		switch {
		case len(line) == 0:
			if hasData {
				out = append(out, sseEv{string(name), string(data[:len(data)-1])})
			}
			name, data, hasData = nil, nil, false
		case line[0] == ':':
		default:
			field, value, found := bytes.Cut(line, []byte(":"))
			if found && len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
			switch string(field) {
			case "data":
				data = append(append(data, value...), '\n')
				hasData = true
			case "event":
				name = append(name[:0], value...)
			}
		}
	}
	return out
}

// chunkReader returns its input in pieces whose sizes cycle through sizes.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%17 + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func FuzzSSEReader(f *testing.F) {
	seeds := []string{
		"data: hello\n\n",
		"event: content_block_delta\r\ndata: {\"type\":\"x\"}\r\n\r\n",
		"data: a\rdata: b\r\r: c\n\n",
		"\xEF\xBB\xBFdata: bom\n\n",
		"data\n\nevent\n\ndata:\n\n",
		"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), []byte{3, 1, 7})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		want := refSSE(in)
		whole, errWhole := readAllEvents(NewReader(bytes.NewReader(in), 1<<20))
		chunked, errChunked := readAllEvents(NewReader(&chunkReader{data: in, sizes: sizes}, 1<<20))
		if errWhole != io.EOF || errChunked != io.EOF {
			t.Fatalf("errors: %v, %v", errWhole, errChunked)
		}
		if !equalEvents(whole, want) {
			t.Fatalf("whole read %q, reference %q", whole, want)
		}
		if !equalEvents(chunked, want) {
			t.Fatalf("chunked read %q, reference %q", chunked, want)
		}
		// A tiny limit must fail cleanly, never panic.
		small := NewReader(&chunkReader{data: in, sizes: sizes}, 8)
		for {
			if _, err := small.Next(); err != nil {
				break
			}
		}
	})
}

// loopReader replays one stream forever, so the benchmark measures the
// reader's steady state.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func BenchmarkSSEReader(b *testing.B) {
	ev := "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n"
	src := &loopReader{data: []byte(strings.Repeat(ev, 64))}
	r := NewReader(src, 0)
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
