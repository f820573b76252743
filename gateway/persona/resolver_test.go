package persona

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newResolver(t testing.TB, src Source, cfg Config) *Resolver {
	t.Helper()
	r, err := NewResolver(src, cfg)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestResolveFileSource(t *testing.T) {
	r := newResolver(t, NewFileSource([]Persona{demo("psn_demo", "wsp_a")}), Config{})
	tests := []struct {
		name      string
		workspace string
		id        string
		wantErr   error
	}{
		{"hit", "wsp_a", "psn_demo", nil},
		{"hit again from cache", "wsp_a", "psn_demo", nil},
		{"absent", "wsp_a", "psn_nope", ErrNotFound},
		{"other workspace", "wsp_b", "psn_demo", ErrNotFound},
		{"empty workspace", "", "psn_demo", ErrNotFound},
		{"invalid id", "wsp_a", "demo", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := r.Resolve(context.Background(), tt.workspace, tt.id, t0)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (p.ID != tt.id || p.Workspace != tt.workspace) {
				t.Fatalf("got %+v", p)
			}
			if err != nil && p != nil {
				t.Fatalf("persona %+v returned with error", p)
			}
		})
	}
	st := r.Stats()
	// hit: miss+call; hit again: hit; absent: miss+call; other and empty
	// workspace: hits (held, but hidden); invalid: nothing.
	want := Stats{Hits: 3, Misses: 2, OriginCalls: 2}
	if st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
}

func TestResolveWorkspaceIsolationHTTP(t *testing.T) {
	o := newTestOrigin(t, demo("psn_a", "wsp_a"))
	r := newResolver(t, o.source(t, time.Second, ""), Config{})
	ctx := context.Background()
	// The first lookup, a miss, comes from the other workspace: the fetched
	// persona must still be hidden, and then served to its owner from cache.
	if _, err := r.Resolve(ctx, "wsp_b", "psn_a", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other workspace on miss: err = %v, want ErrNotFound", err)
	}
	if _, err := r.Resolve(ctx, "wsp_b", "psn_a", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other workspace on hit: err = %v, want ErrNotFound", err)
	}
	p, err := r.Resolve(ctx, "wsp_a", "psn_a", t0)
	if err != nil || p.ID != "psn_a" {
		t.Fatalf("owner: %+v, %v", p, err)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin calls = %d, want 1", n)
	}
}

func TestResolveConcurrentMissesMakeOneOriginCall(t *testing.T) {
	o := newTestOrigin(t, demo("psn_cold", "wsp_a"))
	o.set(func(o *testOrigin) { o.delay = 50 * time.Millisecond })
	r := newResolver(t, o.source(t, 2*time.Second, ""), Config{})

	const n = 100
	var (
		start sync.WaitGroup
		done  sync.WaitGroup
		errs  = make([]error, n)
		got   = make([]*Persona, n)
	)
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			got[i], errs[i] = r.Resolve(context.Background(), "wsp_a", "psn_cold", t0)
		}()
	}
	start.Done()
	done.Wait()
	for i := range n {
		if errs[i] != nil || got[i] == nil || got[i].ID != "psn_cold" {
			t.Fatalf("goroutine %d: %+v, %v", i, got[i], errs[i])
		}
	}
	if c := o.calls.Load(); c != 1 {
		t.Fatalf("origin calls = %d, want 1", c)
	}
	if st := r.Stats(); st.OriginCalls != 1 || st.Hits+st.Misses != n {
		t.Fatalf("stats = %+v", st)
	}
}

func TestResolveNegativeCaching(t *testing.T) {
	o := newTestOrigin(t)
	r := newResolver(t, o.source(t, time.Second, ""), Config{NegativeTTL: 5 * time.Second})
	steps := []struct {
		name      string
		at        time.Duration
		create    bool // the origin gains the persona before this step
		wantErr   error
		wantCalls int64
	}{
		{"404 asks the origin", 0, false, ErrNotFound, 1},
		{"remembered", time.Second, false, ErrNotFound, 1},
		{"created but still remembered", 5*time.Second - time.Nanosecond, true, ErrNotFound, 1},
		{"forgotten after negativeTTL", 5 * time.Second, false, nil, 2},
		{"now a hit", 6 * time.Second, false, nil, 2},
	}
	for _, s := range steps {
		if s.create {
			o.set(func(o *testOrigin) { o.personas["psn_late"] = demo("psn_late", "wsp_a") })
		}
		_, err := r.Resolve(context.Background(), "wsp_a", "psn_late", t0.Add(s.at))
		if !errors.Is(err, s.wantErr) || (err != nil) != (s.wantErr != nil) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
		if c := o.calls.Load(); c != s.wantCalls {
			t.Fatalf("%s: origin calls = %d, want %d", s.name, c, s.wantCalls)
		}
	}
	if st := r.Stats(); st.NegativeHits != 2 {
		t.Fatalf("NegativeHits = %d, want 2", st.NegativeHits)
	}
}

