// Package machineconfig reads and writes the k2 machine config: the one small,
// versioned document that tells a machine booting k2 OS (or running
// `k2 init --config`) what to become — a control plane serving a cluster
// identity, or a node joining one.
//
// The bytes are the contract between the deploy engine, which makes one
// document per machine, the providers, which carry it opaquely as
// Bootstrap.UserData (a NoCloud cidata volume, EC2 user-data, an HTTP URL
// on the kernel command line), and `k2 init`, which reads it. A document
// is YAML (or JSON, which is YAML), optionally gzip-compressed:
//
//	apiVersion: machine.k2.dev/v1
//	kind: MachineConfig
//	role: worker                      # or control-plane
//	nodeName: w1
//	server: https://10.0.0.5:6443
//	token: K2<ca-hash>::<id>.<secret>
//
// docs/os.md documents every field. The document carries secrets (the join
// token; for the first control plane the cluster CA key inside identity):
// it goes only to the machine it names, and Config.LogValue redacts them.
package machineconfig

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"k2.dev/k2/internal/join"
)

// APIVersion and Kind identify a machine config document. A later version
// gets a new APIVersion; Parse names the versions it reads.
const (
	APIVersion = "machine.k2.dev/v1"
	Kind       = "MachineConfig"
)

// Roles a machine can have.
const (
	RoleWorker       = "worker"
	RoleControlPlane = "control-plane"
)

// Defaults.
const (
	DefaultPort       = 6443
	DefaultJoinPort   = 6444
	DefaultRuntime    = "kubelet"
	DefaultFilesystem = "ext4"
	// DataDiskAuto picks the first whole disk that carries k2's data
	// filesystem label, or else the first empty one.
	DataDiskAuto = "auto"
	// DataLabel is the filesystem label k2 gives the data disk.
	DataLabel = "k2-data"
)

// MaxSize is the largest document Parse accepts (after gunzip). EC2 limits
// user-data to 16 KiB before base64; Encode gzips a larger document.
const MaxSize = 1 << 20

// Config is one machine's config.
type Config struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	// Role is RoleWorker or RoleControlPlane. A control plane with
	// ControlPlane.Identity runs `k2 server`; one without joins the
	// cluster as a node with the control-plane role.
	Role string `yaml:"role" json:"role"`
	// NodeName is the Kubernetes node name; default the host name.
	NodeName string `yaml:"nodeName,omitempty" json:"nodeName,omitempty"`
	// Labels are added to the node.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Server is the API server URL (https://host:6443). Required unless
	// this machine serves the cluster (ControlPlane.Identity).
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
	// JoinURL is the join endpoint; default Server's host on port 6444.
	JoinURL string `yaml:"joinURL,omitempty" json:"joinURL,omitempty"`
	// Token is the join token, K2<ca-hash>::<id>.<secret>. Secret.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// CAHash is the hex SHA-256 of the cluster CA certificate (PEM); when
	// set it must match the token's and the identity's CA.
	CAHash string `yaml:"caHash,omitempty" json:"caHash,omitempty"`
	// Runtime is the agent's pod runtime: kubelet (default), auto or sim.
	Runtime string `yaml:"runtime,omitempty" json:"runtime,omitempty"`
	// Network configures interfaces, host name and resolvers; empty means
	// DHCP on every wired interface that has a link (k2 OS only).
	Network Network `yaml:"network,omitempty" json:"network,omitzero"`
	// DataDisk, when set, is formatted if empty and mounted on /var/lib/k2,
	// so the machine's state survives a reboot (k2 OS only).
	DataDisk *DataDisk `yaml:"dataDisk,omitempty" json:"dataDisk,omitempty"`
	// ControlPlane holds what a control-plane machine serves.
	ControlPlane *ControlPlane `yaml:"controlPlane,omitempty" json:"controlPlane,omitempty"`

	// lines maps field paths to their line in the parsed document.
	lines map[string]int
}

// Network is the machine's network configuration.
type Network struct {
	// Hostname defaults to NodeName.
	Hostname   string      `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Interfaces []Interface `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
	// Nameservers override those DHCP gives.
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
}

