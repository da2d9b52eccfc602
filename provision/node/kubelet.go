package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// DNSAddress is the link-local address every node's DNS answers on (the
// pods' nameserver); the agent puts it on a dummy interface.
const DNSAddress = "169.254.20.10"

// ClusterDomain is the cluster's DNS domain.
const ClusterDomain = "cluster.local"

// kubeletConfig is the KubeletConfiguration k2 writes for a node.
func kubeletConfig(o *Options, p containerdPaths, caFile string) *kubeletv1beta1.KubeletConfiguration {
	c := &kubeletv1beta1.KubeletConfiguration{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		ContainerRuntimeEndpoint: "unix://" + p.Socket,
		CgroupDriver:             "cgroupfs", // no systemd on k2's machines
		CgroupRoot:               o.cgroupRoot(),
		CgroupsPerQOS:            ptr.To(true),
		Address:                  o.NodeIP,
		Port:                     10250,
		ReadOnlyPort:             0,
		HealthzPort:              ptr.To[int32](0),
		ClusterDNS:               []string{DNSAddress},
		ClusterDomain:            ClusterDomain,
		ResolverConfig:           ptr.To(o.resolvConf()),
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: caFile},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		MaxPods:       int32(o.MaxPods),
		// Images imported by k2 (the pause image, vendored images) carry no
		// pull credentials; without this a pod naming one fails with
		// ErrImageNeverPull once the kubelet has pulled anything.
		ImagePullCredentialsVerificationPolicy: kubeletv1beta1.NeverVerify,
		SerializeImagePulls:                    ptr.To(false),
		FailSwapOn:                             ptr.To(false),
		// Machines share the host's disks in the local provider: evict only
		// when they are really full.
		EvictionHard: map[string]string{
			"memory.available":  "50Mi",
			"nodefs.available":  "1%",
			"imagefs.available": "1%",
		},
		// Not the host's /var/log/pods: every kubelet's garbage collection
		// removes the log directories of pods it does not know, which would
		// be every other node's on this host.
		PodLogsDir: p.PodLogs,

		ImageGCHighThresholdPercent: ptr.To[int32](99),
		ImageGCLowThresholdPercent:  ptr.To[int32](98),
		ProtectKernelDefaults:       false,
		RotateCertificates:          false,
		ServerTLSBootstrap:          false,
		StaticPodPath:               "",
	}
	if cgroupV1() {
		// This host still runs cgroup v1; the kubelet refuses it otherwise.
		c.FailCgroupV1 = ptr.To(false)
	}
	return c
}

// resolvConf is the file pods with dnsPolicy Default copy, and the
// upstream the node's DNS forwards to.
func (o *Options) resolvConf() string {
	if o.ResolvConf != "" {
		return o.ResolvConf
	}
	return "/etc/resolv.conf"
}

// runKubelet writes the kubelet's configuration into the node's data dir
// and runs the kubelet in this process until ctx ends.
func runKubelet(ctx context.Context, o *Options, p containerdPaths, kubeconfig, caFile string) error {
	dir := p.Kubelet
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if link := filepath.Join(o.DataDir, "kubelet"); link != dir {
		_ = os.Remove(link)
		_ = os.Symlink(dir, link) // so the data dir still shows everything
	}
	b, err := yaml.Marshal(kubeletConfig(o, p, caFile))
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(o.DataDir, "kubelet.yaml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		return err
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, cfgFile)
	if err != nil {
		return err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return fmt.Errorf("loading %s: %w", cfgFile, err)
	}
	if kc.EvictionHard == nil {
		kc.EvictionHard = eviction.DefaultEvictionHard
	}
	fg := utilfeature.DefaultMutableFeatureGate
	if err := fg.SetFromMap(kc.FeatureGates); err != nil {
		return err
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, fg); err != nil {
		return fmt.Errorf("kubelet configuration %s: %w", cfgFile, err)
	}
	flags := kubeletoptions.NewKubeletFlags()
	flags.KubeConfig = kubeconfig
	flags.HostnameOverride = o.NodeName
	flags.NodeIP = o.NodeIP
	flags.NodeLabels = o.nodeLabels()
	flags.CertDirectory = filepath.Join(dir, "pki")
	flags.RootDirectory = dir
	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return fmt.Errorf("kubelet flags: %w", err)
	}
	// As upstream's command does (kubernetes_feature_enabled; kube-proxy in
	// this process shares the gate and the metrics registry).
	fg.AddMetrics()
	s := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, s, fg)
	if err != nil {
		return fmt.Errorf("kubelet dependencies: %w", err)
	}
	return kubeletapp.Run(ctx, s, deps, fg)
}

// kubelet is the kubelet component: Run runs it until its context ends.
type kubelet struct{ n *node }

func (*kubelet) Name() string                { return "kubelet" }
func (*kubelet) Init(context.Context) error  { return nil }
func (*kubelet) Start(context.Context) error { return nil }
func (*kubelet) Stop(context.Context) error  { return nil }

func (k *kubelet) Run(ctx context.Context) error {
	return runKubelet(ctx, k.n.o, k.n.paths, k.n.o.Kubeconfig, k.n.o.CAFile)
}
