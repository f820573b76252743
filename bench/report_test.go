package bench

import (
	"math"
	"testing"
	"time"
)

// Service time is latency without the send lag, and the comparison
// reports both: a gateway side whose requests left later must not look
// slower by the bench's own lateness.
func TestServiceTimeExcludesSendLag(t *testing.T) {
	direct, gw := NewStats("direct"), NewStats("gateway")
	for range 100 {
		// Same service (700 µs total, first token at 200 µs), but the
		// gateway's requests left 300 µs late.
		direct.Add(&Outcome{Status: 200, Done: 700 * time.Microsecond, FirstToken: 200 * time.Microsecond, Tokens: 2})
		gw.Add(&Outcome{Status: 200, Sent: 300 * time.Microsecond, Done: 1000 * time.Microsecond, FirstToken: 500 * time.Microsecond, Tokens: 2})
	}
	a := Compare(Summarise(gw, time.Second), Summarise(direct, time.Second))
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.01+1 }
	if !near(a.LatencyUs.P50, 300) || !near(a.TTFTUs.P50, 300) {
		t.Errorf("due-time differences p50 %.0f / %.0f µs, want +300 (the lag)", a.LatencyUs.P50, a.TTFTUs.P50)
	}
	if math.Abs(a.ServiceUs.P50) > 5 || math.Abs(a.ServiceTTFTUs.P50) > 5 {
		t.Errorf("service differences p50 %.0f / %.0f µs, want 0", a.ServiceUs.P50, a.ServiceTTFTUs.P50)
	}
	if s := Summarise(gw, time.Second); !near(s.ServiceUs.P50, 700) || !near(s.ServiceTTFTUs.P50, 200) {
		t.Errorf("gateway service p50 %.0f, first token %.0f µs; want 700, 200", s.ServiceUs.P50, s.ServiceTTFTUs.P50)
	}
}
