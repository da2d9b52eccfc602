// Package controlplane runs a real Kubernetes control plane in the k2
// process: kube-apiserver, kube-controller-manager and kube-scheduler from
// k8s.io/kubernetes, on a datastore that is SQLite through kine by default.
//
// Start returns once /readyz answers ok; cancelling its context, or Stop,
// shuts the components down in order (controllers and scheduler, then the
// apiserver, then the datastore, so the SQLite WAL is checkpointed).
//
// The Kubernetes components keep process-wide state (feature gates, metrics,
// klog), so a process can start one control plane in its life; tests that
// restart a server run the k2 binary.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/dirlock"
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
}

// Server is a running control plane.
type Server struct {
	cfg      Config
	PKI      *pki.PKI
	URL      string // https://host:port for clients on this host
	ds       *datastore.Datastore
	lock     *dirlock.Lock
	rest     *rest.Config
	log      *slog.Logger
	apiStop  context.CancelFunc
	ctrlStop context.CancelFunc
	gcStop   context.CancelFunc
	apiDone  chan struct{}
	ctrlWG   sync.WaitGroup
	errc     chan error
	stopOnce sync.Once
	Timings  Timings
}

// Timings records how long start-up took, for benchmarks and logs.
type Timings struct {
	Datastore time.Duration
	Ready     time.Duration // Start called → /readyz ok
}

var started sync.Once

// ErrAlreadyStarted is returned by a second Start in one process.
var ErrAlreadyStarted = errors.New("a control plane was already started in this process")

// Start starts the control plane and returns when the apiserver is ready.
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
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lock: lock, log: log, apiDone: make(chan struct{}), errc: make(chan error, 4)}
	// An idle server keeps its heap near what is live; under load the
	// collector gets Go's default room (memtrim.GCPolicy). Start-up runs
	// under the idle target, which costs a few tenths of a second and leaves
	// ~30 MB fewer half-used heap spans behind for good.
	gcCtx, gcStop := context.WithCancel(context.WithoutCancel(ctx))
	s.gcStop = gcStop
	gc := memtrim.DefaultGCPolicy
	gc.Log, gc.Hold = log, 20*time.Second
	go gc.Run(gcCtx)
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()

	if err := applySeed(cfg.DataDir, cfg.Seed); err != nil {
		return nil, err
	}
	svcIP, err := firstIP(cfg.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr %s: %w", cfg.ServiceCIDR, err)
	}
	s.PKI, err = pki.Ensure(filepath.Join(cfg.DataDir, "pki"), pki.Options{SANs: append(cfg.TLSSANs, cfg.AdvertiseAddress), ServiceIP: svcIP})
	if err != nil {
		return nil, fmt.Errorf("preparing certificates: %w", err)
	}
	s.URL = "https://" + net.JoinHostPort(localHost(cfg.BindAddress), strconv.Itoa(cfg.Port))
	if err := s.writeKubeconfigs(); err != nil {
		return nil, err
	}

	td := time.Now()
	s.ds, err = datastore.Start(ctx, datastore.Config{DataDir: cfg.DataDir, Endpoint: cfg.DatastoreEndpoint, Logger: log})
	if err != nil {
		return nil, err
	}
	s.Timings.Datastore = time.Since(td)
	log.Debug("datastore ready", "servers", s.ds.EtcdServers, "took", s.Timings.Datastore)

	if err := setupComponentLogging(cfg); err != nil {
		return nil, err
	}
	apiCtx, apiStop := context.WithCancel(context.WithoutCancel(ctx))
	s.apiStop = apiStop
	go func() {
		defer close(s.apiDone)
		if err := runAPIServer(apiCtx, s.apiServerArgs()); err != nil && apiCtx.Err() == nil {
			s.errc <- fmt.Errorf("kube-apiserver: %w", err)
		}
	}()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	s.Timings.Ready = time.Since(t0)
	log.Info("apiserver ready", "url", s.URL, "took", s.Timings.Ready.Round(time.Millisecond))

	ctrlCtx, ctrlStop := context.WithCancel(context.WithoutCancel(ctx))
	s.ctrlStop = ctrlStop
	s.goComponent(ctrlCtx, "kube-controller-manager", func(ctx context.Context) error {
		return runControllerManager(ctx, s.controllerManagerArgs())
	})
	s.goComponent(ctrlCtx, "kube-scheduler", func(ctx context.Context) error {
		return runScheduler(ctx, s.schedulerArgs())
	})
	if cfg.JoinPort > 0 {
		s.goComponent(ctrlCtx, "join endpoint", func(ctx context.Context) error { return s.serveJoin(ctx, cfg.JoinPort) })
	}
	s.goComponent(ctrlCtx, "node-roles", func(ctx context.Context) error { return NodeRoleController(ctx, rest.CopyConfig(s.rest)) })
	s.goComponent(ctrlCtx, "node-rbac", func(ctx context.Context) error { return ensureNodeRBAC(ctx, rest.CopyConfig(s.rest)) })
	for name, c := range cfg.Controllers {
		c := c
		s.goComponent(ctrlCtx, name, func(ctx context.Context) error { return c(ctx, rest.CopyConfig(s.rest)) })
	}
	ok = true
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	// Hand back what start-up needed only briefly: the heap that building the
	// OpenAPI specs peaked at (Go's scavenger would take minutes) and the
	// pages of the k2 executable only start-up ran. Twice: the controller-
	// manager and scheduler finish starting in the seconds after ready.
	memtrim.After(ctrlCtx, log, 5*time.Second, 10*time.Second)
	return s, nil
}

func (s *Server) goComponent(ctx context.Context, name string, run func(context.Context) error) {
	s.ctrlWG.Add(1)
	go func() {
		defer s.ctrlWG.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			s.errc <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

// RESTConfig returns a copy of the admin client configuration.
func (s *Server) RESTConfig() *rest.Config { return rest.CopyConfig(s.rest) }

// AdminKubeconfigPath is where the admin kubeconfig was written.
func (s *Server) AdminKubeconfigPath() string { return filepath.Join(s.cfg.DataDir, AdminKubeconfig) }

// Err delivers the error of a component that stopped on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Done is closed once the apiserver has stopped.
func (s *Server) Done() <-chan struct{} { return s.apiDone }

// Stop shuts everything down in order and releases the data directory.
// It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.ctrlStop != nil {
			s.ctrlStop()
			waitTimeout(&s.ctrlWG, 10*time.Second)
		}
		if s.apiStop != nil {
			s.apiStop()
			select {
			case <-s.apiDone:
			case <-time.After(30 * time.Second):
				s.log.Warn("kube-apiserver did not stop within 30s")
			}
		}
		if s.ds != nil {
			s.ds.Stop()
		}
		if s.lock != nil {
			s.lock.Release()
		}
		if s.gcStop != nil {
			s.gcStop()
		}
		s.log.Info("control plane stopped")
	})
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
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
