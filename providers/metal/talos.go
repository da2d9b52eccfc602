package metal

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	talosconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"gopkg.in/yaml.v3"
)

// TalosInput is what `OS talos version=…` sites need to install a cluster
// of Talos machines: one secrets bundle for the cluster and a config per
// machine, made and validated with Talos's own machinery.
type TalosInput struct {
	ClusterName string
	// Endpoint is the Kubernetes API endpoint (https://10.0.0.10:6443).
	Endpoint string
	// KubernetesVersion is the artifact's ("1.32.3" or "v1.32.3").
	KubernetesVersion string
	// TalosVersion is the Talos release the configs are for ("v1.10.6");
	// its minor version is machinery's version contract.
	TalosVersion string
	// ImageRegistry is the site's mirror every image reference is
	// rewritten to (host[:port][/path]); empty keeps machinery's defaults.
	ImageRegistry string
	Machines      []TalosMachine
	// Secrets reuses a bundle (a resumed deploy, a golden test); nil makes
	// a new one.
	Secrets *secrets.Bundle
	// Now is the certificates' clock (zero: time.Now).
	Now time.Time
}

// TalosMachine is one machine's part of the input.
type TalosMachine struct {
	Name string
	Role string // control-plane or worker
	// Disk is the install disk (default /dev/sda).
	Disk string
	// Labels become the node's labels.
	Labels map[string]string
}

// TalosConfigs are the generated documents.
type TalosConfigs struct {
	// Secrets is the cluster's secrets bundle (YAML): keep it with the
	// environment (it is what a later config for a new machine needs).
	Secrets []byte
	// Machines maps a machine's name to its config (YAML), served to it
	// with talos.config=URL.
	Machines map[string][]byte
	// Warnings are machinery's validation warnings, "machine: warning".
	Warnings []string
}

// ErrTalosConfig marks a config machinery refused.
var ErrTalosConfig = errors.New("invalid Talos machine config")

// talosMode is how machinery validates: metal installs to disk.
type talosMode struct{}

func (talosMode) String() string        { return "metal" }
func (talosMode) RequiresInstall() bool { return true }
func (talosMode) InContainer() bool     { return false }

