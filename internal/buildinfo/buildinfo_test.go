package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	got := Line("bench")
	if !strings.HasPrefix(got, "moonborn bench ") || !strings.HasSuffix(got, " "+runtime.Version()) || !strings.Contains(got, "(revision ") {
		t.Fatalf("Line(bench) = %q", got)
	}
}

func TestInfoLine(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Info
		want string
	}{
		{"bare", Info{Version: "(devel)", Revision: "unknown", GoVersion: "go1"}, "moonborn gateway (devel) (revision unknown) go1"},
		{"time", Info{Version: "v1.2.0", Revision: "abc", Time: "2026-01-01T00:00:00Z", GoVersion: "go1"}, "moonborn gateway v1.2.0 (revision abc, 2026-01-01T00:00:00Z) go1"},
		{"modified", Info{Version: "v1", Revision: "abc", Time: "t", GoVersion: "go1", Modified: true}, "moonborn gateway v1 (revision abc, t, modified) go1"},
	} {
		if got := c.in.Line("gateway"); got != c.want {
			t.Errorf("%s: Line = %q, want %q", c.name, got, c.want)
		}
	}
}
