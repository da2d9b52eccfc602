package sdk

import (
	"encoding/json"
	"io"
)

// Bootstrap methods: how a new machine receives what it needs to join.
const (
	// BootstrapUserData: the provider passes Bootstrap.UserData (a
	// cloud-init document) to the machine, as clouds and libvirt do.
	BootstrapUserData = "user-data"
	// BootstrapNetworkBoot: the machine boots from the network (PXE/iPXE)
	// served by k2; the provider only powers it on.
	BootstrapNetworkBoot = "network-boot"
	// BootstrapExec: the provider runs Bootstrap.Command (argv, with
	// Bootstrap.Env added) on the machine, as the local provider does.
	BootstrapExec = "exec"
)

// Machine states.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateStopped = "stopped"
	StateFailed  = "failed"
)

// Power actions.
const (
	PowerOn    = "on"
	PowerOff   = "off"
	PowerReset = "reset"
)

// Config field types a ConfigSchema may use.
const (
	TypeString   = "string"
	TypeInt      = "int"
	TypeBool     = "bool"
	TypeDuration = "duration" // a Go duration string such as "30s"
	TypeList     = "list"     // a list of strings
)

// HostCapabilities is what k2 can do for the provider.
type HostCapabilities struct {
	// BootstrapMethods k2 can produce a payload for.
	BootstrapMethods []string `json:"bootstrapMethods,omitempty"`
	// ProgressEvents: k2 shows CreateRequest.Report events.
	ProgressEvents bool `json:"progressEvents,omitempty"`
	// ConsoleStreaming: k2 can consume Console output.
	ConsoleStreaming bool `json:"consoleStreaming,omitempty"`
}

// MachineClass is a named machine size the provider offers.
type MachineClass struct {
	Name        string `json:"name"`
	CPU         int32  `json:"cpu,omitempty"`
	MemoryBytes int64  `json:"memoryBytes,omitempty"`
	DiskBytes   int64  `json:"diskBytes,omitempty"`
}

// Capabilities is what the provider offers. k2 never asks for more: a
// MachineRequest whose Arch, Class or bootstrap method is not listed here
// is refused by the provider with a Diagnostic (providertest checks this).
type Capabilities struct {
	// Architectures in GOARCH spelling (amd64, arm64).
	Architectures []string `json:"architectures"`
	// Classes are the named sizes; empty with CustomSizes means any size.
	Classes []MachineClass `json:"classes,omitempty"`
	// CustomSizes: MachineRequest.CPU/MemoryBytes may be set freely.
	CustomSizes bool `json:"customSizes,omitempty"`
	// MaxMachines per Create request; 0 means no limit.
	MaxMachines int32 `json:"maxMachines,omitempty"`
	// BootstrapMethods the provider can deliver (BootstrapExec...).
	BootstrapMethods []string `json:"bootstrapMethods"`
	// Power: the Power call works.
	Power bool `json:"power,omitempty"`
	// Console: the Console call streams a console or log.
	Console bool `json:"console,omitempty"`
	// PersistentDisks: machines keep their disk across power cycles.
	PersistentDisks bool `json:"persistentDisks,omitempty"`
	// OperatingSystems are the OSes (K8sfile OS) its machines can boot;
	// empty means k2 OS only. k2 refuses to deploy an artifact whose OS
	// is not listed, and the provider refuses a Bootstrap.OS it lacks.
	OperatingSystems []string `json:"operatingSystems,omitempty"`
}

// Operating systems a Bootstrap may ask for (the K8sfile's OS line).
const (
	// OSK2 is k2 OS, or whatever runs k2 on the provider's machines: the
	// default, what every provider boots.
	OSK2 = "k2"
	// OSTalos is Talos Linux at Bootstrap.OSVersion: the machines run
	// Talos's own Kubernetes; the provider makes their configs, starts
	// the cluster and returns its admin kubeconfig
	// (CreateResponse.Kubeconfig). k2 then applies the layers.
	OSTalos = "talos"
)

// OSOf is b's OS, OSK2 when unset.
func (b *Bootstrap) OSOf() string {
	if b == nil || b.OS == "" {
		return OSK2
	}
	return b.OS
}

// ConfigField describes one key of the provider's configuration.
type ConfigField struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // TypeString, TypeInt...
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Secret      bool   `json:"secret,omitempty"` // never logged or shown
	Default     string `json:"default,omitempty"`
}

// Config is the provider configuration as a JSON object, already checked by
// k2 against the schema the provider described.
type Config []byte

// Decode unmarshals the config into v; an empty config leaves v unchanged.
func (c Config) Decode(v any) error {
	if len(c) == 0 {
		return nil
	}
	return json.Unmarshal(c, v)
}

// MachineRequest asks for one machine.
type MachineRequest struct {
	// Name is unique within the cluster and stable across retries.
	Name string `json:"name"`
	// Role is "control-plane" or "worker".
	Role string `json:"role,omitempty"`
	// Pool groups machines of the same shape (the K8sfile MACHINES key).
	Pool  string `json:"pool,omitempty"`
	Arch  string `json:"arch,omitempty"`  // empty: the provider's first architecture
	Class string `json:"class,omitempty"` // a MachineClass name, or empty with CPU/Memory
	CPU   int32  `json:"cpu,omitempty"`
	// MemoryBytes and DiskBytes: 0 means the provider's default.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	DiskBytes   int64 `json:"diskBytes,omitempty"`
	// Labels become the node's labels. k2 sets k2.dev/pool, k2.dev/role
	// and LabelEnvironment.
	Labels map[string]string `json:"labels,omitempty"`
}

