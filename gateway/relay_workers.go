package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// relayWorkerIdle is how long a relay worker waits for its next stream
// before it exits, like fasthttp's MaxIdleWorkerDuration.
const relayWorkerIdle = 10 * time.Second

// relayWorkers runs stream relays on reused goroutines. fasthttp starts a
// fresh goroutine for every hijacked connection; a relay, and the
// keep-alive serving that follows it, run there would grow that
// goroutine's stack from its first 2 KiB through several copies for every
// stream (a tenth of a stream's CPU in the profile). A worker's stack is
// grown once and kept across streams, as fasthttp's own workers keep
// theirs. The hijack goroutine only hands its connection over and exits.
type relayWorkers struct {
	jobs     chan relayJob // unbuffered: a send succeeds only to an idle worker
	quit     chan struct{}
	quitOnce sync.Once
	started  atomic.Int64 // workers ever started
	idle     atomic.Int64 // workers waiting for a stream
}

type relayJob struct {
	r *relay
	c net.Conn
}

func newRelayWorkers() *relayWorkers {
	return &relayWorkers{jobs: make(chan relayJob), quit: make(chan struct{})}
}

// run is the hijack handler: it gives the stream to an idle worker, or
// starts one.
func (w *relayWorkers) run(r *relay, c net.Conn) {
	j := relayJob{r: r, c: c}
	select {
	case w.jobs <- j:

	default:
		w.started.Add(1)
		go w.work(j)
	}
}

// work runs jobs until none came for relayWorkerIdle, or stop.
func (w *relayWorkers) work(j relayJob) {
	idle := time.NewTimer(relayWorkerIdle)
	defer idle.Stop()
	for {
		j.r.run(j.c)
		j = relayJob{} // do not pin the finished stream while idle
		idle.Reset(relayWorkerIdle)
		w.idle.Add(1)
		select {
		case j = <-w.jobs:
			w.idle.Add(-1)
		case <-idle.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// stop makes idle workers exit; busy ones exit after their stream. Later
// calls do nothing.
func (w *relayWorkers) stop() { w.quitOnce.Do(func() { close(w.quit) }) }