// GenerateTalos makes and validates one config per machine. A config
// machinery refuses is an ErrTalosConfig naming the machine, with
// machinery's own message verbatim.
func GenerateTalos(in TalosInput) (*TalosConfigs, error) {
	vc, err := talosconfig.ParseContractFromVersion(in.TalosVersion)
	if err != nil {
		return nil, fmt.Errorf("talos version %q: %w", in.TalosVersion, err)
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	bundle := in.Secrets
	if bundle == nil {
		if bundle, err = secrets.NewBundle(secrets.NewFixedClock(now), vc); err != nil {
			return nil, fmt.Errorf("generating Talos secrets: %w", err)
		}
	} else {
		bundle.Clock = secrets.NewFixedClock(now)
	}
	opts := []generate.Option{
		generate.WithVersionContract(vc),
		generate.WithSecretsBundle(bundle),
		generate.WithClusterDiscovery(false), // no outside discovery service: the site's network only
	}
	kv := strings.TrimPrefix(in.KubernetesVersion, "v")
	input, err := generate.NewInput(in.ClusterName, in.Endpoint, kv, opts...)
	if err != nil {
		return nil, fmt.Errorf("preparing Talos configs: %w", err)
	}
	out := &TalosConfigs{Machines: map[string][]byte{}}
	if out.Secrets, err = yaml.Marshal(bundle); err != nil {
		return nil, err
	}
	var errs []error
	for _, m := range in.Machines {
		t := machine.TypeWorker
		if m.Role == "control-plane" {
			t = machine.TypeControlPlane
		}
		cfg, err := input.Config(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("machine %s: %w", m.Name, err))
			continue
		}
		raw := cfg.RawV1Alpha1()
		disk := m.Disk
		if disk == "" {
			disk = "/dev/sda"
		}
		raw.MachineConfig.MachineInstall.InstallDisk = disk
		if raw.MachineConfig.MachineNetwork == nil {
			raw.MachineConfig.MachineNetwork = &v1alpha1.NetworkConfig{}
		}
		raw.MachineConfig.MachineNetwork.NetworkHostname = m.Name
		if len(m.Labels) > 0 {
			raw.MachineConfig.MachineNodeLabels = m.Labels
		}
		if in.ImageRegistry != "" {
			defaultImages(raw, in.TalosVersion)
			mirrorImages(raw, in.ImageRegistry)
		}
		warnings, err := cfg.Validate(talosMode{})
		for _, w := range warnings {
			out.Warnings = append(out.Warnings, m.Name+": "+w)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w of machine %s: %w", ErrTalosConfig, m.Name, flatten(err)))
			continue
		}
		b, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
		if err != nil {
			errs = append(errs, fmt.Errorf("machine %s: %w", m.Name, err))
			continue
		}
		out.Machines[m.Name] = b
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// defaultImages names the images machinery leaves to Talos's built-in
// defaults, so that the mirror serves them too.
func defaultImages(c *v1alpha1.Config, talosVersion string) {
	if c.MachineConfig.MachineInstall.InstallImage == "" {
		c.MachineConfig.MachineInstall.InstallImage = "siderolabs/installer:" + talosVersion
	}
	cc := c.ClusterConfig
	if cc == nil {
		return
	}
	if cc.EtcdConfig != nil && cc.EtcdConfig.ContainerImage == "" {
		cc.EtcdConfig.ContainerImage = constants.EtcdImage + ":" + constants.DefaultEtcdVersion
	}
	if cc.CoreDNSConfig == nil {
		cc.CoreDNSConfig = &v1alpha1.CoreDNS{}
	}
	if cc.CoreDNSConfig.CoreDNSImage == "" {
		cc.CoreDNSConfig.CoreDNSImage = constants.CoreDNSImage + ":" + constants.DefaultCoreDNSVersion
	}
}

// mirrorImages points every image of a config at the site's registry.
func mirrorImages(c *v1alpha1.Config, registry string) {
	mc, cc := c.MachineConfig, c.ClusterConfig
	refs := []*string{&mc.MachineKubelet.KubeletImage, &mc.MachineInstall.InstallImage}
	if cc != nil {
		if cc.APIServerConfig != nil {
			refs = append(refs, &cc.APIServerConfig.ContainerImage)
		}
		if cc.ControllerManagerConfig != nil {
			refs = append(refs, &cc.ControllerManagerConfig.ContainerImage)
		}
		if cc.SchedulerConfig != nil {
			refs = append(refs, &cc.SchedulerConfig.ContainerImage)
		}
		if cc.ProxyConfig != nil {
			refs = append(refs, &cc.ProxyConfig.ContainerImage)
		}
		if cc.EtcdConfig != nil {
			refs = append(refs, &cc.EtcdConfig.ContainerImage)
		}
		if cc.CoreDNSConfig != nil {
			refs = append(refs, &cc.CoreDNSConfig.CoreDNSImage)
		}
	}
	for _, r := range refs {
		if *r != "" {
			*r = mirrorRef(registry, *r)
		}
	}
}

// mirrorRef replaces a reference's registry host with registry:
// "host.example/a/b:v1" → "<registry>/a/b:v1".
func mirrorRef(registry, ref string) string {
	first, rest, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		ref = rest
	}
	return strings.TrimSuffix(registry, "/") + "/" + ref
}

// flatten renders machinery's (nested) multierrors on one line, each
// message verbatim: "a; b: c".
func flatten(err error) error {
	msg := multiHeader.ReplaceAllString(err.Error(), "")
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n\t* ", "; ")), " ")
	return &joined{msg: msg, err: err}
}

var multiHeader = regexp.MustCompile(`\d+ errors? occurred:\n\t\* `)

type joined struct {
	msg string
	err error
}

func (j *joined) Error() string { return j.msg }
func (j *joined) Unwrap() error { return j.err }
