//go:build !linux

package gateway

import "net"

// goneWatcher is the Linux client-gone watcher's stand-in elsewhere: it
// watches nothing, so a client that leaves is noticed on the next write,
// as before.
type goneWatcher struct{}

func newGoneWatcher() *goneWatcher                   { return &goneWatcher{} }
func (w *goneWatcher) watch(net.Conn, func()) uint64 { return 0 }
func (w *goneWatcher) unwatch(uint64)                {}
func (w *goneWatcher) stop()                         {}
