package spanattr

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// A released buffer comes back empty, its strings let go.
func TestReleased(t *testing.T) {
	a := Get()
	a.KV = append(a.KV, attribute.String("k", "v"))
	kv := a.KV
	a.Release()
	if kv[:1][0] != (attribute.KeyValue{}) {
		t.Fatal("a released buffer still holds its attributes")
	}
	if b := Get(); len(b.KV) != 0 {
		t.Fatalf("buffer came back with %v", b.KV)
	}
}
