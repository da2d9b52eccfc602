package artifact

import (
	"encoding/json"
	"fmt"

	"k2.dev/k2/artifact/k8sfile"
)

// ConfigVersion is the version of the config schema written by this k2.
// Readers accept any config whose Version they know.
const ConfigVersion = "k2.dev/cluster/v1"

// Config is the resolved cluster spec stored as the artifact's config blob.
// Settings inherited from FROM are already merged in: a reader never needs to
// open the base artifacts. The JSON shape is stable within a ConfigVersion.
type Config struct {
	Version string `json:"version"` // ConfigVersion
	// Kubernetes is the Kubernetes version the cluster runs, e.g. v1.37.2,
	// set by the built-in base (empty when built FROM scratch).
	Kubernetes string `json:"kubernetes,omitempty"`
	// Args are the parameters an environment may set at deploy time,
	// inherited ones first; a later declaration of a name replaces its default.
	Args []ArgSpec `json:"args,omitempty"`
	// Machines are the machine pools, sorted by pool name.
	Machines []MachineSpec `json:"machines,omitempty"`
	// Apps are the App layers' specs, in layer order.
	Apps []AppSpec `json:"apps,omitempty"`
	// Layers describes each manifest layer, in the manifest's order:
	// inherited layers first.
	Layers []LayerSpec `json:"layers"`
	// AllowBeta records that alpha/beta API versions were allowed at build
	// (k2 build --allow-beta), here or in a base.
	AllowBeta bool `json:"allowBeta"`
	// Base is the FROM chain, nearest first, each with its pinned digest.
	Base []BaseRef `json:"base,omitempty"`
	// Labels are the LABEL pairs (inherited and own); they are also the
	// manifest's annotations.
	Labels map[string]string `json:"labels,omitempty"`
	// OS is the operating system the machines boot (the OS instruction,
	// else the base's); nil means k2 OS (artifacts built before OS).
	OS *OSSpec `json:"os,omitempty"`
	// Images are the container images the workloads reference, sorted by
	// normalised reference; vendored ones have an Archive, stored as
	// manifest layers after the Layers ones (see vendor.go).
	Images []ImageRef `json:"images,omitempty"`
}

// OSSpec is the OS instruction: k2 (k2 OS, docs/os.md) or talos with a
// version.
type OSSpec struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// OSName is the OS the artifact's machines boot: "k2" unless it says
// otherwise.
func (c *Config) OSName() string {
	if c == nil || c.OS == nil {
		return k8sfile.OSK2
	}
	return c.OS.Name
}

// ArgSpec is an ARG. Default is nil for a required argument.
type ArgSpec struct {
	Name    string  `json:"name"`
	Default *string `json:"default,omitempty"`
}

// MachineSpec is a machine pool. Values may hold ${ARG} templates.
type MachineSpec struct {
	Pool   string `json:"pool"`
	Count  string `json:"count"`
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	Disk   string `json:"disk,omitempty"`
	Arch   string `json:"arch,omitempty"`
	// Datastore of the control-plane pool: sqlite, etcd, or an endpoint.
	Datastore string `json:"datastore,omitempty"`
}

// AppSpec is the spec of an APP layer. Values may hold ${ARG} templates.
type AppSpec struct {
	Name     string   `json:"name"`
	Image    string   `json:"image"`
	Ports    []string `json:"ports,omitempty"`
	Replicas string   `json:"replicas,omitempty"`
	Env      []EnvVar `json:"env,omitempty"`
}

// EnvVar is one environment variable of an App.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// LayerSpec describes one layer of the artifact.
type LayerSpec struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // KindManifests, KindChart or KindApp
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	// Source is where the layer came from: the ADD path, the INSTALL chart
	// reference, or "APP <name>".
	Source string `json:"source,omitempty"`
	// From is the base reference the layer was inherited from; empty for the
	// artifact's own layers.
	From string `json:"from,omitempty"`
	// Chart is set for chart layers.
	Chart *ChartSpec `json:"chart,omitempty"`
	// Objects are the objects the layer creates, as rendered at build time
	// with the chart's default values plus the given ones.
	Objects []Object `json:"objects"`
}

// ChartSpec is how a chart layer is installed.
type ChartSpec struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion,omitempty"`
	// Release is the release name (INSTALL name=, default the chart name).
	Release string `json:"release"`
	// Namespace is the release namespace ("default" unless INSTALL namespace=).
	Namespace string `json:"namespace"`
	// Values are the values= file's contents, applied over the chart's
	// defaults (nil when none).
	Values map[string]any `json:"values,omitempty"`
	// Set are the set key=value pairs applied after Values, in order,
	// with Helm's --set syntax. Values may hold ${ARG} templates.
	Set []KV `json:"set,omitempty"`
	// Digest is the sha256 digest of the vendored chart archive as fetched
	// (the same as the layer digest).
	Digest string `json:"digest,omitempty"`
}

// KV is a key=value pair.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Object identifies one Kubernetes object. APIVersion is empty for objects
// that omit it; k2 resolves it to the server's stable version at deploy.
type Object struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name,omitempty"`
	// File is the file in the layer (manifests) or the chart template that
	// holds the object.
	File string `json:"file,omitempty"`
}

// BaseRef is one artifact of the FROM chain.
type BaseRef struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// ParseConfig decodes a config blob and checks its version.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decoding artifact config: %w", err)
	}
	if c.Version != ConfigVersion {
		return nil, fmt.Errorf("artifact config version %q is not supported (want %s); upgrade k2", c.Version, ConfigVersion)
	}
	return &c, nil
}

// Layer returns the spec of the layer named name, or nil.
func (c *Config) Layer(name string) *LayerSpec {
	for i := range c.Layers {
		if c.Layers[i].Name == name {
			return &c.Layers[i]
		}
	}
	return nil
}
