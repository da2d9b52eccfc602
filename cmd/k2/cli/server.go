package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/join"
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
	// HA: --cluster-init, --server/--join-url, the etcd ports.
	clusterInit          bool
	servers, joinURLs    []string
	etcdClient, etcdPeer int
}

// etcdOptions turns the HA flags into the control plane's; nil when none
// is given (the data directory decides: SQLite, or the etcd member it has).
func (o *serverFlags) etcdOptions() (*controlplane.EtcdOptions, error) {
	joins := o.joinURLs
	if len(joins) == 0 {
		for _, s := range o.servers {
			u, err := join.DefaultJoinURL(s)
			if err != nil {
				return nil, usererr.Usage("--server: %v", err)
			}
			joins = append(joins, u)
		}
	}
	if !o.clusterInit && len(joins) == 0 && o.etcdClient == 0 && o.etcdPeer == 0 {
		return nil, nil
	}
	if o.cp.DatastoreEndpoint != "" {
		return nil, usererr.Usage("--datastore-endpoint and --cluster-init/--server/--join-url exclude each other: an external datastore is shared by every server already")
	}
	if o.clusterInit && len(joins) > 0 {
		return nil, usererr.Usage("--cluster-init starts a new etcd cluster; --server/--join-url join one: give one of them")
	}
	return &controlplane.EtcdOptions{ClusterInit: o.clusterInit, JoinURLs: joins, ClientPort: o.etcdClient, PeerPort: o.etcdPeer}, nil
}

func newServerCmd(g *globals) *cobra.Command {
	o := serverFlags{datastore: secretFlag{name: "datastore-endpoint", env: "K2_DATASTORE_ENDPOINT", what: "datastore endpoint"}}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Kubernetes control plane on SQLite (no etcd needed)",
		Long: `Run kube-apiserver, kube-controller-manager and kube-scheduler in this
process, with SQLite (through kine) as the datastore. etcd, Postgres and MySQL
are optional: pass --datastore-endpoint.

Several servers (high availability): --cluster-init starts an etcd member
inside this server as the first of a new etcd cluster — on a data directory
with a SQLite datastore it first moves every object into it, keeping the
SQLite file as db/state.db.migrated. Further servers join with --server
(another server's API URL; its join endpoint is port 6444 of that host
unless --join-url) and must carry the cluster's identity (k2 deploy seeds
them; by hand: copy the first server's pki/ directory). Each server runs an
etcd member: 3 servers survive the loss of one, 5 of two. Or give every
server the same --datastore-endpoint. With either, the controller-manager,
the scheduler and k2's controllers run on one server at a time (leader
election, leases in kube-system). A restarted server rejoins by itself.
` + "`k2 status ENV`" + ` shows each server's datastore role and health.

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
  K2_DATASTORE_ENDPOINT='mysql://k2:PASSWORD@tcp(db:3306)/k2' k2 server
  k2 server --name s1 --cluster-init                     # the first of 3 servers
  k2 server --name s2 --server https://10.0.0.1:6443     # the others (with s1's pki/)`,
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
		"the database is created if missing (k2 backup copies SQLite and the embedded etcd: back up Postgres/MySQL/etcd with their own tools)")
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
	f.StringVar(&o.cp.Name, "name", "", "this server's name among the cluster's servers and its etcd member's (default: the host name)")
	f.BoolVar(&o.clusterInit, "cluster-init", false, "start a new embedded etcd cluster with this server as its first member (a SQLite datastore here moves into it)")
	f.StringSliceVar(&o.servers, "server", nil, "join the embedded etcd cluster of this running server (its API URL; repeatable or comma-separated)")
	f.StringSliceVar(&o.joinURLs, "join-url", nil, "join endpoints of running servers to join through (default: each --server host on port 6444)")
	f.IntVar(&o.etcdClient, "etcd-client-port", 0, "embedded etcd's client port on 127.0.0.1 (default: the member's last, else 2379)")
	f.IntVar(&o.etcdPeer, "etcd-peer-port", 0, "embedded etcd's peer port on the advertise address (default: the member's last, else 2380)")
	f.BoolVar(&o.cp.AwaitRestore, "await-restore", false, "before the first start, wait for a backup uploaded to the join port (k2 migrate does it)")
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
	if o.cp.Etcd, err = o.etcdOptions(); err != nil {
		return err
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
	restart := false
	select {
	case <-ctx.Done():
	case failed = <-srv.Err():
	case failed = <-debug.Err():
	case <-srv.Restart():
		restart = true
	}
	sctx, cancel := stopCtx()
	defer cancel()
	if err := errors.Join(failed, srv.Stop(sctx)); err != nil || !restart {
		return err
	}
	// Asked to move into etcd: the Kubernetes components start once per
	// process, so the server runs itself again (same pid, same arguments
	// and environment, which providers watch; every socket is close-on-exec).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "k2 server restarting\n")
	return syscall.Exec(self, os.Args, os.Environ())
}
