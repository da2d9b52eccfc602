package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/app"
	"k2.dev/k2/provision/controlplane"
)

// seedEnv carries a cluster identity (base64 of controlplane.MakeSeed) from
// 'k2 deploy' to a server machine; machineDataDirEnv is the data directory a
// provider gives the machine's k2 process (the local provider sets it).
const (
	seedEnv           = "K2_SERVER_SEED"
	machineDataDirEnv = "K2_AGENT_DATA_DIR"
	// machineAddressEnv is the machine's own address, set by providers; the
	// server binds and advertises it unless told otherwise.
	machineAddressEnv = "K2_MACHINE_ADDRESS"
	// clusterRoutesEnv sets the default of --cluster-routes.
	clusterRoutesEnv = "K2_SERVER_CLUSTER_ROUTES"
)

// clusterRoutesDefault is on for a server on a machine a provider made for
// it (a network namespace of the local provider, a VM): its routing table
// is the cluster's. A server someone starts on a shared host leaves the
// host's routes alone, and so does one on 127.0.0.1 (the local provider's
// host network, simulated pods).
func clusterRoutesDefault() bool {
	if v, err := strconv.ParseBool(os.Getenv(clusterRoutesEnv)); err == nil {
		return v
	}
	ip := net.ParseIP(os.Getenv(machineAddressEnv))
	return ip != nil && !ip.IsLoopback()
}

// serverFlags are k2 server's flags.
type serverFlags struct {
	cp        controlplane.Config
	debugAddr string
	// datastore is the external datastore's endpoint, which may hold a
	// password: a secret.
	datastore secretFlag
}

func newServerCmd(g *globals) *cobra.Command {
	o := serverFlags{datastore: secretFlag{name: "datastore-endpoint", env: "K2_DATASTORE_ENDPOINT", what: "datastore endpoint"}}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Kubernetes control plane on SQLite (no etcd needed)",
		Long: `Run kube-apiserver, kube-controller-manager and kube-scheduler in this
process, with SQLite (through kine) as the datastore. etcd, Postgres and MySQL
are optional: pass --datastore-endpoint.

Only stable APIs are served unless --allow-beta. The admin kubeconfig is
written to <data-dir>/admin.kubeconfig ('k2 kubeconfig' prints it); agents
join with a token from 'k2 token create'. Stop with Ctrl-C or SIGTERM: the
server shuts down cleanly and restarts on the same data directory with every
object kept.

Memory: idle, the server collects garbage eagerly (GOGC 25) and hands back
the parts of the k2 executable only start-up used (~200 MB resident idle);
under load it switches to Go's default GOGC 100. Set GOGC or GOMEMLIMIT to
choose yourself.`,
		Example: `  k2 server --data-dir /tmp/k2 --port 6443
  kubectl --kubeconfig /tmp/k2/admin.kubeconfig get ns
  k2 server --datastore-endpoint etcd://127.0.0.1:2379
  k2 server --datastore-endpoint-file /etc/k2/datastore   # postgres://k2:PASSWORD@db:5432/k2?sslmode=disable
  K2_DATASTORE_ENDPOINT='mysql://k2:PASSWORD@tcp(db:3306)/k2' k2 server`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd.Context(), g, &o) },
	}
	f := cmd.Flags()
	addDataDirFlag(cmd, &o.cp.DataDir)
	if d := os.Getenv(machineDataDirEnv); d != "" {
		// On a machine made by a provider, the provider names the data dir.
		f.Lookup("data-dir").DefValue = d
		o.cp.DataDir = d
	}
	o.datastore.register(f, "external datastore instead of SQLite in the data dir, in kine's forms: etcd://host:2379[,host:2379], "+
		"postgres://user[:pass]@host:5432/db?sslmode=disable, mysql://user[:pass]@tcp(host:3306)/db or mysql://user@unix(/path/mysqld.sock)/db; "+
		"the database is created if missing (k2 backup copies SQLite only: back up Postgres/MySQL with their own tools)")
	bind, adv := "0.0.0.0", ""
	if a := os.Getenv(machineAddressEnv); a != "" {
		bind, adv = a, a // a provider's machine: its own address only
	}
	f.StringVar(&o.cp.BindAddress, "bind-address", bind, "address the apiserver listens on (default $"+machineAddressEnv+" when a provider sets it)")
	f.BoolVar(&o.cp.ClusterRoutes, "cluster-routes", clusterRoutesDefault(), "make this machine's routes the cluster's: pod ranges through their nodes, a blackhole for the rest of the pod and service ranges, so webhooks and aggregated APIs served by pods work and no cluster address leaves through the default route (needs root; default on for a provider's machine with a non-loopback $"+machineAddressEnv+", $"+clusterRoutesEnv+" overrides)")
	f.StringVar(&o.cp.AdvertiseAddress, "advertise-address", adv, "address advertised to the cluster (default $"+machineAddressEnv+", else this host's first address)")
	f.IntVar(&o.cp.Port, "port", controlplane.DefaultPort, "apiserver HTTPS port")
	f.IntVar(&o.cp.JoinPort, "join-port", 6444, "HTTPS port where agents join with a token")
	f.StringSliceVar(&o.cp.TLSSANs, "tls-san", nil, "extra names or addresses for the serving certificate (repeatable)")
	f.BoolVar(&o.cp.AllowBeta, "allow-beta", false, "also serve beta APIs (alpha APIs are never served)")
	f.StringVar(&o.cp.ServiceCIDR, "service-cidr", controlplane.DefaultServiceCIDR, "Service IP range")
	f.StringVar(&o.cp.ClusterCIDR, "cluster-cidr", controlplane.DefaultClusterCIDR, "Pod IP range, split into per-node ranges")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve Go pprof profiles on this loopback address (e.g. 127.0.0.1:6060)")
	f.IntVar(&o.cp.Verbosity, "component-v", 0, "log verbosity of the Kubernetes components (their log: <data-dir>/logs/control-plane.log)")
	return cmd
}

