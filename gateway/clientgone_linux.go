package gateway

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// goneWatcher notices, within milliseconds, a client that closes (FIN)
// or resets (RST) its connection while the gateway waits on an upstream
// for it, without reading from the connection (a pipelined request
// stays unread) and without a goroutine per request: one epoll instance
// of its own watches every registered connection for EPOLLRDHUP and
// errors only (never EPOLLIN), edge-triggered, and one goroutine calls
// the registered function when one fires. Go's own poller keeps the same
// descriptors; an epoll set may hold a descriptor another one holds too.
//
// A registration must be removed (unwatch) before its connection is
// closed: the descriptor number may be reused by then. The zero value is
// not usable; newGoneWatcher starts it lazily on the first watch, so a
// server that never waits on an upstream runs no extra thread. Safe for
// concurrent use.
type goneWatcher struct {
	once    sync.Once
	epfd    int
	wake    int // eventfd that ends the loop
	initErr error

	mu      sync.Mutex
	next    uint64
	watches map[uint64]goneWatch
	stopped bool
}

var errWatcherStopped = errors.New("client-gone watcher stopped")

type goneWatch struct {
	fd     int
	onGone func()
}

func newGoneWatcher() *goneWatcher {
	return &goneWatcher{watches: make(map[uint64]goneWatch)}
}

func (w *goneWatcher) start() {
	w.epfd, w.initErr = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if w.initErr != nil {
		return
	}
	if w.wake, w.initErr = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); w.initErr != nil {
		_ = unix.Close(w.epfd)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if w.initErr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.wake, &ev); w.initErr != nil {
		_ = unix.Close(w.wake)
		_ = unix.Close(w.epfd)
		return
	}
	go w.loop()
}

// watch calls onGone once, from the watcher's goroutine, when the
// client at the other end of c closes or resets it. It returns a token
// for unwatch; 0 means c cannot be watched (not a socket, or the
// watcher failed to start) and onGone will never be called.
func (w *goneWatcher) watch(c net.Conn, onGone func()) uint64 {
	fd := connFD(c)
	if fd < 0 {
		return 0
	}
	w.once.Do(w.start)
	if w.initErr != nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return 0
	}
	w.next++
	tok := w.next
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(tok), Pad: int32(tok >> 32)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0
	}
	w.watches[tok] = goneWatch{fd: fd, onGone: onGone}
	return tok
}

// unwatch removes a registration; onGone is not called after it
// returns, unless it is running already.
func (w *goneWatcher) unwatch(tok uint64) {
	if tok == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	g, ok := w.watches[tok]
	if !ok {
		return
	}
	delete(w.watches, tok)
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, g.fd, nil)
}

func (w *goneWatcher) loop() {
	var events [64]unix.EpollEvent
	for {
		n, err := unix.EpollWait(w.epfd, events[:], -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if tok == 0 { // the wake eventfd: stop
				w.close()
				return
			}
			w.mu.Lock()
			g, ok := w.watches[tok]
			if ok {
				delete(w.watches, tok)
				_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, g.fd, nil)
			}
			w.mu.Unlock()
			if ok {
				g.onGone()
			}
		}
	}
}

// stop ends the watcher's goroutine; later watches are refused.
func (w *goneWatcher) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	// Either start ran (and this sees its result) or it never will.
	w.once.Do(func() { w.initErr = errWatcherStopped })
	if w.initErr == nil {
		var one = [8]byte{1}
		_, _ = unix.Write(w.wake, one[:])
	}
}

func (w *goneWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	clear(w.watches)
	_ = unix.Close(w.wake)
	_ = unix.Close(w.epfd)
}

// connFD is the socket descriptor under c, or -1.
func connFD(c net.Conn) int {
	for {
		switch v := c.(type) {
		case *prefixConn:
			c = v.Conn
			continue
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(d uintptr) { fd = int(d) }) != nil {
		return -1
	}
	return fd
}
