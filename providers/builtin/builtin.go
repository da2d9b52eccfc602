// Package builtin lists the providers compiled into the k2 binary. They
// still run out of process: k2 re-executes itself as `k2 plugin serve
// <name>`, which calls sdk.Serve with the constructor registered here.
package builtin

import (
	"sort"

	"k2.dev/k2/providers/aws"
	"k2.dev/k2/providers/libvirt"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/metal"
	"k2.dev/k2/providers/sdk"
)

var providers = map[string]func() sdk.Provider{
	"local":   local.New,
	"aws":     aws.New,
	"libvirt": libvirt.New,
	"metal":   metal.New,
}

// Names returns the built-in providers' names, sorted.
func Names() []string {
	out := make([]string, 0, len(providers))
	for n := range providers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the constructor of a built-in provider.
func Lookup(name string) (func() sdk.Provider, bool) {
	f, ok := providers[name]
	return f, ok
}
