package main

import (
	"strings"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
)

func TestLogBufferFlushesOnTimeAndClose(t *testing.T) {
	var out testkit.SyncBuffer
	b := newLogBuffer(&out)
	_, _ = b.Write([]byte("one\n"))
	testkit.Eventually(t, 2*time.Second, "the timed flush", func() bool { return out.String() == "one\n" })
	_, _ = b.Write([]byte("two\n"))
	b.Close()
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
	// A buffer's worth goes out without waiting for the timer.
	var big testkit.SyncBuffer
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
