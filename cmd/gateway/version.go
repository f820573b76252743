package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moonborn/edge/internal/buildinfo"
)

// buildInfo is what the binary knows of its own build (internal/buildinfo);
// the gateway adds its build-info metric.
type buildInfo struct{ buildinfo.Info }

func readBuildInfo() buildInfo { return buildInfo{buildinfo.Read()} }

// String is the -version line.
func (b buildInfo) String() string { return b.Line("gateway") }

// register adds moonborn_build_info to reg: a constant 1 whose labels say
// which build is running, for dashboards to join on and to spot a fleet
// running mixed builds.
func (b buildInfo) register(reg prometheus.Registerer) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moonborn_build_info",
		Help: "The running build: module version, VCS revision and time, Go version. Always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "vcs_time": b.Time,
			"modified": map[bool]string{true: "true", false: "false"}[b.Modified], "goversion": b.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
