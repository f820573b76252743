package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it holds, failing
// the test with what if within passes first. within is a bound for a
// loaded machine, never a timing assertion: pick it generous, and measure
// speed with benchmarks instead.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
