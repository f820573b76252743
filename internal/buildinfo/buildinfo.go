// Package buildinfo names a binary's build for its -version flag: module
// version, VCS revision and time, Go version. It imports nothing of ours.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Line is "moonborn <name> <version> (revision <rev>[, <time>]) <go>",
// with "(devel)" and "unknown" where the build recorded no version or
// revision (go run, tests).
func Line(name string) string {
	v, rev, at := "(devel)", "unknown", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = ", " + s.Value
			}
		}
	}
	return "moonborn " + name + " " + v + " (revision " + rev + at + ") " + runtime.Version()
}
