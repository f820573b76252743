package gateway

import (
	"context"
	"net"
	"testing"
	"time"
)

// BenchmarkGoneWatch is the per-request cost of watching a client
// connection while the upstream is called: register, unregister.
func BenchmarkGoneWatch(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, _ := ln.Accept()
		if c != nil {
			time.Sleep(time.Hour)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := newGoneWatcher()
	defer w.stop()
	f := func() {}
	b.ReportAllocs()
	for b.Loop() {
		w.unwatch(w.watch(c, f))
	}
}

// BenchmarkRequestContext is the per-request cost of the request's
// context with its deadline.
func BenchmarkRequestContext(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		stop := context.AfterFunc(ctx, func() {})
		stop()
		cancel()
	}
}
