package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
)

// syncBuffer is a bytes.Buffer safe for the flusher and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLogBufferFlushesOnTimeAndClose(t *testing.T) {
	var out syncBuffer
	b := newLogBuffer(&out)
	_, _ = b.Write([]byte("one\n"))
	testkit.Eventually(t, 2*time.Second, "the timed flush", func() bool { return out.String() == "one\n" })
	_, _ = b.Write([]byte("two\n"))
	b.Close()
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
	// A buffer's worth goes out without waiting for the timer.
	var big syncBuffer
	b = newLogBuffer(&big)
	defer b.Close()
	line := strings.Repeat("x", 1023) + "\n"
	for i := 0; i < 80; i++ {
		_, _ = b.Write([]byte(line))
	}
	if len(big.String()) < logBufferSize/2 {
		t.Fatalf("only %d bytes written after 80 KiB of lines", len(big.String()))
	}
}
