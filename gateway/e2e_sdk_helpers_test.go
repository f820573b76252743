package gateway_test

import (
	"testing"
	"time"

	"github.com/moonborn/edge/policy"
)

// What the OpenAI and Anthropic SDK tests share: the models they run
// against, the subtests per model and mode, reading an SDK's event
// stream, and the rate-limited gateway the retry tests use.

// sdkModels are the built-in mock and one deployment of each wire
// protocol: every SDK route must serve all three.
var sdkModels = []string{"mock-1", "oa-1", "an-1"}

// eachModelAndMode runs f as a subtest per model of sdkModels, without
// streaming ("model") and with it ("model/stream").
func eachModelAndMode(t *testing.T, f func(t *testing.T, model string, stream bool)) {
	for _, model := range sdkModels {
		for _, stream := range []bool{false, true} {
			name := model
			if stream {
				name += "/stream"
			}
			t.Run(name, func(t *testing.T) { f(t, model, stream) })
		}
	}
}

// sdkStream is what both SDKs' event streams have.
type sdkStream interface {
	Next() bool
	Err() error
}

// checkCutAfterEvents reads st to its end and fails the test unless it
// got events and then an error: a failure after the first chunk is an
// error the SDK raises, never a clean end.
func checkCutAfterEvents(t *testing.T, what string, st sdkStream) {
	t.Helper()
	n := 0
	for st.Next() {
		n++
	}
	if st.Err() == nil || n == 0 {
		t.Fatalf("%s: after %d events err %v; want events then an error", what, n, st.Err())
	}
}

// startRateLimited starts the standard world behind a local limiter of
// one request a second with a burst of one, so the second request in a
// row is refused with a Retry-After.
func startRateLimited(t *testing.T) *gw {
	t.Helper()
	w := newWorld(t, nil)
	w.RateLimits = &policy.LimitsConfig{Default: policy.WorkspaceLimits{
		RateLimits: policy.RateLimits{RequestsPerMinute: 60, RequestBurst: 1}}}
	return w.start()
}

// checkWaitedForBucket fails the test when a call begun at start
// succeeded too soon for the SDK to have waited for the bucket.
func checkWaitedForBucket(t *testing.T, start time.Time) {
	t.Helper()
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("succeeded after %v: the SDK cannot have waited for the bucket", waited)
	}
}