// Interface configures one network interface, found by Name or MAC.
type Interface struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	MAC  string `yaml:"mac,omitempty" json:"mac,omitempty"`
	// DHCP asks for an IPv4 address; otherwise Addresses are set.
	DHCP bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// Addresses in CIDR form (10.0.0.5/24).
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	Gateway   string   `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	MTU       int      `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// DataDisk is the disk that holds /var/lib/k2.
type DataDisk struct {
	// Device is a block device path (/dev/vdb) or DataDiskAuto.
	Device string `yaml:"device" json:"device"`
	// Filesystem is made when the disk has none; only ext4.
	Filesystem string `yaml:"filesystem,omitempty" json:"filesystem,omitempty"`
}

// ControlPlane is what a control-plane machine serves.
type ControlPlane struct {
	// Identity is the cluster identity the first control plane serves:
	// the PKI (with the CA key) and join tokens `k2 deploy` made, as a
	// gzip'd tar (controlplane.MakeSeed) in standard base64. Secret.
	Identity string `yaml:"identity,omitempty" json:"identity,omitempty"`
	Port     int    `yaml:"port,omitempty" json:"port,omitempty"`
	JoinPort int    `yaml:"joinPort,omitempty" json:"joinPort,omitempty"`
	// TLSSANs are extra names or addresses for the API server certificate
	// (a public address NAT hides from the machine; a load balancer). The
	// machine's own addresses are always included.
	TLSSANs []string `yaml:"tlsSANs,omitempty" json:"tlsSANs,omitempty"`
	// Node also runs an agent on this machine, so it is a node of the
	// cluster (labelled control-plane); default true.
	Node        *bool  `yaml:"node,omitempty" json:"node,omitempty"`
	ServiceCIDR string `yaml:"serviceCIDR,omitempty" json:"serviceCIDR,omitempty"`
	ClusterCIDR string `yaml:"clusterCIDR,omitempty" json:"clusterCIDR,omitempty"`
}

// Serves reports whether this machine runs `k2 server`.
func (c *Config) Serves() bool {
	return c.ControlPlane != nil && c.ControlPlane.Identity != ""
}

