package ledger

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// recordQueue is the front half every ledger shares: a bounded queue read
// by one writer goroutine, backpressure instead of loss when it is full,
// and a close protocol under which no Record ever sends on the closed
// channel. The zero value is not usable; call init.
type recordQueue struct {
	log *slog.Logger
	ch  chan UsageRecord

	// mu makes "closed? else send" atomic with respect to close, so no
	// put ever sends on the closed channel. put holds it shared.
	mu     sync.RWMutex
	closed bool

	waitedFull, droppedAfterClose atomic.Uint64
}

func (q *recordQueue) init(size int, log *slog.Logger) {
	q.log = log
	q.ch = make(chan UsageRecord, size)
}

// put queues r. It never drops an accepted record: when the queue is full
// it waits for the writer, counting and logging the wait (the log only on
// the 1st, 2nd, 4th, 8th... wait, so a saturated store cannot flood the
// log). After close it logs and counts the drop instead.
func (q *recordQueue) put(r UsageRecord) {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		q.droppedAfterClose.Add(1)
		q.log.Warn("usage ledger closed, record dropped", "requestId", r.RequestID, "workspace", r.Workspace)
		return
	}
	select {
	case q.ch <- r:
	default:
		if n := q.waitedFull.Add(1); n&(n-1) == 0 {
			q.log.Warn("usage ledger queue full, request waits for the writer", "queueSize", cap(q.ch), "waitsSoFar", n)
		}
		q.ch <- r // the writer drains even after write errors, so this ends
	}
	q.mu.RUnlock()
}

// close stops accepting records and closes the channel, so the writer's
// loop ends once it has read everything accepted. Call it once.
func (q *recordQueue) close() {
	q.mu.Lock() // waits for puts mid-send; the writer keeps draining
	q.closed = true
	close(q.ch)
	q.mu.Unlock()
}

// drain is the writer loop. It hands each record to add, and calls flush
// when add reports a full batch and on every tick, so a record waits at
// most one interval. It does not flush merely because the queue is
// momentarily empty: at a few thousand requests per second that would
// be one write (and one goroutine wake-up) per request, the largest
// avoidable cost on the request path, where a tick makes it one per
// interval. It returns once the queue is closed and empty, without a
// final flush: the caller's shutdown does that.
func (q *recordQueue) drain(interval time.Duration, add func(*UsageRecord) (full bool), flush func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case r, ok := <-q.ch:
			if !ok {
				return
			}
			if add(&r) {
				flush()
			}
		case <-ticker.C:
			flush()
		}
	}
}

// stats is the counters every driver has: the queue's, with the records
// the driver wrote and those it failed to write.
func (q *recordQueue) stats(written, writeErrors uint64) Stats {
	return Stats{
		Written:           written,
		WaitedFull:        q.waitedFull.Load(),
		DroppedAfterClose: q.droppedAfterClose.Load(),
		WriteErrors:       writeErrors,
		QueueDepth:        len(q.ch),
	}
}
