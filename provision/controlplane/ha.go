package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state/datastore"
)

// Several servers of one cluster share its datastore: each runs a member of
// an embedded etcd (the first initialises the cluster with ClusterInit, the
// others join through a running server's join endpoint, presenting the
// cluster's admin certificate they were seeded with) or all use one
// external datastore. With more than one server possible — any etcd or
// external datastore — the controller-manager, the scheduler and k2's own
// controllers run under leader election, one server at a time.

// Etcd ports by default, as etcd's.
const (
	DefaultEtcdClientPort = 2379
	DefaultEtcdPeerPort   = 2380
)

// EtcdOptions make the server's datastore an embedded etcd member.
type EtcdOptions struct {
	// ClusterInit starts a new etcd cluster with this server as its first
	// member; a SQLite datastore in the data directory moves into it.
	ClusterInit bool
	// JoinURLs are join endpoints of running servers whose cluster this
	// server joins (tried in turn).
	JoinURLs []string
	// ClientPort (127.0.0.1) and PeerPort (the advertise address); 0 is
	// what the member used last, else 2379 and 2380.
	ClientPort, PeerPort int
}

// clusterInitFile in <data-dir>/db asks the next start to move the SQLite
// datastore into a new embedded etcd (join.ClusterInitRequest).
const clusterInitFile = "cluster-init.json"

// restartRequested is closed when the server must restart itself (to move
// into etcd); see Server.Restart.
type restartSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (r *restartSignal) fire() { r.once.Do(func() { close(r.ch) }) }

// Restart is closed when the server asks to be restarted (k2 server execs
// itself again): a SQLite server told to move into etcd (POST
// /v1/datastore/cluster-init) does so at its next start.
func (s *Server) Restart() <-chan struct{} { return s.restart.ch }

// serverName is the server's name: Config.Name, else the host name.
func (c *Config) serverName() string {
	if c.Name != "" {
		return c.Name
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "k2-server"
	}
	return strings.ToLower(h)
}

// datastoreConfig decides the server's datastore: an external endpoint if
// given; an embedded etcd if the data directory has one, or ClusterInit
// or join URLs ask for one (or an earlier request to move into etcd does);
// SQLite otherwise. For a server joining an etcd cluster it asks a running
// server to add it as a member.
func (s *Server) datastoreConfig(ctx context.Context) (datastore.Config, error) {
	cfg := s.cfg
	dc := datastore.Config{DataDir: cfg.DataDir, Endpoint: cfg.DatastoreEndpoint, Logger: s.log}
	if cfg.DatastoreEndpoint != "" {
		s.leaderElect = true
		return dc, nil
	}
	eo := EtcdOptions{}
	if cfg.Etcd != nil {
		eo = *cfg.Etcd
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "db", clusterInitFile)); err == nil && !datastore.HasEtcd(cfg.DataDir) {
		var req join.ClusterInitRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return dc, fmt.Errorf("reading %s: %w", clusterInitFile, err)
		}
		eo.ClusterInit, eo.ClientPort, eo.PeerPort = true, req.EtcdClientPort, req.EtcdPeerPort
	}
	if !eo.ClusterInit && len(eo.JoinURLs) == 0 && !datastore.HasEtcd(cfg.DataDir) {
		return dc, nil // SQLite
	}
	if eo.ClusterInit && len(eo.JoinURLs) > 0 {
		return dc, usererr.Usage("--cluster-init starts a new etcd cluster and --server/--join-url joins one: give one of them")
	}
	s.leaderElect = true
	last := lastMember(cfg.DataDir)
	if eo.ClientPort == 0 {
		eo.ClientPort = portOf(last.ClientURL, DefaultEtcdClientPort)
	}
	if eo.PeerPort == 0 {
		eo.PeerPort = portOf(last.PeerURL, DefaultEtcdPeerPort)
	}
	name := cfg.serverName()
	ec := &datastore.EtcdConfig{
		Name:          name,
		ClientURL:     "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(eo.ClientPort)),
		PeerURL:       "https://" + net.JoinHostPort(cfg.AdvertiseAddress, strconv.Itoa(eo.PeerPort)),
		ListenPeerURL: "https://" + net.JoinHostPort(cfg.BindAddress, strconv.Itoa(eo.PeerPort)),
		ClusterToken:  s.PKI.CAHash()[:16],
	}
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	if !datastore.HasEtcd(cfg.DataDir) && len(eo.JoinURLs) > 0 {
		j, err := s.joinEtcd(ctx, eo.JoinURLs, name, ec.PeerURL)
		if err != nil {
			return dc, err
		}
		if err := pki.SetEtcdCA(pkiDir, []byte(j.CACert), []byte(j.CAKey)); err != nil {
			return dc, err
		}
		ec.InitialCluster = j.InitialCluster
	}
	files, err := pki.EnsureEtcd(pkiDir, []string{cfg.AdvertiseAddress})
	if err != nil {
		return dc, err
	}
	ec.TLS = datastore.TLSFiles{CA: files.CA, ServerCert: files.ServerCert, ServerKey: files.ServerKey,
		PeerCert: files.PeerCert, PeerKey: files.PeerKey, ClientCert: files.ClientCert, ClientKey: files.ClientKey}
	dc.Etcd = ec
	return dc, nil
}