// IdentityBytes decodes ControlPlane.Identity (nil when there is none).
func (c *Config) IdentityBytes() ([]byte, error) {
	if !c.Serves() {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(strings.TrimSpace(c.ControlPlane.Identity))
}

// RunsNode reports whether this machine runs `k2 agent`.
func (c *Config) RunsNode() bool {
	if !c.Serves() {
		return true
	}
	return c.ControlPlane.Node == nil || *c.ControlPlane.Node
}

// Port is the API server port this machine serves (Serves) or ServerURL's.
func (c *Config) Port() int {
	if c.ControlPlane != nil && c.ControlPlane.Port != 0 {
		return c.ControlPlane.Port
	}
	return DefaultPort
}

// JoinPort is the join endpoint port this machine serves.
func (c *Config) JoinPort() int {
	if c.ControlPlane != nil && c.ControlPlane.JoinPort != 0 {
		return c.ControlPlane.JoinPort
	}
	return DefaultJoinPort
}

// RuntimeName is Runtime or its default.
func (c *Config) RuntimeName() string {
	if c.Runtime == "" {
		return DefaultRuntime
	}
	return c.Runtime
}

// Hostname is Network.Hostname, else NodeName.
func (c *Config) Hostname() string {
	if c.Network.Hostname != "" {
		return c.Network.Hostname
	}
	return c.NodeName
}

// JoinEndpoint is JoinURL, or Server's host on port 6444.
func (c *Config) JoinEndpoint() string {
	if c.JoinURL != "" || c.Server == "" {
		return c.JoinURL
	}
	u, err := url.Parse(c.Server)
	if err != nil {
		return ""
	}
	return "https://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(join.DefaultPort))
}

// Encode returns the document's bytes: YAML with a header comment, gzipped
// when gzip is true. The output is deterministic.
func Encode(c *Config, gz bool) ([]byte, error) {
	out := *c
	if out.APIVersion == "" {
		out.APIVersion = APIVersion
	}
	if out.Kind == "" {
		out.Kind = Kind
	}
	var buf bytes.Buffer
	buf.WriteString("# k2 machine config (docs/os.md). It holds secrets: give it only to the machine it names.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if !gz {
		return buf.Bytes(), nil
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	w.Write(buf.Bytes())
	if err := w.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

// Parse decodes a document (YAML or JSON, optionally gzipped) strictly:
// unknown fields, a wrong apiVersion or kind, and a cloud-init document are
// errors that say what was expected. It does not Validate.
func Parse(b []byte) (*Config, error) {
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("machine config: reading gzip: %w", err)
		}
		if b, err = io.ReadAll(io.LimitReader(zr, MaxSize+1)); err != nil {
			return nil, fmt.Errorf("machine config: reading gzip: %w", err)
		}
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("machine config: %d bytes is more than the %d a machine config may have", len(b), MaxSize)
	}
	trimmed := bytes.TrimSpace(b)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("machine config: empty document; want apiVersion: %s, kind: %s", APIVersion, Kind)
	case bytes.HasPrefix(trimmed, []byte("#cloud-config")), bytes.HasPrefix(trimmed, []byte("#!")),
		bytes.HasPrefix(bytes.ToLower(trimmed), []byte("content-type: multipart")):
		return nil, fmt.Errorf("machine config: this is a cloud-init document, not a k2 machine config (apiVersion: %s); k2 OS reads only machine configs", APIVersion)
	}
	var probe struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("machine config: %w", cleanYAMLError(err))
	}
	if probe.APIVersion != APIVersion || probe.Kind != Kind {
		return nil, fmt.Errorf("machine config: apiVersion %q, kind %q: this k2 reads apiVersion: %s, kind: %s", probe.APIVersion, probe.Kind, APIVersion, Kind)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("machine config: %w", cleanYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("machine config: more than one document; give one machine config per machine")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err == nil {
		c.lines = map[string]int{}
		recordLines(&doc, "", c.lines)
	}
	return c, nil
}

// recordLines maps each field path below n (a.b, a.list[2]) to its line.
func recordLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			recordLines(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			lines[p] = n.Content[i].Line
			recordLines(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			lines[p] = c.Line
			recordLines(c, p, lines)
		}
	}
}

// cleanYAMLError drops the library's "yaml: " prefixes and the Go type
// names from its messages.
func cleanYAMLError(err error) error {
	s := err.Error()
	s = strings.ReplaceAll(s, "yaml: unmarshal errors:\n  ", "")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.ReplaceAll(s, " in type machineconfig.", " in ")
	return fmt.Errorf("%s", s)
}

// Load parses and validates a document: the config, any warnings, and an
// error listing every problem.
func Load(b []byte) (*Config, []string, error) {
	c, err := Parse(b)
	if err != nil {
		return nil, nil, err
	}
	warn, err := c.Validate()
	if err != nil {
		return nil, warn, err
	}
	return c, warn, nil
}

// Redacted returns a copy without secrets, for logs and `-o json` output:
// the token keeps its CA hash and id, the identity becomes its size.
func (c *Config) Redacted() *Config {
	r := *c
	if r.Token != "" {
		if t, err := join.Parse(r.Token); err == nil {
			r.Token = "K2" + t.CAHash + "::" + t.ID + ".REDACTED"
		} else {
			r.Token = "REDACTED"
		}
	}
	if r.ControlPlane != nil {
		cp := *r.ControlPlane
		if cp.Identity != "" {
			cp.Identity = fmt.Sprintf("REDACTED (%d bytes)", len(cp.Identity))
		}
		r.ControlPlane = &cp
	}
	return &r
}

// LogValue logs the config without its secrets.
func (c *Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("role", c.Role), slog.String("node", c.NodeName)}
	if c.Server != "" {
		attrs = append(attrs, slog.String("server", c.Server))
	}
	if c.Serves() {
		attrs = append(attrs, slog.Bool("serves", true), slog.Int("port", c.Port()))
	}
	if c.DataDisk != nil {
		attrs = append(attrs, slog.String("dataDisk", c.DataDisk.Device))
	}
	return slog.GroupValue(attrs...)
}

var _ slog.LogValuer = (*Config)(nil)
