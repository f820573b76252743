package testkit

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/moonborn/edge/"

// TestArchitectureMap holds docs/architecture.md's package table to the
// code: every package of the module has a row, and the row's "imports
// (ours)" column is exactly what go list reports.
func TestArchitectureMap(t *testing.T) {
	root := filepath.Join("..", "..")
	documented := documentedImports(t, filepath.Join(root, "docs", "architecture.md"))
	actual := listedImports(t, root)
	for pkg, want := range actual {
		got, ok := documented[pkg]
		if !ok {
			t.Errorf("%s: no row in docs/architecture.md", pkg)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: docs say it imports %v, go list says %v", pkg, got, want)
		}
	}
	for pkg := range documented {
		if _, ok := actual[pkg]; !ok {
			t.Errorf("%s: documented, but no such package", pkg)
		}
	}
}

// documentedImports reads the rows of the Packages table: | `pkg` | job | `a`, `b` |.
func documentedImports(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inTable = line == "## Packages"
			continue
		case !inTable || !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("row %q: want 3 cells", line)
		}
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		imports := []string{}
		for _, s := range strings.Split(cells[2], ",") {
			if s = strings.Trim(strings.TrimSpace(s), "`"); s != "" && s != "—" {
				imports = append(imports, s)
			}
		}
		slices.Sort(imports)
		out[pkg] = imports
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no package rows found under ## Packages")
	}
	return out
}

// listedImports asks go list for every package's imports within the module.
func listedImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		imports := []string{}
		for _, imp := range fields[1:] {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				imports = append(imports, rest)
			}
		}
		slices.Sort(imports)
		out[pkg] = imports
	}
	return out
}
