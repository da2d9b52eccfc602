// Package version holds k2's build identity, set with -ldflags -X by the Makefile.
package version

import "runtime/debug"

// Set at link time; see the Makefile.
var (
	Version   = "dev"
	Commit    = ""
	BuildDate = ""
)

// Kubernetes is the Kubernetes version k2 embeds and deploys by default.
const Kubernetes = "v1.37.2"

// Info is k2's version, as printed by `k2 version -o json`.
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	BuildDate  string `json:"buildDate,omitempty"`
	Kubernetes string `json:"kubernetes"`
	Go         string `json:"go"`
}

// Get returns the version information of the running binary.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, BuildDate: BuildDate, Kubernetes: Kubernetes}
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.Go = bi.GoVersion
		if i.Commit == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					i.Commit = s.Value
				}
			}
		}
	}
	return i
}
