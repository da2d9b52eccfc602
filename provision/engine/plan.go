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
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/state"
)

// Value sources, lowest to highest precedence.
const (
	SourceDefault    = "default"     // the K8sfile's ARG default
	SourceEnv        = "environment" // stored with `k2 env create/set`
	SourceValuesFile = "values-file" // --values
	SourceSet        = "set"         // --set
)

// HostBootstrapMethods are the bootstrap payloads k2 can produce for a
// provider, in order of preference.
var HostBootstrapMethods = []string{sdk.BootstrapExec, sdk.BootstrapUserData, sdk.BootstrapNetworkBoot}

// PlanOptions are the inputs of NewPlan. Env and Config are required.
type PlanOptions struct {
	Env *state.Environment
	// ArtifactRef and ArtifactDigest identify the artifact for the plan's
	// header; Config is its resolved cluster spec.
	ArtifactRef    string
	ArtifactDigest string
	Config         *artifact.Config
	// Values from --values (already read, see ReadValuesFile) and --set
	// (key=value, see ParseSets); --set wins.
	ValuesFile map[string]string
	Sets       map[string]string
	// Capabilities of env's provider (from its Describe). Nil skips the
	// capability checks; the plan then says so.
	Capabilities *sdk.Capabilities
}

// Plan is what a deployment will do, computed before anything is created:
// `k2 deploy --dry-run` prints it. Its JSON shape is stable.
type Plan struct {
	Env        string          `json:"env"`
	Provider   string          `json:"provider"`
	Artifact   PlanArtifact    `json:"artifact"`
	Values     []ResolvedValue `json:"values"`
	Bootstrap  string          `json:"bootstrap,omitempty"` // the method chosen, e.g. exec
	Machines   []MachinePlan   `json:"machines"`
	Layers     []PlanLayer     `json:"layers"`
	Apps       []PlanApp       `json:"apps,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
	Unverified bool            `json:"unverified,omitempty"` // capabilities were not checked
}

// PlanArtifact identifies the artifact deployed.
type PlanArtifact struct {
	Ref        string `json:"ref,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Kubernetes string `json:"kubernetes,omitempty"`
}

// ResolvedValue is one ARG's value for this deployment and where it came from.
type ResolvedValue struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// MachinePlan is one machine to ask the provider for.
type MachinePlan struct {
	Name string `json:"name"` // <env>-<pool>-<index>, stable across deploys of env
	// RequestID is the idempotency key of the machine's Create; it derives
	// from the environment's UID, the pool and the index, so a retry or a
	// resume asks for the same machine and a re-created environment of the
	// same name never collides with the old one.
	RequestID   string `json:"requestId"`
	Pool        string `json:"pool"`
	Index       int    `json:"index"`
	Role        string `json:"role"` // control-plane or worker
	Arch        string `json:"arch,omitempty"`
	Class       string `json:"class,omitempty"`
	CPU         int32  `json:"cpu,omitempty"`
	MemoryBytes int64  `json:"memoryBytes,omitempty"`
	DiskBytes   int64  `json:"diskBytes,omitempty"`
}

// Request returns the provider request for m.
func (m MachinePlan) Request() sdk.MachineRequest {
	return sdk.MachineRequest{
		Name: m.Name, Role: m.Role, Pool: m.Pool, Arch: m.Arch, Class: m.Class,
		CPU: m.CPU, MemoryBytes: m.MemoryBytes, DiskBytes: m.DiskBytes,
		Labels: map[string]string{"k2.dev/pool": m.Pool, "k2.dev/role": m.Role},
	}
}

// PlanLayer is a layer to apply, in order.
type PlanLayer struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Objects int    `json:"objects"`
	From    string `json:"from,omitempty"` // inherited from this base
}

// PlanApp is an APP with its templates expanded.
type PlanApp struct {
	Name     string   `json:"name"`
	Image    string   `json:"image"`
	Replicas string   `json:"replicas,omitempty"`
	Ports    []string `json:"ports,omitempty"`
}

// Role names.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// MissingArgError reports required ARGs without a value.
type MissingArgError struct {
	Env  string
	Args []string
}

func (e *MissingArgError) Error() string {
	q := make([]string, len(e.Args))
	for i, a := range e.Args {
		q[i] = strconv.Quote(a)
	}
	return fmt.Sprintf("required ARG %s has no value for environment %q", strings.Join(q, ", "), e.Env)
}

// CapabilityError reports a machine pool that the provider cannot make.
type CapabilityError struct {
	Pool       string // empty: the deployment as a whole
	Provider   string
	Capability string // arch, size, count, bootstrap
	Detail     string
}

func (e *CapabilityError) Error() string {
	if e.Pool == "" {
		return fmt.Sprintf("provider %s: %s: %s", e.Provider, e.Capability, e.Detail)
	}
	return fmt.Sprintf("pool %s: %s: %s", e.Pool, e.Capability, e.Detail)
}

// NewPlan resolves ARG values for o.Env (ARG default < environment < values
// file < --set), expands the machine pools into machine requests and checks
// them against the provider's capabilities. Nothing is created. A missing
// required ARG is a *MissingArgError, a pool the provider cannot make a
// *CapabilityError (all of them joined); both are user errors with a hint.
func NewPlan(o PlanOptions) (*Plan, error) {
	if o.Env == nil || o.Config == nil {
		return nil, errors.New("planning: Env and Config are required")
	}
	p := &Plan{
		Env:      o.Env.Name,
		Provider: o.Env.Provider,
		Artifact: PlanArtifact{Ref: o.ArtifactRef, Digest: o.ArtifactDigest, Kubernetes: o.Config.Kubernetes},
		Values:   []ResolvedValue{},
		Machines: []MachinePlan{},
		Layers:   []PlanLayer{},
	}
	vals, err := p.resolveValues(o)
	if err != nil {
		return nil, err
	}
	if err := p.expandMachines(o, vals); err != nil {
		return nil, err
	}
	if err := p.expandApps(o, vals); err != nil {
		return nil, err
	}
	for _, l := range o.Config.Layers {
		p.Layers = append(p.Layers, PlanLayer{Name: l.Name, Kind: l.Kind, Objects: len(l.Objects), From: l.From})
	}
	if o.Capabilities == nil {
		p.Unverified = true
		return p, nil
	}
	if err := p.check(*o.Capabilities); err != nil {
		return nil, err
	}
	return p, nil
}

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
	return nil
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
		parts = append(parts, bytesString(mem)+" memory")
	}
	if disk > 0 {
		parts = append(parts, bytesString(disk)+" disk")
	}
	if len(parts) == 0 {
		return "default size"
	}
	return strings.Join(parts, ", ")
}

func bytesString(b int64) string {
	for _, u := range []struct {
		n    int64
		unit string
	}{{1 << 40, "Ti"}, {1 << 30, "Gi"}, {1 << 20, "Mi"}, {1 << 10, "Ki"}} {
		if b >= u.n && b%u.n == 0 {
			return fmt.Sprintf("%d%s", b/u.n, u.unit)
		}
	}
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGi", float64(b)/(1<<30))
	}
	return strconv.FormatInt(b, 10)
}
