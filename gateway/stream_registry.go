package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
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

	// kept are the connections a complete stream handed back to
	// fasthttp (ServeConn) for their next requests, each true while it
	// waits for one. fasthttp's Shutdown closes an idle connection only
	// 5 s after it was handed over (its grace for new connections), so
	// Shutdown wakes the idle ones itself (wakeIdle). keptN lets the
	// ConnState hook skip the lock while there are none.
	kept  map[net.Conn]bool
	keptN atomic.Int64
}

func newStreamRegistry() *streamRegistry {
	return &streamRegistry{open: make(map[*relay]struct{}), kept: make(map[net.Conn]bool)}
}

// keep registers c, about to wait for its next request in ServeConn.
func (g *streamRegistry) keep(c net.Conn) {
	g.mu.Lock()
	g.kept[c] = true
	g.keptN.Add(1)
	g.mu.Unlock()
}

// unkeep unregisters c once ServeConn returned.
func (g *streamRegistry) unkeep(c net.Conn) {
	g.mu.Lock()
	delete(g.kept, c)
	g.keptN.Add(-1)
	g.mu.Unlock()
}

// connState is the server's ConnState hook: it follows whether each kept
// connection is waiting for a request (idle) or serving one.
func (g *streamRegistry) connState(c net.Conn, st fasthttp.ConnState) {
	if g.keptN.Load() == 0 || (st != fasthttp.StateIdle && st != fasthttp.StateActive) {
		return
	}
	g.mu.Lock()
	if _, ok := g.kept[c]; ok {
		g.kept[c] = st == fasthttp.StateIdle
	}
	g.mu.Unlock()
}

// wakeIdle ends the wait of every kept connection waiting for a request:
// its read fails at once and fasthttp closes it, as it closes its own
// idle connections at shutdown. A connection serving a request is left
// to finish it (fasthttp then closes it, the server being stopped).
func (g *streamRegistry) wakeIdle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c, idle := range g.kept {
		if idle {
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
	}
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
