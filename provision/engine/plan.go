// Plan types: what a deployment will do, and the errors planning reports.

package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k2.dev/k2/artifact"
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
	Datastore  PlanDatastore   `json:"datastore"`
	Machines   []MachinePlan   `json:"machines"`
	Layers     []PlanLayer     `json:"layers"`
	Apps       []PlanApp       `json:"apps,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
	Unverified bool            `json:"unverified,omitempty"` // capabilities were not checked
}

// Datastore kinds of a plan.
const (
	DatastoreSQLite   = "sqlite"   // kine on SQLite in the one server
	DatastoreEtcd     = "etcd"     // an etcd member embedded in every server
	DatastoreExternal = "external" // every server on one external etcd, Postgres or MySQL
)

// PlanDatastore is where the control plane keeps the cluster's objects:
// MACHINES control-plane=N datastore=…, by default SQLite for one server
// and an embedded etcd for more.
type PlanDatastore struct {
	Kind     string `json:"kind"`
	Endpoint string `json:"endpoint,omitempty"` // external only
	Servers  int    `json:"servers"`
}

// HA reports whether the plan has more than one server.
func (d PlanDatastore) HA() bool { return d.Servers > 1 }

// PlanArtifact identifies the artifact deployed.
type PlanArtifact struct {
	Ref        string `json:"ref,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Kubernetes string `json:"kubernetes,omitempty"`
	// OS and OSVersion are the artifact's OS line when it is not k2 OS
	// (OS talos version=…): the machines boot it, and run its Kubernetes.
	OS        string `json:"os,omitempty"`
	OSVersion string `json:"osVersion,omitempty"`
}

// ForeignOS reports whether the machines boot an OS that runs its own
// Kubernetes (Talos): no k2 server or agent, the provider returns the
// cluster's kubeconfig.
func (p *Plan) ForeignOS() bool { return p != nil && p.Artifact.OS != "" && p.Artifact.OS != sdk.OSK2 }

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
	Capability string // arch, size, count, bootstrap, os
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
	if os := o.Config.OSName(); os != sdk.OSK2 {
		p.Artifact.OS, p.Artifact.OSVersion = os, o.Config.OS.Version
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