// LabelEnvironment is the machine label naming the k2 environment a
// machine belongs to; providers tag what they make for it with its value.
const LabelEnvironment = "k2.dev/environment"

// Bootstrap is what a new machine needs to join the cluster, in the form the
// chosen Method needs.
type Bootstrap struct {
	Method    string `json:"method"`
	ServerURL string `json:"serverURL,omitempty"`
	JoinToken string `json:"joinToken,omitempty"`
	// UserData is for BootstrapUserData.
	UserData []byte `json:"userData,omitempty"`
	// Command and Env are for BootstrapExec: the argv to run on the machine
	// (for k2's agent, Command[0] is the k2 binary), with Env added to the
	// environment. The provider adds the machine's own settings as
	// K2_AGENT_* variables (see the agent's --help).
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// OS and OSVersion are the artifact's OS line ("" means OSK2); for
	// OSTalos, ServerURL, JoinToken, UserData and Command are empty and
	// KubernetesVersion is the artifact's (v1.32.3).
	OS                string `json:"os,omitempty"`
	OSVersion         string `json:"osVersion,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
}

// Machine is a machine the provider manages.
type Machine struct {
	// ID is the provider's identifier, used by Delete/Power/Console.
	ID        string `json:"id"`
	Name      string `json:"name"`
	RequestID string `json:"requestID,omitempty"`
	State     string `json:"state"`
	Role      string `json:"role,omitempty"`
	Pool      string `json:"pool,omitempty"`
	Arch      string `json:"arch,omitempty"`
	Class     string `json:"class,omitempty"`
	CPU       int32  `json:"cpu,omitempty"`
	// MemoryBytes is the machine's memory.
	MemoryBytes int64             `json:"memoryBytes,omitempty"`
	Addresses   []string          `json:"addresses,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Message     string            `json:"message,omitempty"` // a human note on State
}

// DescribeRequest carries k2's own capabilities.
type DescribeRequest struct {
	Host HostCapabilities
}

// DescribeResponse identifies the provider.
type DescribeResponse struct {
	Name         string        `json:"name"`
	Description  string        `json:"description,omitempty"`
	Capabilities Capabilities  `json:"capabilities"`
	ConfigSchema []ConfigField `json:"configSchema,omitempty"`
}

// ValidateRequest asks whether a Create with these inputs would be accepted.
type ValidateRequest struct {
	Config    Config
	Machines  []MachineRequest
	Bootstrap *Bootstrap // may be nil: validate config and machines only
}

// ValidateResponse lists what is wrong; no error diagnostics means valid.
type ValidateResponse struct {
	Diagnostics Diagnostics
}

// Progress is one step of a Create, shown to the user.
type Progress struct {
	Machine string `json:"machine,omitempty"` // empty: the request as a whole
	Message string `json:"message"`
	Percent int32  `json:"percent,omitempty"` // 0..100, 0 when unknown
}

// CreateRequest asks for machines.
type CreateRequest struct {
	// RequestID identifies this request across retries: see the package doc.
	RequestID string
	Config    Config
	Machines  []MachineRequest
	Bootstrap Bootstrap
	// OnProgress receives progress events; set by the SDK on the plugin side
	// and by the caller on k2's side. Providers call Report, not this.
	OnProgress func(Progress)
}

// Report sends a progress event to k2; safe when nobody listens, from
// several goroutines at once, and after Create returned (then dropped).
func (r *CreateRequest) Report(machine, format string, args ...any) {
	if r.OnProgress != nil {
		r.OnProgress(Progress{Machine: machine, Message: sprintf(format, args...)})
	}
}

// CreateResponse returns the machines made (or found, on a retry). With
// error Diagnostics, Machines holds those that exist despite them.
type CreateResponse struct {
	Machines    []Machine
	Diagnostics Diagnostics
	// Kubeconfig is the cluster's admin kubeconfig when the machines run
	// a Kubernetes of their own OS (Bootstrap.OS talos); k2 keeps it with
	// the environment and applies the artifact through it. Empty for k2.
	Kubeconfig []byte
}

// ListRequest asks for the managed machines.
type ListRequest struct {
	Config    Config
	RequestID string // optional filter
}

// ListResponse lists machines.
type ListResponse struct {
	Machines    []Machine
	Diagnostics Diagnostics
}

// DeleteRequest removes machines by ID. k2 also sends it with RequestID
// and no MachineIDs for a request whose Create may have died before making
// a machine: remove whatever else that request made (a security group...).
type DeleteRequest struct {
	RequestID  string
	Config     Config
	MachineIDs []string
}

// DeleteResponse lists the IDs now gone (including those already gone).
type DeleteResponse struct {
	Deleted     []string
	Diagnostics Diagnostics
}

// PowerRequest switches a machine on or off.
type PowerRequest struct {
	Config    Config
	MachineID string
	Action    string // PowerOn, PowerOff, PowerReset
}

// PowerResponse reports the machine's state after the action.
type PowerResponse struct {
	State       string
	Diagnostics Diagnostics
}

// ConsoleRequest streams a machine's console or log into Output.
type ConsoleRequest struct {
	Config    Config
	MachineID string
	Follow    bool
	// Output is where the bytes go. The SDK's, on the plugin side, takes
	// writes from several goroutines at once; after Console returned it
	// refuses them.
	Output io.Writer
}
