package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logBuffer batches log lines into few writes: with one access line per
// request, a write(2) per line was a tenth of the gateway's CPU. Lines
// reach the file within flushEvery, or at once when a buffer's worth has
// piled up; Close flushes the rest. A crash can lose the last flushEvery
// of log lines, never usage (the ledger has its own writer).
type logBuffer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

const (
	logFlushEvery = 100 * time.Millisecond
	logBufferSize = 64 << 10
)

func newLogBuffer(w io.Writer) *logBuffer {
	b := &logBuffer{w: bufio.NewWriterSize(w, logBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushLoop()
	return b
}

// Write implements io.Writer; slog writes one whole line per call.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

func (b *logBuffer) flush() {
	b.mu.Lock()
	_ = b.w.Flush()
	b.mu.Unlock()
}

func (b *logBuffer) flushLoop() {
	defer close(b.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.flush()
		case <-b.stop:
			b.flush()
			return
		}
	}
}

// Close flushes what is buffered and stops the flusher.
func (b *logBuffer) Close() {
	close(b.stop)
	<-b.done
}
