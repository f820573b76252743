package gateway

// Writes to the client under the relay's lock, each moving the write
// deadline; pings in silences; noticing the client left.

import "time"

// write sends whole chunks, under mu so a heartbeat never interleaves,
// moving the write deadline forward first.
func (r *relay) write(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return errClientGone
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.opts.StreamWriteTimeout))
	r.headSent = true
	if _, err := r.conn.Write(b); err != nil {
		r.gone = true
		return errClientGone
	}
	r.ping.Reset(r.s.opts.PingInterval)
	return nil
}

// heartbeat runs on the timer's goroutine after a silence. A failed ping
// means the client left: abort the upstream so it stops generating.
//
// Abort is called after mu is released: it waits for a read of the
// upstream in progress to return, and that read may be inside the relay's
// NotifyWait flush, waiting for mu.
func (r *relay) heartbeat() {
	if r.writePing() {
		r.st.Abort()
	}
}

// writePing writes one ping under mu and reports whether the client is gone.
func (r *relay) writePing() (gone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished || r.gone {
		return false
	}
	if !r.headSent {
		return false // nothing sent yet: the first event is about to go
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.opts.StreamWriteTimeout))
	if _, err := r.conn.Write(pingChunk); err != nil {
		r.gone = true
		return true
	}
	r.ping.Reset(r.s.opts.PingInterval)
	return false
}

// clientGone reports whether the client left: a write failed, or the
// client-gone watcher saw it close or reset its connection.
func (r *relay) clientGone() bool {
	if r.x.gone.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}
