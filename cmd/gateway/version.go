package main

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo is what the binary knows of its own build: the module
// version, and the VCS revision and time go build stamped in.
type buildInfo struct {
	Version, Revision, Time, GoVersion string
	Modified                           bool
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" {
		b.Version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the -version line.
func (b buildInfo) String() string {
	var s strings.Builder
	s.WriteString("moonborn gateway " + b.Version + " (revision " + b.Revision)
	if b.Time != "" {
		s.WriteString(", " + b.Time)
	}
	if b.Modified {
		s.WriteString(", modified")
	}
	s.WriteString(") " + b.GoVersion)
	return s.String()
}

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
