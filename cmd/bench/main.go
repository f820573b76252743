// Command bench load-tests the gateway's persona chat API, or an upstream
// directly for a baseline, and reports latency percentiles, errors by code,
// streaming figures and the gateway's CPU and memory. `bench -help` lists
// the flags; bench/README.md explains every figure.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/moonborn/edge/bench"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr, sig))
}
