package controlplane

import (
	"context"
	"path/filepath"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/configz"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"k2.dev/k2/provision/pki"
)

// controllerManager is the kube-controller-manager component.
type controllerManager struct{ s *Server }

func (*controllerManager) Name() string                { return "kube-controller-manager" }
func (*controllerManager) Init(context.Context) error  { return nil }
func (*controllerManager) Start(context.Context) error { return nil }
func (*controllerManager) Stop(context.Context) error  { return nil }

// Run runs the controller-manager, under leader election when the server
// has it (ha.go): k2 elects it with the upstream lease name, because the
// upstream election exits the process when it loses the lease.
func (c *controllerManager) Run(ctx context.Context) error {
	return c.s.leaderElected(ctx, "kube-controller-manager", func(ctx context.Context) error {
		defer configz.Delete(cmapp.ConfigzName) // registered again by the next run
		return runControllerManager(ctx, c.s.controllerManagerArgs())
	})
}

func (s *Server) controllerManagerArgs() []string {
	p := s.PKI.Path
	return append(s.common(),
		"--kubeconfig="+filepath.Join(s.cfg.DataDir, controllerKubeconfig),
		"--secure-port=0",
		"--leader-elect=false",
		"--service-account-private-key-file="+p(pki.SAKey),
		"--root-ca-file="+p(pki.CACert),
		"--cluster-signing-cert-file="+p(pki.CACert),
		"--cluster-signing-key-file="+p(pki.CAKey),
		"--use-service-account-credentials=true",
		// Device allocation (DRA) and storage migration need node drivers and
		// operators k2 does not ship; their controllers would have nothing to do.
		"--controllers=*,-resourceclaim-controller,-device-taint-eviction-controller,-resourcepoolstatusrequest-controller,-storage-version-migrator-controller,-selinux-warning-controller",
		"--allocate-node-cidrs=true",
		"--cluster-cidr="+s.cfg.ClusterCIDR,
		"--service-cluster-ip-range="+s.cfg.ServiceCIDR,
		"--configure-cloud-routes=false",
		"--profiling=false",
		// The default client limit (20/s, burst 30) caps pod creation at
		// ~20 pods/s; the API server here is local.
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	)
}

func runControllerManager(ctx context.Context, args []string) error {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	nfs := s.Flags(cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	s.ParsedFlags = &nfs
	if err := parseFlags("kube-controller-manager", nfs.FlagSets, nfs.Order, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := applyLogs(s.Logs, utilfeature.DefaultFeatureGate); err != nil {
		return err
	}
	c, err := s.Config(ctx, cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	if err != nil {
		return err
	}
	return cmapp.Run(ctx, c.Complete())
}
