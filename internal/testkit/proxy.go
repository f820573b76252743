// Package testkit is what the tests of several packages share: the
// fault-injecting TCP proxy (proxy.go), a canned loopback upstream and
// the wire bytes it serves (upstream.go), the fuzz oracles' duplicate-key
// check (jsondup.go), Eventually (wait.go), and the one place a test may
// skip: under -short, for a service beyond Go (services.go). It imports
// nothing of the gateway's, so any package's tests may use it; no
// non-test code does.
package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards loopback connections to a target until Cut; while cut
// it closes every connection, new ones at once. It stands between a
// client and a real server (PostgreSQL, Redis) so a test can take the
// server away without touching the machine's own. Safe for concurrent
// use.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

// StartProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.Cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// Addr is the proxy's host:port, for the client to dial instead of the
// target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// Cut closes every proxied connection and refuses new ones until
// Restore: an outage as the client sees it.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() { p.mu.Lock(); p.down = false; p.mu.Unlock() }

// DeadAddr is a loopback host:port where nothing listens (it was free a
// moment ago): dialing it is refused at once, an upstream or database
// that is down rather than slow.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
