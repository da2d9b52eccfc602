// Expansion: ARG values by precedence, machine pools into machine
// requests, APP templates.

package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
)

func (p *Plan) resolveValues(o PlanOptions) (map[string]string, error) {
	declared := map[string]bool{}
	vals := map[string]ResolvedValue{}
	for _, a := range o.Config.Args {
		declared[a.Name] = true
		if a.Default != nil {
			vals[a.Name] = ResolvedValue{a.Name, *a.Default, SourceDefault}
		} else {
			delete(vals, a.Name) // a later declaration without default makes it required
		}
	}
	layer := func(m map[string]string, source string) []string {
		var unknown []string
		for _, k := range state.SortedKeys(m) {
			if !declared[k] {
				unknown = append(unknown, k)
				continue
			}
			vals[k] = ResolvedValue{k, m[k], source}
		}
		return unknown
	}
	if u := layer(o.Env.Values, SourceEnv); len(u) > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("environment %s has values the artifact does not declare as ARG (ignored): %s", o.Env.Name, strings.Join(u, ", ")))
	}
	if u := layer(o.ValuesFile, SourceValuesFile); len(u) > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("the values file sets names the artifact does not declare as ARG (ignored): %s", strings.Join(u, ", ")))
	}
	if u := layer(o.Sets, SourceSet); len(u) > 0 {
		names := make([]string, 0, len(declared))
		for n := range declared {
			names = append(names, n)
		}
		sort.Strings(names)
		hint := "the artifact declares no ARG"
		if len(names) > 0 {
			hint = "the artifact declares: " + strings.Join(names, ", ")
		}
		return nil, usererr.New(usererr.KindUsage, "--set %s: %w; %s", strings.Join(u, ", "), k8sfile.ErrUnknownArg, hint)
	}
	var missing []string
	for _, a := range o.Config.Args {
		if _, ok := vals[a.Name]; !ok && !slices.Contains(missing, a.Name) {
			missing = append(missing, a.Name)
		}
	}
	if len(missing) > 0 {
		ex := missing[0]
		return nil, usererr.Wrap(usererr.KindInvalid, &MissingArgError{Env: o.Env.Name, Args: missing},
			fmt.Sprintf("set it with --set %s=…, in a --values file, or once for the environment with 'k2 env set %s %s=…'", ex, o.Env.Name, ex))
	}
	out := map[string]string{}
	for _, k := range sortedKeys(vals) {
		p.Values = append(p.Values, vals[k])
		out[k] = vals[k].Value
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// DefaultPools are the machines of an artifact without MACHINES.
var DefaultPools = []artifact.MachineSpec{{Pool: k8sfile.ControlPlanePool, Count: "1"}}

func (p *Plan) expandMachines(o PlanOptions, vals map[string]string) error {
	pools := o.Config.Machines
	if len(pools) == 0 {
		pools = DefaultPools
	}
	var errs []error
	datastore := ""
	for _, mp := range pools {
		bad := func(field, tmpl string, err error) {
			errs = append(errs, fmt.Errorf("MACHINES %s: %s %q: %w", mp.Pool, field, tmpl, err))
		}
		expand := func(field, tmpl string) (string, bool) {
			v, err := k8sfile.Expand(tmpl, vals)
			if err != nil {
				bad(field, tmpl, err)
				return "", false
			}
			return strings.TrimSpace(v), true
		}
		countS, ok1 := expand("count", mp.Count)
		cpuS, ok2 := expand("cpu", mp.CPU)
		memS, ok3 := expand("memory", mp.Memory)
		diskS, ok4 := expand("disk", mp.Disk)
		arch, ok5 := expand("arch", mp.Arch)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			continue
		}
		count, err := strconv.Atoi(countS)
		if err != nil || count < 0 {
			bad("count", mp.Count, fmt.Errorf("%q is not a whole number ≥ 0", countS))
			continue
		}
		var cpu int32
		if cpuS != "" {
			milli, err := k8sfile.ParseMilliCPU(cpuS)
			if err != nil {
				bad("cpu", mp.CPU, err)
				continue
			}
			cpu = int32((milli + 999) / 1000) // machines come in whole cores
		}
		var mem, disk int64
		if memS != "" {
			if mem, err = k8sfile.ParseBytes(memS); err != nil {
				bad("memory", mp.Memory, err)
				continue
			}
		}
		if diskS != "" {
			if disk, err = k8sfile.ParseBytes(diskS); err != nil {
				bad("disk", mp.Disk, err)
				continue
			}
		}
		role := RoleWorker
		if mp.Pool == k8sfile.ControlPlanePool {
			role = RoleControlPlane
			if datastore, ok1 = expand("datastore", mp.Datastore); !ok1 {
				continue
			}
		}
		for i := range count {
			p.Machines = append(p.Machines, MachinePlan{
				Name:      MachineName(o.Env.Name, mp.Pool, i),
				RequestID: RequestID(o.Env, mp.Pool, i),
				Pool:      mp.Pool, Index: i, Role: role, Arch: arch,
				CPU: cpu, MemoryBytes: mem, DiskBytes: disk,
			})
		}
	}
	if len(errs) > 0 {
		return usererr.Wrap(usererr.KindInvalid, errors.Join(errs...), "check the ARG values the templates use ('k2 env show "+o.Env.Name+"')")
	}
	cp := 0
	for _, m := range p.Machines {
		if m.Role == RoleControlPlane {
			cp++
		}
	}
	if cp == 0 {
		return usererr.New(usererr.KindInvalid, "MACHINES: pool %s has no machine for environment %s; a cluster needs at least one", k8sfile.ControlPlanePool, o.Env.Name)
	}
	d, err := planDatastore(datastore, cp)
	if err != nil {
		return usererr.Wrap(usererr.KindInvalid, fmt.Errorf("MACHINES %s=%d: %w", k8sfile.ControlPlanePool, cp, err), "")
	}
	p.Datastore = d
	return nil
}