// lastMember is what the embedded etcd member of dataDir last ran with.
func lastMember(dataDir string) (m struct{ ClientURL, PeerURL string }) {
	if b, err := os.ReadFile(filepath.Join(dataDir, "db", datastore.EtcdMemberFile)); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

func portOf(u string, def int) int {
	if p, err := url.Parse(u); err == nil {
		if n, err := strconv.Atoi(p.Port()); err == nil {
			return n
		}
	}
	return def
}

// joinEtcd asks the servers at joinURLs, in turn, to add this server to
// their etcd cluster, retrying until one does: a server that is starting,
// or a cluster that still has a learner to promote, answer later.
func (s *Server) joinEtcd(ctx context.Context, joinURLs []string, name, peerURL string) (*join.EtcdJoin, error) {
	cert, err := tls.LoadX509KeyPair(s.PKI.Path(pki.AdminCert), s.PKI.Path(pki.AdminKey))
	if err != nil {
		return nil, fmt.Errorf("joining an etcd cluster needs the cluster's admin certificate (from k2 deploy's seed): %w", err)
	}
	ac, err := join.NewAdminClient(s.PKI.CAData, cert)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for i := 0; ; i++ {
		u := joinURLs[i%len(joinURLs)]
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		j, err := ac.AddEtcdMember(rctx, u, join.EtcdJoinRequest{Name: name, PeerURL: peerURL})
		cancel()
		if err == nil {
			s.log.Info("joined the etcd cluster", "via", u, "cluster", j.InitialCluster)
			return j, nil
		}
		if errors.Is(err, join.ErrImageDenied) {
			return nil, usererr.Wrap(usererr.KindFailure, err, "this server's admin certificate is not the cluster's: seed it with the cluster's identity (k2 deploy does)")
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("joining the etcd cluster through %s: %w", strings.Join(joinURLs, ", "), err)
		}
		s.log.Info("etcd cluster not joined yet; retrying", "via", u, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// leaderElected runs run while this server holds the Lease kube-system/name
// and only then, when the server runs with leader election; otherwise it
// just runs it. Losing the lease stops run (its context ends); the server
// then campaigns again, and runs it again when it wins.
func (s *Server) leaderElected(ctx context.Context, name string, run func(context.Context) error) error {
	if !s.leaderElect {
		s.setLeading(name, true)
		defer s.setLeading(name, false)
		return run(ctx)
	}
	cs, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		return err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	id := s.cfg.serverName() + "_" + hex.EncodeToString(suffix)
	for ctx.Err() == nil {
		lctx, cancel := context.WithCancel(ctx)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metaName(name),
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					s.log.Info("leading", "controller", name, "identity", id)
					s.setLeading(name, true)
					defer s.setLeading(name, false)
					if err := run(ctx); err != nil && ctx.Err() == nil {
						s.log.Error("leader-elected controller stopped", "controller", name, "err", err)
					}
					cancel() // give the lease up: another server may do better
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			cancel()
			return err
		}
		le.Run(lctx)
		cancel()
		if ctx.Err() == nil {
			s.log.Warn("not leading any more; campaigning again", "controller", name)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func (s *Server) setLeading(name string, on bool) {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	if s.leading == nil {
		s.leading = map[string]bool{}
	}
	if on {
		s.leading[name] = true
	} else {
		delete(s.leading, name)
	}
}

// Leading lists the leader-elected controllers this server runs now.
func (s *Server) Leading() []string {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	var out []string
	for n := range s.leading {
		out = append(out, n)
	}
	sortStrings(out)
	return out
}

// requestClusterInit records that the next start moves the SQLite datastore
// into a new embedded etcd on these ports, and asks for a restart.
func (s *Server) requestClusterInit(req join.ClusterInitRequest) error {
	if req.EtcdClientPort == 0 {
		req.EtcdClientPort = DefaultEtcdClientPort
	}
	if req.EtcdPeerPort == 0 {
		req.EtcdPeerPort = DefaultEtcdPeerPort
	}
	b, _ := json.Marshal(req)
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, "db", clusterInitFile), b, 0o600); err != nil {
		return err
	}
	s.log.Info("moving into an embedded etcd: restarting", "etcdClientPort", req.EtcdClientPort, "etcdPeerPort", req.EtcdPeerPort)
	// After the answer is on its way.
	time.AfterFunc(500*time.Millisecond, s.restart.fire)
	return nil
}

func metaName(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem}
}

func sortStrings(s []string) { sort.Strings(s) }
