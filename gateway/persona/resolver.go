package persona

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// entry is what the cache holds for one id: a persona, or (p == nil) the
// origin's "not found". It is immutable once stored.
type entry struct {
	p *Persona
	// freshUntil ends the period in which the entry is served without
	// asking the origin.
	freshUntil time.Time
	// staleUntil ends the period in which p may still be served while the
	// origin fails.
	staleUntil time.Time
}

// Stats are the Resolver's counters since it was built.
type Stats struct {
	// Hits are lookups answered by a fresh cached persona.
	Hits uint64
	// Misses are lookups that had to ask the origin (absent or stale).
	Misses uint64
	// NegativeHits are lookups answered by a cached "not found".
	NegativeHits uint64
	// OriginCalls are calls made to the Source (concurrent misses for one
	// id share one call).
	OriginCalls uint64
	// OriginErrors are Source calls that failed other than "not found".
	OriginErrors uint64
	// StaleServed are lookups answered with a stale persona because the
	// origin failed.
	StaleServed uint64
}

// Resolver turns a persona id into a persona for a caller's workspace. A
// hit is a lock-free cache read; concurrent misses for one id make a
// single Source call; "not found" is cached for NegativeTTL; a persona
// past CacheTTL is still served for StaleTTL while the Source fails.
// It is safe for concurrent use; build it with NewResolver.
type Resolver struct {
	src      Source
	cache    *ristretto.Cache[string, *entry]
	group    singleflight.Group
	cacheTTL time.Duration
	negTTL   time.Duration
	staleTTL time.Duration
	// epoch changes on every Invalidate, so a fetch that began before an
	// invalidation does not put back what was invalidated.
	epoch atomic.Uint64

	hits, misses, negHits     atomic.Uint64
	originCalls, originErrors atomic.Uint64
	staleServed               atomic.Uint64
}

// NewResolver builds a resolver over src. cfg's zero fields take their
// defaults; only its cache and TTL settings are used here.
func NewResolver(src Source, cfg Config) (*Resolver, error) {
	if src == nil {
		return nil, errors.New("persona: resolver: nil source")
	}
	cfg.SetDefaults()
	var errs []error
	if cfg.CacheTTL <= 0 {
		errs = append(errs, errors.New("cacheTTL: must be > 0"))
	}
	if cfg.NegativeTTL <= 0 {
		errs = append(errs, errors.New("negativeTTL: must be > 0"))
	}
	if cfg.staleTTL() < 0 {
		errs = append(errs, errors.New("staleTTL: must be ≥ 0"))
	}
	if cfg.CacheMaxItems <= 0 {
		errs = append(errs, errors.New("cacheMaxItems: must be > 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("persona: resolver: %w", err)
	}
	maxCost := int64(cfg.CacheMaxItems)
	cache, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		// Ten counters per item is ristretto's advice for a good hit
		// ratio; every entry costs 1, so MaxCost is an item count.
		NumCounters:        10 * maxCost,
		MaxCost:            maxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("persona: resolver: %w", err)
	}
	return &Resolver{
		src:      src,
		cache:    cache,
		cacheTTL: cfg.CacheTTL,
		negTTL:   cfg.NegativeTTL,
		staleTTL: cfg.staleTTL(),
	}, nil
}

// Resolve returns the persona id as seen by workspace at now. It returns
// ErrNotFound when id is malformed, absent, or belongs to another
// workspace (the caller cannot tell these apart); an error wrapping
// ErrUnavailable when the Source failed and no usable stale copy is held;
// ctx's error when ctx ends while waiting for the Source. The persona is
// shared: treat it as read-only.
//
// now decides freshness; the cache's own clock only bounds how long an
// entry may be kept at all (CacheTTL+StaleTTL).
func (r *Resolver) Resolve(ctx context.Context, workspace, id string, now time.Time) (*Persona, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	cached, ok := r.cache.Get(id)
	if ok && now.Before(cached.freshUntil) {
		if cached.p == nil {
			r.negHits.Add(1)
			return nil, ErrNotFound
		}
		r.hits.Add(1)
		return inWorkspace(cached.p, workspace)
	}
	r.misses.Add(1)

	// The shared fetch must not die with whichever caller started it, so it
	// runs detached from cancellation; each caller still stops waiting when
	// its own ctx ends. The Source bounds the call (HTTP timeout).
	detached := context.WithoutCancel(ctx)
	ch := r.group.DoChan(id, func() (any, error) {
		return r.fetch(detached, id, now)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.Err == nil {
		e := res.Val.(*entry)
		if e.p == nil {
			return nil, ErrNotFound
		}
		return inWorkspace(e.p, workspace)
	}
	// The origin failed: a copy past its freshness is better than an error.
	if ok && cached.p != nil && now.Before(cached.staleUntil) {
		r.staleServed.Add(1)
		return inWorkspace(cached.p, workspace)
	}
	return nil, fmt.Errorf("persona %s: %w: %w", id, ErrUnavailable, res.Err)
}

// fetch makes the one Source call for id and caches its answer. It
// returns the new entry, or the Source's error when it is not "not found".
func (r *Resolver) fetch(ctx context.Context, id string, now time.Time) (*entry, error) {
	epoch := r.epoch.Load()
	r.originCalls.Add(1)
	p, err := r.src.Get(ctx, id)
	var e *entry
	var ttl time.Duration
	switch {
	case err == nil && p != nil && p.ID == id:
		e = &entry{p: p.derive(), freshUntil: now.Add(r.cacheTTL), staleUntil: now.Add(r.cacheTTL + r.staleTTL)}
		ttl = r.cacheTTL + r.staleTTL
	case err == nil:
		r.originErrors.Add(1)
		return nil, errors.New("source returned no persona or another persona")
	case errors.Is(err, ErrNotFound):
		// Replaces any stale copy: the origin says it is gone.
		e = &entry{freshUntil: now.Add(r.negTTL)}
		ttl = r.negTTL
	default:
		r.originErrors.Add(1)
		return nil, err
	}
	r.cache.SetWithTTL(id, e, 1, ttl)
	// Misses are rare: waiting makes the entry visible to the next lookup,
	// so a caller that arrives right after this flight does not start
	// another one.
	r.cache.Wait()
	if r.epoch.Load() != epoch {
		// Invalidated while fetching: what we fetched may be what the
		// invalidation meant to drop.
		r.cache.Del(id)
	}
	return e, nil
}

// inWorkspace hides personas of other workspaces behind ErrNotFound, so an
// id never reveals that it exists elsewhere.
func inWorkspace(p *Persona, workspace string) (*Persona, error) {
	if p.Workspace != workspace {
		return nil, ErrNotFound
	}
	return p, nil
}

// Invalidate drops what is cached for id, so the next Resolve asks the
// Source; a fetch already in flight is not reused and does not re-cache.
func (r *Resolver) Invalidate(id string) {
	r.epoch.Add(1)
	r.group.Forget(id)
	r.cache.Del(id)
}

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Hits:         r.hits.Load(),
		Misses:       r.misses.Load(),
		NegativeHits: r.negHits.Load(),
		OriginCalls:  r.originCalls.Load(),
		OriginErrors: r.originErrors.Load(),
		StaleServed:  r.staleServed.Load(),
	}
}

// Close stops the cache's goroutines. Call it once, after the last
// Resolve has returned; later lookups would all go to the Source.
func (r *Resolver) Close() {
	r.cache.Close()
}
