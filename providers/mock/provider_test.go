package mock

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/providers"
	"github.com/moonborn/edge/providers/providertest"
)

func TestConfigValidate(t *testing.T) {
	providertest.Configs(t, []providertest.ConfigCase[Config]{
		{Name: "defaults ok", Cfg: Config{}},
		{Name: "all bad", Cfg: Config{TimeToFirstToken: -1, TokenDelay: -1, OutputTokens: -3},
			Want: []string{"timeToFirstToken:", "tokenDelay:", "outputTokens:"}},
		{Name: "too long", Cfg: Config{OutputTokens: maxOutputTokens + 1},
			Want: []string{"outputTokens:"}},
	}, nil)
}

func drain(t *testing.T, s providers.Stream) string {
	t.Helper()
	var sb strings.Builder
	for {
		d, err := s.Next()
		if err == io.EOF {
			return sb.String()
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(d) == 0 {
			t.Fatal("Next returned an empty delta")
		}
		sb.Write(d)
	}
}

func TestProviderDeterministic(t *testing.T) {
	p := New("mock-a", Config{})
	req := &providers.Request{Model: "m", System: "You are terse.", UserText: "Say hi", MaxOutputTokens: 1000}
	r1, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := p.Complete(context.Background(), req)
	if !reflect.DeepEqual(r1, r2) {
		t.Fatalf("Complete not deterministic: %+v vs %+v", r1, r2)
	}
	s, _ := p.Stream(context.Background(), req)
	streamed := drain(t, s)
	u := s.Usage()
	s.Close()
	if streamed != r1.Content {
		t.Fatalf("stream %q != complete %q", streamed, r1.Content)
	}
	want := providers.Usage{InputTokens: CountTokens(req.System) + CountTokens(req.UserText), OutputTokens: DefaultOutputTokens}
	if u != want || r1.Usage != want {
		t.Fatalf("usage stream %+v complete %+v, want %+v", u, r1.Usage, want)
	}
	other, _ := p.Complete(context.Background(), &providers.Request{Model: "m", System: "You are terse.", UserText: "Say bye", MaxOutputTokens: 1000})
	if other.Content == r1.Content {
		t.Fatal("different user text gave the same answer")
	}
}

func TestProviderMaxOutputTokens(t *testing.T) {
	p := New("mock", Config{OutputTokens: 30})
	tests := []struct {
		name string
		max  int
		want int64
	}{
		{"cap below", 7, 7},
		{"cap above", 100, 30},
		{"cap one", 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &providers.Request{Model: "m", UserText: "x", MaxOutputTokens: tc.max}
			r, _ := p.Complete(context.Background(), req)
			if r.Usage.OutputTokens != tc.want || CountTokens(r.Content) != tc.want {
				t.Fatalf("complete: %d tokens (%q), want %d", r.Usage.OutputTokens, r.Content, tc.want)
			}
			s, _ := p.Stream(context.Background(), req)
			defer s.Close()
			drain(t, s)
			if got := s.Usage(); got.OutputTokens != tc.want || got.Estimated {
				t.Fatalf("stream usage %+v, want %d exact", got, tc.want)
			}
		})
	}
}

func TestProviderAbortInterruptsDelay(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		skip int // deltas read before the blocking Next
	}{
		{"during time to first token", Config{TimeToFirstToken: time.Hour}, 0},
		{"during token delay", Config{TokenDelay: time.Hour}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := New("mock", tc.cfg).Stream(context.Background(), &providers.Request{Model: "m", UserText: "x", MaxOutputTokens: 10})
			defer s.Close()
			for range tc.skip {
				if _, err := s.Next(); err != nil {
					t.Fatal(err)
				}
			}
			got := make(chan error, 1)
			go func() { _, err := s.Next(); got <- err }()
			s.Abort()
			s.Abort() // twice is fine
			select {
			case err := <-got:
				if !errors.Is(err, providers.ErrAborted) {
					t.Fatalf("Next after Abort = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Abort did not interrupt Next")
			}
			if _, err := s.Next(); !errors.Is(err, providers.ErrAborted) {
				t.Fatalf("second Next = %v", err)
			}
			if u := s.Usage(); u.OutputTokens != int64(tc.skip) {
				t.Fatalf("usage %+v, want %d output tokens", u, tc.skip)
			}
		})
	}
}

func TestStreamNextAllocs(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no delay", Config{OutputTokens: maxOutputTokens}},
		{"with delay", Config{OutputTokens: maxOutputTokens, TokenDelay: time.Nanosecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := New("mock", tc.cfg).Stream(context.Background(), &providers.Request{Model: "m", UserText: "x", MaxOutputTokens: maxOutputTokens})
			defer s.Close()
			_, _ = s.Next() // first call may create the timer
			_, _ = s.Next()
			if a := testing.AllocsPerRun(200, func() {
				if _, err := s.Next(); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Fatalf("Next allocates %.1f times per delta", a)
			}
		})
	}
}

func BenchmarkStreamNext(b *testing.B) {
	b.ReportAllocs()
	s, _ := New("mock", Config{OutputTokens: maxOutputTokens}).Stream(context.Background(), &providers.Request{Model: "m", UserText: "x"})
	defer s.Close()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Next(); err == io.EOF {
			b.StopTimer()
			s, _ = New("mock", Config{OutputTokens: maxOutputTokens}).Stream(context.Background(), &providers.Request{Model: "m", UserText: "x"})
			b.StartTimer()
		}
	}
}

func BenchmarkCountTokens(b *testing.B) {
	b.ReportAllocs()
	s := strings.Repeat("The quick brown fox, jumping over internationalization! ", 20)
	for b.Loop() {
		CountTokens(s)
	}
}
