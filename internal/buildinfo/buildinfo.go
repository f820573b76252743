// Package buildinfo names a binary's build for its -version flag: module
// version, VCS revision and time, whether the tree was modified, Go
// version. It imports nothing of ours.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows of its own build: the module version and
// the VCS revision, time and modified flag go build stamped in. The zero
// value is a build that recorded nothing; Read fills in the defaults.
type Info struct {
	Version, Revision, Time, GoVersion string
	Modified                           bool
}

// Read returns the running binary's build, with "(devel)" and "unknown"
// where the build recorded no version or revision (go run, tests).
func Read() Info {
	b := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
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

// Line is "moonborn <name> <version> (revision <rev>[, <time>][, modified]) <go>".
func (b Info) Line(name string) string {
	var s strings.Builder
	s.WriteString("moonborn " + name + " " + b.Version + " (revision " + b.Revision)
	if b.Time != "" {
		s.WriteString(", " + b.Time)
	}
	if b.Modified {
		s.WriteString(", modified")
	}
	s.WriteString(") " + b.GoVersion)
	return s.String()
}

// Line is the running binary's version line (Info.Line of Read).
func Line(name string) string { return Read().Line(name) }