func TestResolveStale(t *testing.T) {
	const (
		cacheTTL = time.Minute
		negTTL   = 5 * time.Second
		staleTTL = 10 * time.Minute
	)
	type step struct {
		name      string
		at        time.Duration
		status    int // origin answers this from this step on (0: normally)
		wantErr   error
		wantCalls int64
		wantStale uint64
	}
	tests := []struct {
		name     string
		staleTTL time.Duration
		steps    []step
	}{
		{"served stale within staleTTL", staleTTL, []step{
			{"fresh fetch", 0, 0, nil, 1, 0},
			{"fresh hit while origin fails", cacheTTL - time.Second, http.StatusInternalServerError, nil, 1, 0},
			{"stale served", cacheTTL + time.Second, http.StatusInternalServerError, nil, 2, 1},
			{"stale served again, origin retried", cacheTTL + 2*time.Second, http.StatusInternalServerError, nil, 3, 2},
			{"past staleTTL", cacheTTL + staleTTL + time.Second, http.StatusInternalServerError, ErrUnavailable, 4, 2},
			{"origin back", cacheTTL + staleTTL + 2*time.Second, 0, nil, 5, 2},
		}},
		{"staleTTL 0 never serves stale", 0, []step{
			{"fresh fetch", 0, 0, nil, 1, 0},
			{"expired and origin fails", cacheTTL, http.StatusBadGateway, ErrUnavailable, 2, 0},
		}},
		{"404 drops the stale copy", staleTTL, []step{
			{"fresh fetch", 0, 0, nil, 1, 0},
			{"origin says gone", cacheTTL + time.Second, http.StatusNotFound, ErrNotFound, 2, 0},
			{"origin fails, no copy left", cacheTTL + time.Second + negTTL, http.StatusServiceUnavailable, ErrUnavailable, 3, 0},
		}},
		{"cold id with failing origin", staleTTL, []step{
			{"no copy", 0, http.StatusInternalServerError, ErrUnavailable, 1, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newTestOrigin(t, demo("psn_s", "wsp_a"))
			r := newResolver(t, o.source(t, time.Second, ""), Config{
				CacheTTL: cacheTTL, NegativeTTL: negTTL, StaleTTL: ptr(tt.staleTTL),
			})
			for _, s := range tt.steps {
				o.set(func(o *testOrigin) { o.status = s.status })
				p, err := r.Resolve(context.Background(), "wsp_a", "psn_s", t0.Add(s.at))
				if !errors.Is(err, s.wantErr) || (err != nil) != (s.wantErr != nil) {
					t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
				}
				if err == nil && p.ID != "psn_s" {
					t.Fatalf("%s: got %+v", s.name, p)
				}
				if c := o.calls.Load(); c != s.wantCalls {
					t.Fatalf("%s: origin calls = %d, want %d", s.name, c, s.wantCalls)
				}
				if st := r.Stats(); st.StaleServed != s.wantStale {
					t.Fatalf("%s: StaleServed = %d, want %d", s.name, st.StaleServed, s.wantStale)
				}
			}
		})
	}
}

func TestResolveOriginFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(o *testOrigin)
		timeout time.Duration
		want    string // in the error text
	}{
		{"timeout", func(o *testOrigin) { o.block = true }, 50 * time.Millisecond, "Client.Timeout"},
		{"other persona id", func(o *testOrigin) { o.rawBody = `{"id":"psn_other","workspace":"wsp_a"}` }, time.Second, `"psn_other"`},
		{"no workspace", func(o *testOrigin) { o.rawBody = `{"id":"psn_x"}` }, time.Second, "workspace: required"},
		{"bad json", func(o *testOrigin) { o.rawBody = `{"id":` }, time.Second, "decoding persona"},
		{"status 500", func(o *testOrigin) { o.status = 500 }, time.Second, "unexpected status 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newTestOrigin(t)
			o.set(tt.setup)
			r := newResolver(t, o.source(t, tt.timeout, ""), Config{})
			p, err := r.Resolve(context.Background(), "wsp_a", "psn_x", t0)
			if !errors.Is(err, ErrUnavailable) || p != nil {
				t.Fatalf("got %+v, %v; want ErrUnavailable", p, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.want)
			}
			if st := r.Stats(); st.OriginErrors != 1 || st.OriginCalls != 1 {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

func TestResolveInvalidIDsNeverReachOrigin(t *testing.T) {
	o := newTestOrigin(t)
	r := newResolver(t, o.source(t, time.Second, ""), Config{})
	ids := []string{
		"", "psn_", "psn", "abc_demo", "PSN_demo", "psn_a/b", "psn_../admin",
		"psn_a b", "psn_é", "psn_a%2F", "psn_a?x=1", "psn_" + strings.Repeat("a", 125),
	}
	for _, id := range ids {
		if _, err := r.Resolve(context.Background(), "wsp_a", id, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("%q: err = %v, want ErrNotFound", id, err)
		}
	}
	if c := o.calls.Load(); c != 0 {
		t.Fatalf("origin calls = %d, want 0", c)
	}
	if st := r.Stats(); st != (Stats{}) {
		t.Fatalf("stats = %+v, want zero", st)
	}
}

func TestResolveInvalidate(t *testing.T) {
	o := newTestOrigin(t, demo("psn_inv", "wsp_a"))
	r := newResolver(t, o.source(t, time.Second, ""), Config{})
	ctx := context.Background()
	for i, wantCalls := range []int64{1, 1} {
		if _, err := r.Resolve(ctx, "wsp_a", "psn_inv", t0); err != nil {
			t.Fatal(err)
		}
		if c := o.calls.Load(); c != wantCalls {
			t.Fatalf("lookup %d: origin calls = %d, want %d", i, c, wantCalls)
		}
	}
	o.set(func(o *testOrigin) {
		p := o.personas["psn_inv"]
		p.Name = "Renamed"
		o.personas["psn_inv"] = p
	})
	r.Invalidate("psn_inv")
	p, err := r.Resolve(ctx, "wsp_a", "psn_inv", t0)
	if err != nil || p.Name != "Renamed" {
		t.Fatalf("after Invalidate: %+v, %v", p, err)
	}
	if c := o.calls.Load(); c != 2 {
		t.Fatalf("origin calls = %d, want 2", c)
	}
}

func TestResolveCallerCancelDoesNotFailOthers(t *testing.T) {
	o := newTestOrigin(t, demo("psn_c", "wsp_a"))
	o.set(func(o *testOrigin) { o.delay = 100 * time.Millisecond })
	r := newResolver(t, o.source(t, 2*time.Second, ""), Config{})

	ctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := r.Resolve(ctx, "wsp_a", "psn_c", t0)
		leaderErr <- err
	}()
	// Let the first caller start the flight, then join it and cancel the
	// first caller.
	for o.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	follower := make(chan error, 1)
	go func() {
		_, err := r.Resolve(context.Background(), "wsp_a", "psn_c", t0)
		follower <- err
	}()
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v, want context.Canceled", err)
	}
	if err := <-follower; err != nil {
		t.Fatalf("follower: %v", err)
	}
	if c := o.calls.Load(); c != 1 {
		t.Fatalf("origin calls = %d, want 1", c)
	}
}

func TestNewResolverRejectsBadSettings(t *testing.T) {
	src := NewFileSource(nil)
	tests := []struct {
		name string
		src  Source
		cfg  Config
		want string
	}{
		{"nil source", nil, Config{}, "nil source"},
		{"negative cacheTTL", src, Config{CacheTTL: -1}, "cacheTTL"},
		{"negative staleTTL", src, Config{StaleTTL: ptr(-time.Second)}, "staleTTL"},
		{"negative max items", src, Config{CacheMaxItems: -1}, "cacheMaxItems"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewResolver(tt.src, tt.cfg)
			if err == nil {
				r.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestResolveHitDoesNotAllocate(t *testing.T) {
	r := newResolver(t, NewFileSource([]Persona{demo("psn_demo", "wsp_a")}), Config{})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "wsp_a", "psn_demo", t0); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.Resolve(ctx, "wsp_a", "psn_demo", t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs per hit = %v, want 0", allocs)
	}
}

func BenchmarkResolveHit(b *testing.B) {
	r := newResolver(b, NewFileSource([]Persona{demo("psn_demo", "wsp_a")}), Config{})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "wsp_a", "psn_demo", t0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, "wsp_a", "psn_demo", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolveHitParallel(b *testing.B) {
	personas := make([]Persona, 64)
	for i := range personas {
		personas[i] = demo("psn_"+string(rune('a'+i%26))+string(rune('a'+i/26)), "wsp_a")
	}
	r := newResolver(b, NewFileSource(personas), Config{})
	ctx := context.Background()
	for _, p := range personas {
		if _, err := r.Resolve(ctx, "wsp_a", p.ID, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := r.Resolve(ctx, "wsp_a", personas[i%len(personas)].ID, t0); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
