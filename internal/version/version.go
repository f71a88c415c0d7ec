// Package version says which Tessera a binary is: the release it was built
// as (set at link time by make images: -X tessera.dev/tessera/internal/version.release=...)
// and the commit the go command stamped into it.
package version

import (
	"fmt"
	"runtime/debug"
)

// release is the version a build was made as; "dev" for a plain go build.
var release = "dev"

// String is "<release> (commit <rev>[, modified])", or the release alone
// when the binary carries no VCS stamp (go run, tests).
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return release
	}
	return describe(release, info.Settings)
}

func describe(release string, settings []debug.BuildSetting) string {
	var rev string
	modified := false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return release
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		return fmt.Sprintf("%s (commit %s, modified)", release, rev)
	}
	return fmt.Sprintf("%s (commit %s)", release, rev)
}