// planDatastore resolves the control plane's datastore for n servers: an
// embedded etcd needs 1 or an odd number of members (an even number
// survives no more losses than one fewer, and 2 survive none); SQLite
// serves one server; an external datastore any number.
func planDatastore(v string, n int) (PlanDatastore, error) {
	d := PlanDatastore{Kind: v, Servers: n}
	switch {
	case v == "" && n == 1:
		d.Kind = DatastoreSQLite
	case v == "":
		d.Kind = DatastoreEtcd
	case v != k8sfile.DatastoreSQLite && v != k8sfile.DatastoreEtcd:
		d.Kind, d.Endpoint = DatastoreExternal, v
	}
	switch {
	case d.Kind == DatastoreSQLite && n > 1:
		return d, fmt.Errorf("SQLite serves one server; for %d servers use datastore=etcd (embedded, the default for more than one) or an external etcd://, postgres:// or mysql:// endpoint", n)
	case d.Kind == DatastoreEtcd && n%2 == 0:
		return d, fmt.Errorf("an embedded etcd needs an odd number of servers (3 survive the loss of one, 5 of two): %d survive no more losses than %d; use control-plane=%d or %d", n, n-1, n-1, n+1)
	}
	if d.Kind == DatastoreExternal {
		if scheme, rest, ok := strings.Cut(v, "://"); !ok || rest == "" || !slices.Contains([]string{"etcd", "etcds", "http", "https", "postgres", "postgresql", "mysql"}, scheme) {
			return d, fmt.Errorf("datastore %q is neither sqlite, etcd nor an etcd://, postgres:// or mysql:// endpoint", v)
		}
	}
	return d, nil
}

func (p *Plan) expandApps(o PlanOptions, vals map[string]string) error {
	var errs []error
	for _, a := range o.Config.Apps {
		img, err1 := k8sfile.Expand(a.Image, vals)
		rep, err2 := k8sfile.Expand(a.Replicas, vals)
		app := PlanApp{Name: a.Name, Image: img, Replicas: rep}
		for _, port := range a.Ports {
			v, err := k8sfile.Expand(port, vals)
			if err != nil {
				errs = append(errs, fmt.Errorf("APP %s: port: %w", a.Name, err))
			}
			app.Ports = append(app.Ports, v)
		}
		for _, err := range []error{err1, err2} {
			if err != nil {
				errs = append(errs, fmt.Errorf("APP %s: %w", a.Name, err))
			}
		}
		p.Apps = append(p.Apps, app)
	}
	if len(errs) > 0 {
		return usererr.Wrap(usererr.KindInvalid, errors.Join(errs...), "")
	}
	return nil
}

// MachineName is the name of machine index of pool in env: <env>-<pool>-<index>.
func MachineName(env, pool string, index int) string {
	return fmt.Sprintf("%s-%s-%d", env, pool, index)
}

// RequestID is the provider idempotency key of machine index of pool in env:
// "k2-" and 32 hex digits of SHA-256 over the env's UID, name, pool and index.
func RequestID(env *state.Environment, pool string, index int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("k2/machine/%s/%s/%s/%d", env.UID, env.Name, pool, index)))
	return "k2-" + hex.EncodeToString(h[:16])
}
