// Capability checks: the planned machines against what the provider
// offers (architectures, bootstrap methods, sizes and classes, counts).

package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
)

// check verifies the machines against the provider's capabilities and
// chooses the bootstrap method and machine classes.
func (p *Plan) check(c sdk.Capabilities) error {
	var errs []error
	fail := func(pool, capab, format string, args ...any) {
		errs = append(errs, &CapabilityError{Pool: pool, Provider: p.Provider, Capability: capab, Detail: fmt.Sprintf(format, args...)})
	}
	for _, m := range HostBootstrapMethods {
		if slices.Contains(c.BootstrapMethods, m) {
			p.Bootstrap = m
			break
		}
	}
	if p.Bootstrap == "" {
		fail("", "bootstrap", "offers %s; k2 can deliver %s", list(c.BootstrapMethods), list(HostBootstrapMethods))
	}
	if p.ForeignOS() && !slices.Contains(c.OSes(), p.Artifact.OS) {
		fail("", "os", "the artifact's machines boot %s (its OS line), but provider %s's machines boot only %s; deploy it with a provider that boots %s (metal), or build the artifact with OS k2", p.Artifact.OS, p.Provider, list(c.OSes()), p.Artifact.OS)
	}
	perPool := map[string]int{}
	checked := map[string]bool{}
	for i := range p.Machines {
		m := &p.Machines[i]
		perPool[m.Pool]++
		first := !checked[m.Pool]
		checked[m.Pool] = true
		if m.Arch != "" && !slices.Contains(c.Architectures, m.Arch) {
			if first {
				fail(m.Pool, "arch", "provider %s does not offer %s (it offers %s)", p.Provider, m.Arch, list(c.Architectures))
			}
			continue
		}
		if m.CPU == 0 && m.MemoryBytes == 0 && m.DiskBytes == 0 {
			continue // the provider's default size
		}
		if c.CustomSizes {
			continue
		}
		cls, ok := smallestClass(c.Classes, m.CPU, m.MemoryBytes, m.DiskBytes)
		if !ok {
			if first {
				if len(c.Classes) == 0 {
					fail(m.Pool, "size", "provider %s takes neither custom sizes nor machine classes; remove cpu=/memory=/disk= from MACHINES %s", p.Provider, m.Pool)
				} else {
					fail(m.Pool, "size", "no machine class of provider %s has %s (classes: %s)", p.Provider, sizeString(m.CPU, m.MemoryBytes, m.DiskBytes), classList(c.Classes))
				}
			}
			continue
		}
		m.Class = cls
	}
	if c.MaxMachines > 0 {
		for _, pool := range sortedKeys(perPool) {
			if n := perPool[pool]; n > int(c.MaxMachines) {
				fail(pool, "count", "%d machines, but provider %s makes at most %d per request", n, p.Provider, c.MaxMachines)
			}
		}
	}
	if len(errs) > 0 {
		return usererr.Wrap(usererr.KindProvider, errors.Join(errs...),
			"nothing was created; change MACHINES (or the ARGs it uses) or deploy with a provider that offers it ('k2 plugin describe "+p.Provider+"')")
	}
	return nil
}

// smallestClass returns the class with the fewest resources that still
// has at least cpu, mem and disk.
func smallestClass(classes []sdk.MachineClass, cpu int32, mem, disk int64) (string, bool) {
	best := -1
	for i, c := range classes {
		if c.CPU < cpu || c.MemoryBytes < mem || (disk > 0 && c.DiskBytes > 0 && c.DiskBytes < disk) {
			continue
		}
		if best < 0 || c.CPU < classes[best].CPU || (c.CPU == classes[best].CPU && c.MemoryBytes < classes[best].MemoryBytes) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return classes[best].Name, true
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func classList(cs []sdk.MachineClass) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s=%s", c.Name, sizeString(c.CPU, c.MemoryBytes, c.DiskBytes)))
	}
	return strings.Join(out, ", ")
}

// sizeString renders a size as "2 CPU, 4Gi memory, 20Gi disk".
func sizeString(cpu int32, mem, disk int64) string {
	var parts []string
	if cpu > 0 {
		parts = append(parts, fmt.Sprintf("%d CPU", cpu))
	}
	if mem > 0 {
		parts = append(parts, output.Bytes(mem)+" memory")
	}
	if disk > 0 {
		parts = append(parts, output.Bytes(disk)+" disk")
	}
	if len(parts) == 0 {
		return "default size"
	}
	return strings.Join(parts, ", ")
}
