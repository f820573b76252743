package bench

import (
	"bufio"
	"strings"
	"testing"
)

// feed runs a whole stream through a parser and returns the kinds seen
// (EvNone omitted) and the last error code.
func feed(p *SSEParser, stream string) ([]EventKind, string) {
	var kinds []EventKind
	br := bufio.NewReader(strings.NewReader(stream))
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if k := p.Line(line); k != EvNone {
				kinds = append(kinds, k)
			}
		}
		if err != nil {
			break
		}
	}
	return kinds, string(p.ErrorCode())
}

func TestSSEParser(t *testing.T) {
	cases := []struct {
		name     string
		proto    Proto
		stream   string
		want     []EventKind
		wantCode string
	}{
		{"gateway complete", ProtoPersona,
			"event: delta\ndata: {\"type\":\"delta\",\"content\":\"not\"}\n\nevent: delta\ndata: {\"type\":\"delta\",\"content\":\" this\"}\n\n" +
				": ping\n\nevent: done\ndata: {\"type\":\"done\",\"inputTokens\":21,\"outputTokens\":2}\n\n",
			[]EventKind{EvToken, EvToken, EvDone}, ""},
		{"gateway error event", ProtoPersona,
			"event: delta\ndata: {\"type\":\"delta\",\"content\":\"a\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"code\":\"upstream_error\",\"message\":\"cut\"}}\n\n",
			[]EventKind{EvToken, EvError}, "upstream_error"},
		{"gateway cut without done", ProtoPersona,
			"event: delta\ndata: {\"type\":\"delta\",\"content\":\"a\"}\n\nevent: delta\ndata: {\"ty",
			[]EventKind{EvToken}, ""},
		{"gateway CRLF lines", ProtoPersona,
			"event: delta\r\ndata: {}\r\n\r\nevent: done\r\ndata: {}\r\n\r\n",
			[]EventKind{EvToken, EvDone}, ""},
		{"gateway error without code", ProtoPersona,
			"event: error\ndata: {}\n\n", []EventKind{EvError}, "error_event"},
		{"openai complete", ProtoOpenAI,
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
				"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\ndata: [DONE]\n\n",
			[]EventKind{EvToken, EvDone}, ""},
		{"openai mid-stream error", ProtoOpenAI,
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"error\":{\"message\":\"x\",\"code\":null}}\n\n",
			[]EventKind{EvToken, EvError}, "upstream_error_event"},
		{"comments and blank lines only", ProtoPersona, ": ping\n\n\n\n", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, code := feed(NewSSEParser(c.proto), c.stream)
			if len(got) != len(c.want) {
				t.Fatalf("events %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("events %v, want %v", got, c.want)
				}
			}
			if code != c.wantCode {
				t.Errorf("code %q, want %q", code, c.wantCode)
			}
		})
	}
}

func TestSSEParserNoAllocs(t *testing.T) {
	p := NewSSEParser(ProtoPersona)
	lines := [][]byte{[]byte("event: delta\n"), []byte("data: {\"type\":\"delta\",\"content\":\" moon\"}\n"), []byte("\n")}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, l := range lines {
			p.Line(l)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per event, want 0", allocs)
	}
}

func FuzzSSEParser(f *testing.F) {
	f.Add("event: delta\ndata: {}\n\nevent: done\ndata: {}\n\n", false)
	f.Add("data: {\"delta\":{\"content\":\"x\"}}\n\ndata: [DONE]\n\n", true)
	f.Add("event: error\ndata: {\"code\":\"", false)
	f.Fuzz(func(t *testing.T, stream string, openai bool) {
		proto := ProtoPersona
		if openai {
			proto = ProtoOpenAI
		}
		kinds, _ := feed(NewSSEParser(proto), stream)
		// Every completed event needs a blank line: never more events than lines.
		if len(kinds) > strings.Count(stream, "\n")+1 {
			t.Fatalf("%d events from %d lines", len(kinds), strings.Count(stream, "\n"))
		}
	})
}

func BenchmarkSSEParser(b *testing.B) {
	p := NewSSEParser(ProtoPersona)
	lines := [][]byte{[]byte("event: delta\n"), []byte("data: {\"type\":\"delta\",\"content\":\" moon\"}\n"), []byte("\n")}
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			p.Line(l)
		}
	}
}