// runServer starts the control plane and runs it until ctx ends or a
// component fails, then stops it.
func runServer(ctx context.Context, g *globals, o *serverFlags) error {
	var err error
	if o.cp.DatastoreEndpoint, err = o.datastore.resolve(); err != nil {
		return err
	}
	o.cp.Logger = g.logger()
	if seed := os.Getenv(seedEnv); seed != "" {
		b, err := base64.StdEncoding.DecodeString(seed)
		if err != nil {
			return usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", seedEnv, err), "it must be base64 of a seed made by k2 deploy")
		}
		o.cp.Seed = b
	}
	o.cp.Controllers = map[string]controlplane.Controller{
		"app-controller": func(ctx context.Context, cfg *rest.Config) error {
			if err := app.InstallCRD(ctx, cfg); err != nil {
				return fmt.Errorf("installing the App CRD: %w", err)
			}
			return app.RunController(ctx, cfg, o.cp.Logger.With("component", "app-controller"))
		},
	}
	stopCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	}
	debug := component.NewManager(o.cp.Logger)
	if o.debugAddr != "" {
		d, err := newDebugServer(o.debugAddr, o.cp.Logger)
		if err != nil {
			return err
		}
		debug.Add(d)
	}
	if err := debug.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := stopCtx()
		defer cancel()
		_ = debug.Stop(sctx)
	}()
	srv, err := controlplane.Start(ctx, o.cp)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "k2 server ready at %s (%s)\nkubeconfig: %s\n", srv.URL, srv.Timings.Ready.Round(1e6), srv.AdminKubeconfigPath())
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-srv.Err():
	case failed = <-debug.Err():
	}
	sctx, cancel := stopCtx()
	defer cancel()
	return errors.Join(failed, srv.Stop(sctx))
}
