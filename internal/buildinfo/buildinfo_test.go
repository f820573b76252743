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
