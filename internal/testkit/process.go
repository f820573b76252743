package testkit

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that a child process, a logger or a
// flusher may write while the test reads it. The zero value is empty and
// ready.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n bytes written, marked with a leading "…" when cut:
// enough of a child's output for a failure message.
func (s *SyncBuffer) Tail(n int) string {
	out := s.String()
	if len(out) > n {
		out = "…" + out[len(out)-n:]
	}
	return out
}

// Process is a program a test runs beside it (Prometheus, the OTel
// collector): its output collected, and stopped when the test ends.
type Process struct {
	// Out is the process's stdout and stderr.
	Out    *SyncBuffer
	exited chan struct{}
}

// StartProcess starts cmd with its output in Out. When the test ends it
// interrupts the process, as an operator's Ctrl-C would, and kills it if
// it is still there after grace; if the test failed, it logs name's
// output.
func StartProcess(t testing.TB, name string, grace time.Duration, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Out: &SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Out.Tail(4000))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// FreeAddr is a loopback host:port free a moment ago, for a child process
// that must be told its listen address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
