package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	openaioption "github.com/openai/openai-go/v3/option"
)

// The official Go SDKs pointed at a gateway, as the tests of its
// SDK-compatible routes drive them (the gateway's behaviour tests and
// the binary's prompt-cache tests alike).

// SDKContext bounds one SDK call to 20 seconds, so a gateway that never
// answers fails the test instead of hanging it; it is cancelled when
// the test ends.
func SDKContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// OpenAISDK is an OpenAI SDK client of the gateway's /v1 routes
// authenticated with key. It does not retry unless opts say so: a test
// sees the gateway's first answer.
func (c Client) OpenAISDK(key string, opts ...openaioption.RequestOption) openai.Client {
	return openai.NewClient(append([]openaioption.RequestOption{
		openaioption.WithBaseURL(c.Base + "/v1"), openaioption.WithAPIKey(key), openaioption.WithMaxRetries(0),
	}, opts...)...)
}

// AnthropicSDK is an Anthropic SDK client of the gateway authenticated
// with key (sent as x-api-key, beside the SDK's anthropic-version). It
// does not retry unless opts say so: a test sees the gateway's first
// answer.
func (c Client) AnthropicSDK(key string, opts ...anthropicoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]anthropicoption.RequestOption{
		anthropicoption.WithBaseURL(c.Base), anthropicoption.WithAPIKey(key), anthropicoption.WithMaxRetries(0),
	}, opts...)...)
}
