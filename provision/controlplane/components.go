package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"k2.dev/k2/provision/pki"
)

// setupComponentLogging points klog at the component log and lets the three
// components apply the same logging configuration one after another.
func setupComponentLogging(cfg Config) error {
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	w := cfg.ComponentLog
	if w == nil {
		dir := filepath.Join(cfg.DataDir, "logs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, "control-plane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		w = f
	}
	componentLog = w
	logOpts = &logsapi.LoggingOptions{ErrorStream: w, InfoStream: w}
	redirectKlog()
	// The apiserver's loopback clients warn about their own deprecated calls.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	return nil
}

// componentLog receives klog output of all components; logOpts route the
// components' structured loggers there too. One value for all components, so
// re-applying the same logging configuration is accepted.
var (
	componentLog io.Writer
	logOpts      *logsapi.LoggingOptions
)

// redirectKlog sends klog to the component log; every component's logging
// set-up resets klog's output, so each calls this after applying its options.
func redirectKlog() {
	klog.LogToStderr(false)
	klog.SetOutput(componentLog)
}

// applyLogs applies a component's logging options, then redirects klog.
func applyLogs(c *logsapi.LoggingConfiguration, fg featuregate.FeatureGate) error {
	if err := logsapi.ValidateAndApplyWithOptions(c, logOpts, fg); err != nil {
		return err
	}
	redirectKlog()
	return nil
}

func (s *Server) common() []string {
	return []string{"--v=" + strconv.Itoa(s.cfg.Verbosity)}
}

func (s *Server) apiServerArgs() []string {
	p := s.PKI.Path
	runtimeConfig := "api/alpha=false,api/beta=false"
	if s.cfg.AllowBeta {
		runtimeConfig = "api/alpha=false,api/beta=true"
	}
	reconciler := "lease"
	if ip := net.ParseIP(s.cfg.AdvertiseAddress); ip != nil && ip.IsLoopback() {
		reconciler = "none" // the apiserver refuses to publish a loopback endpoint
	}
	return append(s.common(),
		"--advertise-address="+s.cfg.AdvertiseAddress,
		"--bind-address="+s.cfg.BindAddress,
		"--secure-port="+strconv.Itoa(s.cfg.Port),
		"--cert-dir="+filepath.Join(s.cfg.DataDir, "pki"),
		"--etcd-servers="+strings.Join(s.ds.EtcdServers, ","),
		"--tls-cert-file="+p(pki.ServingCert),
		"--tls-private-key-file="+p(pki.ServingKey),
		"--client-ca-file="+p(pki.CACert),
		"--service-account-key-file="+p(pki.SAPub),
		"--service-account-signing-key-file="+p(pki.SAKey),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+s.cfg.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate="+p(pki.KubeletClientCert),
		"--kubelet-client-key="+p(pki.KubeletClientKey),
		"--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
		"--requestheader-client-ca-file="+p(pki.FrontProxyCACert),
		"--requestheader-allowed-names="+pki.FrontProxyUserName,
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file="+p(pki.FrontProxyCert),
		"--proxy-client-key-file="+p(pki.FrontProxyKey),
		"--endpoint-reconciler-type="+reconciler,
		"--runtime-config="+runtimeConfig,
		"--profiling=false",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
	)
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

func (s *Server) schedulerArgs() []string {
	return append(s.common(),
		"--kubeconfig="+filepath.Join(s.cfg.DataDir, schedulerKubeconfig),
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	)
}

func parseFlags(name string, sets map[string]*pflag.FlagSet, order []string, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, n := range order {
		fs.AddFlagSet(sets[n])
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	return nil
}

func runAPIServer(ctx context.Context, args []string) error {
	s := apiserveroptions.NewServerRunOptions()
	nfs := s.Flags()
	if err := parseFlags("kube-apiserver", nfs.FlagSets, nfs.Order, args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	fg := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := applyLogs(s.Logs, fg); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	// apiserverapp.Run, with k2's bootstrap hooks in place of two upstream
	// ones (bootstrap.go).
	informerName, err := cache.NewInformerName("kube-apiserver")
	if err != nil {
		return err
	}
	completed.InformerName = informerName
	config, err := apiserverapp.NewConfig(completed)
	if err != nil {
		return err
	}
	config.KubeAPIs.ControlPlane.Generic.DisabledPostStartHooks.Insert(replacedHooks...)
	cc, err := config.Complete()
	if err != nil {
		return err
	}
	chain, err := apiserverapp.CreateServerChain(cc)
	if err != nil {
		return err
	}
	for name, hook := range bootstrapHooks() {
		if err := chain.GenericAPIServer.AddPostStartHook(name, hook); err != nil {
			return err
		}
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
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

func runScheduler(ctx context.Context, args []string) error {
	opts := schedoptions.NewOptions()
	if err := parseFlags("kube-scheduler", opts.Flags.FlagSets, opts.Flags.Order, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := applyLogs(opts.Logs, fg); err != nil {
		return err
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return schedapp.Run(ctx, cc, sched)
}
