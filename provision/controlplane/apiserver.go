package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"k2.dev/k2/provision/pki"
)

// apiServer is the kube-apiserver component: Run serves until its context
// ends, Ready waits for /readyz.
type apiServer struct {
	s    *Server
	args []string
}

func (*apiServer) Name() string               { return "kube-apiserver" }
func (*apiServer) Init(context.Context) error { return nil }

func (a *apiServer) Start(context.Context) error {
	a.args = a.s.apiServerArgs() // after the datastore: its endpoint
	return nil
}

func (a *apiServer) Run(ctx context.Context) error { return runAPIServer(ctx, a.args) }

func (a *apiServer) Ready(ctx context.Context) error {
	s := a.s
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	s.Timings.Ready = time.Since(s.t0)
	s.log.Info("apiserver ready", "url", s.URL, "took", s.Timings.Ready.Round(time.Millisecond))
	return nil
}

func (*apiServer) Stop(context.Context) error { return nil }

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
	var etcdTLS []string
	if t := s.ds.EtcdTLS; t != nil {
		etcdTLS = []string{"--etcd-cafile=" + t.CA, "--etcd-certfile=" + t.ClientCert, "--etcd-keyfile=" + t.ClientKey}
	}
	return append(append(s.common(), etcdTLS...),
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
		// Webhooks, conversion webhooks and aggregated APIs are called at
		// their Service's endpoints (pod addresses, which the node routes
		// reach), not at a cluster IP nothing translates on this machine.
		"--enable-aggregator-routing=true",
		"--runtime-config="+runtimeConfig,
		"--profiling=false",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
	)
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
	// As upstream's command does: kubernetes_feature_enabled and the
	// component version metrics (once: the controller-manager and the
	// scheduler in this process share the gates and the registry).
	fg.(featuregate.MutableFeatureGate).AddMetrics()
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()
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

// readyTimeout bounds waitReady. Natively the apiserver is ready in about a
// second; under emulation (k2 OS in qemu TCG) it takes minutes, and giving
// up restarts it from the beginning.
const readyTimeout = 10 * time.Minute

// waitReady polls /readyz until it answers ok or ctx ends (the Manager
// ends it if the apiserver fails).
func (s *Server) waitReady(ctx context.Context) error {
	tr, err := rest.TransportFor(s.rest)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(readyTimeout)
	var last string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("kube-apiserver not ready after %s: %s (see %s)", readyTimeout, last, filepath.Join(s.cfg.DataDir, "logs", "control-plane.log"))
		case <-tick.C:
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
}
