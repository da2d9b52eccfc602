// Package controlplane runs a real Kubernetes control plane in the k2
// process: kube-apiserver, kube-controller-manager and kube-scheduler from
// k8s.io/kubernetes, on a datastore that is SQLite through kine by default.
//
// Start returns once /readyz answers ok; Stop shuts the components down in
// reverse order (controllers and scheduler, then the apiserver, then the
// datastore, so the SQLite WAL is checkpointed). Each part is a component
// (internal/component), one per file; Server lists them.
//
// The Kubernetes components keep process-wide state (feature gates, metrics,
// klog), so a process can start one control plane in its life; tests that
// restart a server run the k2 binary.
package controlplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/memtrim"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state/datastore"
)

// Defaults for Config's zero values.
const (
	DefaultPort        = 6443
	DefaultServiceCIDR = "10.43.0.0/16"
	DefaultClusterCIDR = "10.42.0.0/16"
	DefaultClusterDNS  = "10.43.0.10"
	AdminKubeconfig    = "admin.kubeconfig"
)

// Controller is extra control logic run in the server process once the
// apiserver is ready (the App controller, for one). It runs until ctx ends.
type Controller func(ctx context.Context, cfg *rest.Config) error

// Config configures a control plane. The zero value of each field is
// documented; DataDir is required.
type Config struct {
	DataDir           string   // PKI, kubeconfigs, SQLite database, logs
	DatastoreEndpoint string   // "" = SQLite in DataDir; etcd://, postgres://, mysql://
	BindAddress       string   // "" = 0.0.0.0
	AdvertiseAddress  string   // "" = the first non-loopback host address, else 127.0.0.1
	Port              int      // 0 = 6443
	JoinPort          int      // 0 = 6444; -1 = no join endpoint
	TLSSANs           []string // extra serving certificate names
	AllowBeta         bool     // serve beta APIs too (alpha never by default)
	ServiceCIDR       string   // "" = 10.43.0.0/16
	ClusterCIDR       string   // "" = 10.42.0.0/16 (per-node pod CIDRs)
	Verbosity         int      // klog -v for the components
	ComponentLog      io.Writer
	Logger            *slog.Logger // nil = discard
	Controllers       map[string]Controller
	// Seed is a cluster identity from MakeSeed, unpacked before the first
	// start; nil generates a new PKI.
	Seed []byte
	// ClusterRoutes makes this machine's routing table the cluster's: a
	// blackhole route for ClusterCIDR and ServiceCIDR before the apiserver
	// starts, and a route to each node's pod range through the node
	// (internal/noderoute), removed again on Stop. The apiserver reaches
	// webhooks and aggregated APIs served by pods at their endpoint
	// addresses, and no cluster address leaves through the default route.
	// For a machine that runs only this server (needs CAP_NET_ADMIN).
	ClusterRoutes bool
	// Name names the server among the cluster's servers (its etcd member,
	// its entry in the server list); "" = the host name.
	Name string
	// Etcd makes the datastore an embedded etcd member (ha.go); a data
	// directory that holds one runs it again without.
	Etcd *EtcdOptions
	// AwaitRestore: before its first start the server waits for a backup
	// to be uploaded to its join port (k2 migrate), then starts from it.
	AwaitRestore bool
}

// Server is a running control plane: the components below, run by a
// component.Manager in this order and stopped in reverse.
//
//	data-dir                 the data directory and its lock
//	gc-policy                the garbage collector's idle/busy target
//	pki                      cluster identity (seed), certificates, kubeconfigs
//	component-logs           klog and the components' logs to one file
//	datastore                kine on SQLite (or etcd, Postgres, MySQL)
//	cluster-routes           blackholes for the cluster's ranges (ClusterRoutes)
//	kube-apiserver           ready when /readyz answers ok
//	kube-controller-manager
//	kube-scheduler
//	join-server              agents join with a token (unless JoinPort < 0)
//	node-roles, node-rbac    k2's own small controllers
//	node-routes              routes to each node's pods (ClusterRoutes)
//	Config.Controllers       by name (the App controller in k2 server)
//	memtrim                  hands back start-up memory after ready
type Server struct {
	cfg     Config
	PKI     *pki.PKI
	URL     string // https://host:port for clients on this host
	Timings Timings
	rest    *rest.Config
	log     *slog.Logger
	m       *component.Manager
	t0      time.Time // Start called
	ds      *datastore.Datastore
	// leaderElect: controllers run under leader election (any datastore
	// several servers can share).
	leaderElect bool
	leadMu      sync.Mutex
	leading     map[string]bool
	restart     restartSignal
}

// Timings records how long start-up took, for benchmarks and logs.
type Timings struct {
	Datastore time.Duration
	Ready     time.Duration // Start called → /readyz ok
}

