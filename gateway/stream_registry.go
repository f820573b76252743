package gateway

import (
	"sync"
	"sync/atomic"
)

// streamRegistry is the Server's open streams. Relays run on hijacked
// connections that fasthttp's Shutdown no longer counts, so the Server
// counts them itself: to wait for them, and to abort the ones still open
// at the shutdown deadline. The zero value is not usable: make open.
type streamRegistry struct {
	stopping atomic.Bool // Shutdown began: streams close their connections

	mu     sync.Mutex
	open   map[*relay]struct{}
	relays sync.WaitGroup // one per relay, done when its relay loop returns
}

func newStreamRegistry() *streamRegistry {
	return &streamRegistry{open: make(map[*relay]struct{})}
}

// add registers r before its connection is hijacked.
func (g *streamRegistry) add(r *relay) {
	g.mu.Lock()
	g.open[r] = struct{}{}
	g.relays.Add(1)
	g.mu.Unlock()
}

// remove unregisters r once it finished (usage recorded).
func (g *streamRegistry) remove(r *relay) {
	g.mu.Lock()
	delete(g.open, r)
	g.mu.Unlock()
}

// done counts r's relay loop as returned.
func (g *streamRegistry) done() { g.relays.Done() }

// wait returns when every relay loop returned.
func (g *streamRegistry) wait() { g.relays.Wait() }

// abortAll aborts every stream still open. The aborts run outside mu:
// each relay's finish takes it to unregister.
func (g *streamRegistry) abortAll() {
	g.mu.Lock()
	open := make([]*relay, 0, len(g.open))
	for r := range g.open {
		open = append(open, r)
	}
	g.mu.Unlock()
	for _, r := range open {
		r.shutdown()
	}
}
