package testkit

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

// ReadJSONL returns the objects of a JSON-lines file (a JSONL usage
// ledger), failing the test on a line that is not one.
func ReadJSONL(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("ledger line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
