// Package k8sfile parses K8sfiles: a Dockerfile-like description of a whole
// cluster. Parsing goes lexer → AST with positions → the typed instructions
// declared in this file, which are the contract with the builder.
//
// Values in APP, MACHINES and INSTALL set= may refer to ARGs as ${name}; they
// are kept as written (templates) and resolved per environment at deploy time
// with [Expand]. Build-time fields (FROM ref, ADD path, INSTALL chart, version,
// namespace and values file) are expanded at parse time with the ARG defaults.
package k8sfile

// DefaultName is the file name k2 looks for when -f is not given.
const DefaultName = "K8sfile"

// Pos is a position in a K8sfile. Line and Col are 1-based.
type Pos struct {
	File string `json:"-"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

// File is a parsed and validated K8sfile.
type File struct {
	Name     string        // path as given, used in error messages
	From     From          // exactly one FROM, the first instruction
	Args     []Arg         // in order of declaration
	Labels   []Label       // in order; a later key overrides an earlier one
	Layers   []Layer       // ADD, INSTALL and APP in file order
	Machines []MachinePool // one per pool; a pool may be named once
	OS       *OS           // nil: not given (the base's, else k2)
}

// From is the FROM instruction: "scratch" or an artifact reference.
type From struct {
	Pos
	Ref string // "scratch", "k2/base:v1.37", "host/repo:tag" or "...@sha256:..."
}

// Scratch reports whether the build starts from nothing.
func (f From) Scratch() bool { return f.Ref == "scratch" }

// Arg is ARG name[=default]. Default is nil for a required argument.
type Arg struct {
	Pos
	Name    string
	Default *string
}

// Label is LABEL key=value; it becomes an OCI annotation.
type Label struct {
	Pos
	Key, Value string
}

// Layer is one of *Add, *Install, *App.
type Layer interface {
	Position() Pos
	// LayerName is the layer's unique name in the artifact: ADD's "as" name
	// or the path's base name, INSTALL's chart name (or name=), APP's name.
	LayerName() string
}

// Add is ADD <path> [as <name>]: a local Helm chart directory or .tgz, or a
// directory or file of Kubernetes manifests. Path is relative to the build
// context directory.
type Add struct {
	Pos
	Path string
	Name string
}

// Install is INSTALL <chart> [version=…] [namespace=…] [values=<file>]
// [set key=value …] [name=…]: a Helm chart fetched at build time.
// Chart is an oci:// ref, <repo-url>#<chart>, or helm/<repo-alias>/<chart>.
type Install struct {
	Pos
	Chart      string
	Version    string // empty: the newest
	Namespace  string // empty: "default"
	ValuesFile string // relative to the build context
	Set        []KV   // values may hold ${ARG} templates
	Name       string // release name; default the chart's base name
}

// App is APP <name> image=<ref> [port=…] [replicas=…] [env KEY=VALUE …].
// Fields hold templates; see [Expand].
type App struct {
	Pos
	Name     string
	Image    string
	Ports    []string // port=80 may repeat, or port=80,443; one entry per port, but a template may expand to "80,443"
	Replicas string   // empty: 1
	Env      []KV
}

// MachinePool is MACHINES <pool>=<count> [cpu=…] [memory=…] [disk=…] [arch=…]
// [datastore=…].
// A MACHINES line may name several pools (control-plane=1 worker=3); each
// becomes a MachinePool with the line's shared options.
type MachinePool struct {
	Pos
	Pool   string
	Count  string // template; an integer ≥ 0 once expanded
	CPU    string // template; cores
	Memory string // template; a quantity such as 4Gi
	Disk   string // template; a quantity such as 20Gi
	Arch   string // amd64, arm64; empty: any
	// Datastore is the control-plane pool's datastore (template): sqlite,
	// etcd (embedded), or an external endpoint (etcd://, postgres://,
	// mysql://); empty: sqlite for one server, etcd for more.
	Datastore string `json:",omitempty"`
}

// KV is a key=value pair.
type KV struct {
	Key, Value string
}

// Position is where the instruction starts in the K8sfile.
func (p Pos) Position() Pos { return p }

// LayerName is the name of the layer ADD makes.
func (a *Add) LayerName() string { return a.Name }

// LayerName is the name of the layer INSTALL makes.
func (i *Install) LayerName() string { return i.Name }

// LayerName is the name of the layer APP makes.
func (a *App) LayerName() string { return a.Name }
