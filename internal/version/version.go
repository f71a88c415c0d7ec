// Package version says which Tessera a binary is: the release it was built
// as and the commit it came from. make images sets both at link time
// (-X tessera.dev/tessera/internal/version.release=... and .commit=...);
// otherwise the commit is the one the go command stamped, if it did (it
// does not with -buildvcs=false).
package version

import (
	"fmt"
	"runtime/debug"
)

var (
	// release is the version a build was made as; "dev" for a plain go build.
	release = "dev"
	// commit is the source commit, and modified "true" when the tree had
	// uncommitted changes; set at link time.
	commit, modified string
)

// String is "<release> (commit <rev>[, modified])", or the release alone
// when the binary knows no commit (go run, tests, -buildvcs=false).
func String() string {
	settings := []debug.BuildSetting{{Key: "vcs.revision", Value: commit}, {Key: "vcs.modified", Value: modified}}
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		settings = info.Settings
	}
	return describe(release, settings)
}

func describe(release string, settings []debug.BuildSetting) string {
	var rev string
	dirty := false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return release
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		return fmt.Sprintf("%s (commit %s, modified)", release, rev)
	}
	return fmt.Sprintf("%s (commit %s)", release, rev)
}