var started sync.Once

// ErrAlreadyStarted is returned by a second Start in one process.
var ErrAlreadyStarted = errors.New("a control plane was already started in this process")

// Start starts the control plane and returns when the apiserver is ready
// and the controllers are started. A component that fails to start is
// named in the error (a *component.Error), and what had started is
// stopped again. Call Stop to shut it down; ctx bounds the start only.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	first := false
	started.Do(func() { first = true })
	if !first {
		return nil, ErrAlreadyStarted
	}
	t0 := time.Now()
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, t0: t0, restart: restartSignal{ch: make(chan struct{})}}
	s.m = component.NewManager(log, s.components()...)
	if err := s.m.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// components lists the control plane's components in start order.
func (s *Server) components() []component.Component {
	cs := []component.Component{
		&dataDir{s: s},
		// An idle server keeps its heap near what is live; under load the
		// collector gets Go's default room (memtrim.GCPolicy). Start-up runs
		// under the idle target, which costs a few tenths of a second and
		// leaves ~30 MB fewer half-used heap spans behind for good.
		component.Func("gc-policy", func(ctx context.Context) error {
			gc := memtrim.DefaultGCPolicy
			gc.Log, gc.Hold = s.log, 20*time.Second
			gc.Run(ctx)
			return nil
		}),
		&identity{s: s},
		&componentLogs{s: s},
		&awaitRestore{s: s},
		&datastoreComponent{s: s},
	}
	if s.cfg.ClusterRoutes {
		cs = append(cs, &clusterRoutes{s: s})
	}
	cs = append(cs,
		&apiServer{s: s},
		&controllerManager{s: s},
		&scheduler{s: s},
	)
	if s.cfg.JoinPort > 0 {
		cs = append(cs, &joinServer{s: s, port: s.cfg.JoinPort}, &serverRegistry{s: s})
	}
	cs = append(cs,
		component.Func("node-roles", func(ctx context.Context) error {
			return s.leaderElected(ctx, "k2-node-roles", func(ctx context.Context) error { return NodeRoleController(ctx, rest.CopyConfig(s.rest)) })
		}),
		component.Func("node-rbac", func(ctx context.Context) error { return ensureNodeRBAC(ctx, rest.CopyConfig(s.rest)) }),
	)
	if s.cfg.ClusterRoutes {
		cs = append(cs, component.Func("node-routes", s.runNodeRoutes))
	}
	for _, name := range slices.Sorted(maps.Keys(s.cfg.Controllers)) {
		c := s.cfg.Controllers[name]
		cs = append(cs, component.Func(name, func(ctx context.Context) error {
			return s.leaderElected(ctx, "k2-"+name, func(ctx context.Context) error { return c(ctx, rest.CopyConfig(s.rest)) })
		}))
	}
	// Hand back what start-up needed only briefly: the heap that building
	// the OpenAPI specs peaked at (Go's scavenger would take minutes) and the
	// pages of the k2 executable only start-up ran. Twice: the controller-
	// manager and scheduler finish starting in the seconds after ready.
	return append(cs, component.Func("memtrim", func(ctx context.Context) error {
		memtrim.ReleaseAfter(ctx, s.log, 5*time.Second, 10*time.Second)
		return nil
	}))
}

// RESTConfig returns a copy of the admin client configuration.
func (s *Server) RESTConfig() *rest.Config { return rest.CopyConfig(s.rest) }

// AdminKubeconfigPath is where the admin kubeconfig was written.
func (s *Server) AdminKubeconfigPath() string { return filepath.Join(s.cfg.DataDir, AdminKubeconfig) }

// Err delivers the error of a component that failed while running (a
// *component.Error naming it).
func (s *Server) Err() <-chan error { return s.m.Err() }

// Stop shuts the components down in reverse order — controllers and
// scheduler, then the apiserver, then the datastore, so the SQLite WAL is
// checkpointed — and releases the data directory. A second Stop does
// nothing.
func (s *Server) Stop(ctx context.Context) error {
	err := s.m.Stop(ctx)
	s.log.Info("control plane stopped")
	return err
}

func (c *Config) defaults() error {
	if c.DataDir == "" {
		return errors.New("controlplane: DataDir is required")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.JoinPort == 0 {
		c.JoinPort = join.DefaultPort
	}
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.AdvertiseAddress == "" {
		c.AdvertiseAddress = hostAddress(c.BindAddress)
	}
	return nil
}

// hostAddress picks the address to advertise: the bind address if specific,
// else the first global unicast address of this host, else loopback.
func hostAddress(bind string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return bind
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// localHost is the address clients on this host use to reach bind.
func localHost(bind string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return bind
	}
	return "127.0.0.1"
}

func firstIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip, nil
}
