package providertest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
	"github.com/moonborn/edge/providers"
)

// CompleteCase is one non-streaming exchange: the request, the
// upstream's JSON reply, and what the provider makes of it.
type CompleteCase struct {
	// Name names the subtest.
	Name string
	// New, when set, builds the provider instead of the Protocol's (a
	// config of the case's own).
	New func(tb testing.TB, url string) providers.Provider
	// Req is sent; Reply is the upstream's JSON body.
	Req   providers.Request
	Reply string
	// WantText and WantUsage are the Result wanted.
	WantText  string
	WantUsage providers.Usage
	// Check, when set, checks the request body the upstream saw.
	Check func(t *testing.T, body map[string]any)
}

// Completes runs each case against a loopback upstream: the reply's text
// and usage, and the request's headers and body.
func Completes(t *testing.T, p Protocol, cases []CompleteCase) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, c.Reply)
			})
			newProvider := p.provider
			if c.New != nil {
				newProvider = c.New
			}
			res, err := newProvider(t, u.URL).Complete(context.Background(), &c.Req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != c.WantText || res.Usage != c.WantUsage {
				t.Fatalf("got %q %+v, want %q %+v", res.Content, res.Usage, c.WantText, c.WantUsage)
			}
			b, h := u.Last()
			p.Headers(t, h)
			if h.Get("Accept") != "application/json" {
				t.Errorf("Accept = %q", h.Get("Accept"))
			}
			if c.Check != nil {
				c.Check(t, b)
			}
		})
	}
}

// StatusCase is an upstream refusing with a status, and the Retry-After
// the provider reads from it.
type StatusCase struct {
	// Name names the subtests (one per mode).
	Name string
	// Status, Headers and Body are the upstream's refusal.
	Status  int
	Headers map[string]string
	Body    string
	// WantRetry is the RetryAfter wanted, within Slack either way.
	WantRetry, Slack time.Duration
}

// StatusErrors runs each case for Complete and for Stream: a status error
// with the status and the retry hint, no Stream, and no upstream text in
// the error.
func StatusErrors(t *testing.T, p Protocol, cases []StatusCase) {
	for _, c := range cases {
		for _, mode := range []string{"complete", "stream"} {
			t.Run(c.Name+"/"+mode, func(t *testing.T) {
				u := NewUpstream(t, p.Path, func(_ *Upstream, w http.ResponseWriter, _ *http.Request) {
					for k, v := range c.Headers {
						w.Header().Set(k, v)
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(c.Status)
					_, _ = io.WriteString(w, c.Body)
				})
				prov := p.provider(t, u.URL)
				var err error
				if mode == "complete" {
					_, err = prov.Complete(context.Background(), p.Req)
				} else {
					var s providers.Stream
					if s, err = prov.Stream(context.Background(), p.Req); s != nil {
						t.Fatal("stream returned with an error status")
					}
				}
				ue := UpstreamErr(err)
				if ue == nil || ue.Kind != providers.KindStatus || ue.Status != c.Status {
					t.Fatalf("err = %v (%+v)", err, ue)
				}
				if d := ue.RetryAfter - c.WantRetry; d < -c.Slack || d > c.Slack {
					t.Errorf("RetryAfter = %v, want %v", ue.RetryAfter, c.WantRetry)
				}
				p.checkNoLeak(t, err, "error text carries the upstream body", "message")
			})
		}
	}
}

// ConnectRefused: an upstream that refuses connections is a connect
// error, for Complete and for Stream.
func ConnectRefused(t *testing.T, p Protocol) {
	prov := p.provider(t, "http://"+testkit.DeadAddr(t))
	if _, err := prov.Complete(context.Background(), p.Req); KindOf(err) != providers.KindConnect {
		t.Fatalf("complete: %v", err)
	}
	if _, err := prov.Stream(context.Background(), p.Req); KindOf(err) != providers.KindConnect {
		t.Fatalf("stream: %v", err)
	}
}

// BenchComplete runs a whole non-streaming exchange against a loopback
// upstream answering reply, per op: allocs/op is the client's
// per-request cost. Each reply must count wantOutput output tokens.
func BenchComplete(b *testing.B, p Protocol, reply string, wantOutput int64) {
	prov := p.provider(b, testkit.RawUpstream(b, testkit.JSONResponse(reply)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := prov.Complete(context.Background(), p.Req)
		if err != nil || res.Usage.OutputTokens != wantOutput {
			b.Fatal(res, err)
		}
	}
}

// DecodeCase is one reply body and its decoding.
type DecodeCase struct {
	// Name names the subtest; Body is the reply decoded.
	Name, Body string
	// Want is the Result wanted when WantErr is empty.
	Want providers.Result
	// WantErr is the protocol error's detail; empty wants success.
	WantErr string
}

// A Decoder decodes a whole reply body into res; a ref Decoder is the
// encoding/json decoding the zero-allocation walk replaced, kept as the
// oracle.
type Decoder func(body []byte, res *providers.Result) error

// Decode runs each case through decode, wanting its result or its
// protocol error, and the same result from ref.
func Decode(t *testing.T, cases []DecodeCase, decode, ref Decoder) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			var res providers.Result
			err := decode([]byte(c.Body), &res)
			if c.WantErr != "" {
				ue := UpstreamErr(err)
				if ue == nil || ue.Kind != providers.KindProtocol || ue.Detail != c.WantErr {
					t.Fatalf("err = %v, want protocol %q", err, c.WantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(res, c.Want) {
				t.Fatalf("got %+v %v, want %+v", res, err, c.Want)
			}
			var want providers.Result
			if err := ref([]byte(c.Body), &want); err != nil || !reflect.DeepEqual(want, res) {
				t.Fatalf("encoding/json gives %+v %v", want, err)
			}
		})
	}
}

// FuzzDecode holds decode to ref on any body, the cases' bodies as
// seeds: same result, same error.
func FuzzDecode(f *testing.F, cases []DecodeCase, decode, ref Decoder) {
	for _, c := range cases {
		f.Add([]byte(c.Body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var res, want providers.Result
		err := decode(body, &res)
		wantErr := ref(body, &want)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) || !reflect.DeepEqual(res, want) {
			t.Fatalf("decode = %+v, %v; encoding/json = %+v, %v", res, err, want, wantErr)
		}
	})
}

// BenchDecode decodes body per op.
func BenchDecode(b *testing.B, body string, decode Decoder) {
	data := []byte(body)
	var res providers.Result // outside the loop: decode is a func value, through which res escapes
	b.ReportAllocs()
	for b.Loop() {
		res = providers.Result{}
		if err := decode(data, &res); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOracle holds a zero-allocation parser to its encoding/json oracle
// on any data, the seeds first: both accept or both refuse, and what both
// accept is the same by same. Data the oracle cannot judge is skipped:
// deep nesting, and duplicate keys (encoding/json merges them its own
// way).
func FuzzOracle[T, R any](f *testing.F, seeds []string, name string, parse func([]byte, *T) error, ref func([]byte) (R, bool), same func(data []byte, got *T, want R) bool) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got T
		err := parse(data, &got)
		if bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > 500 || testkit.HasDuplicateKeys(data) {
			return
		}
		want, ok := ref(data)
		if ok != (err == nil) {
			t.Fatalf("%s err = %v, reference ok = %v", name, err, ok)
		}
		if ok && !same(data, &got, want) {
			t.Fatalf("%s = %+v; reference %+v", name, got, want)
		}
	})
}
