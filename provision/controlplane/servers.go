package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/version"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state/backup"
	"k2.dev/k2/state/datastore"
)

// The servers of a cluster find each other through Leases in kube-system,
// one per server (k2-server-<name>), renewed by each every 10 s, carrying
// its API and join URLs: what GET /v1/servers answers agents with.
const (
	serverLeasePrefix   = "k2-server-"
	serverLabel         = "k2.dev/server"
	annotationAPIURL    = "k2.dev/api-url"
	annotationJoinURL   = "k2.dev/join-url"
	serverLeaseSeconds  = 40
	serverRenewInterval = 10 * time.Second
)

// apiURL and joinURL are where other machines reach this server.
func (s *Server) apiURL() string {
	return "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.Port))
}

func (s *Server) joinURL() string {
	return "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.JoinPort))
}

// serverRegistry is the component that keeps this server's Lease fresh.
type serverRegistry struct{ s *Server }

func (*serverRegistry) Name() string                { return "server-registry" }
func (*serverRegistry) Init(context.Context) error  { return nil }
func (*serverRegistry) Start(context.Context) error { return nil }
func (*serverRegistry) Stop(context.Context) error  { return nil }

func (r *serverRegistry) Run(ctx context.Context) error {
	s := r.s
	cs, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		return err
	}
	name := serverLeasePrefix + s.cfg.serverName()
	for {
		now := metav1.NewMicroTime(time.Now())
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem,
				Labels:      map[string]string{serverLabel: "true"},
				Annotations: map[string]string{annotationAPIURL: s.apiURL(), annotationJoinURL: s.joinURL()}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(s.cfg.serverName()), LeaseDurationSeconds: ptr.To(int32(serverLeaseSeconds)), RenewTime: &now},
		}
		leases := cs.CoordinationV1().Leases(metav1.NamespaceSystem)
		cur, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		case err == nil:
			cur.Labels, cur.Annotations, cur.Spec = lease.Labels, lease.Annotations, lease.Spec
			_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			s.log.Debug("renewing the server lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(serverRenewInterval):
		}
	}
}

// serverHooks answer the join endpoint's server routes (internal/join).
type serverHooks struct{ s *Server }

var _ join.ServerHooks = serverHooks{}

func (h serverHooks) Info(ctx context.Context) (*join.ServerInfo, error) {
	s := h.s
	info := &join.ServerInfo{Name: s.cfg.serverName(), APIURL: s.apiURL(), JoinURL: s.joinURL(), Datastore: s.ds.Mode, Leading: s.Leading()}
	if s.ds.Mode == datastore.ModeExternal {
		info.Endpoint = datastore.Redact(s.cfg.DatastoreEndpoint)
	}
	if s.ds.Mode == datastore.ModeEtcd {
		st, err := s.ds.EtcdStatus(ctx)
		if err != nil {
			return nil, err
		}
		info.Healthy, info.Error = st.Healthy, st.Error
		e := &join.EtcdInfo{Member: st.Member, ID: st.ID, Leader: st.Leader, IsLeader: st.IsLeader, Learner: st.Learner, DBBytes: st.DBBytes, RaftIndex: st.RaftIndex}
		for _, m := range st.Members {
			e.Members = append(e.Members, join.EtcdMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, Learner: m.Learner, Leader: m.Leader, Started: m.Started})
		}
		info.Etcd = e
		return info, nil
	}
	// SQLite or external: healthy when the apiserver's own readiness, which
	// includes its datastore, is.
	if err := s.readyOnce(ctx); err != nil {
		info.Error = err.Error()
	} else {
		info.Healthy = true
	}
	return info, nil
}

// readyOnce asks the local apiserver's /readyz once.
func (s *Server) readyOnce(ctx context.Context) error {
	tr, err := rest.TransportFor(s.RESTConfig())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// Servers lists the servers whose leases are fresh, this one always.
func (h serverHooks) Servers(ctx context.Context) ([]join.ServerEndpoint, error) {
	s := h.s
	self := join.ServerEndpoint{Name: s.cfg.serverName(), APIURL: s.apiURL(), JoinURL: s.joinURL(), Seen: time.Now().UTC().Truncate(time.Second)}
	cs, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		return nil, err
	}
	list, err := cs.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: serverLabel + "=true"})
	if err != nil {
		return []join.ServerEndpoint{self}, nil // the datastore is away: this one at least
	}
	out := []join.ServerEndpoint{self}
	for _, l := range list.Items {
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == self.Name || l.Spec.RenewTime == nil {
			continue
		}
		if time.Since(l.Spec.RenewTime.Time) > 3*serverLeaseSeconds*time.Second {
			continue // gone for good, or renamed
		}
		out = append(out, join.ServerEndpoint{Name: *l.Spec.HolderIdentity, APIURL: l.Annotations[annotationAPIURL],
			JoinURL: l.Annotations[annotationJoinURL], Seen: l.Spec.RenewTime.UTC().Truncate(time.Second)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (h serverHooks) AddEtcdMember(ctx context.Context, req join.EtcdJoinRequest) (*join.EtcdJoin, error) {
	s := h.s
	if s.ds.Mode != datastore.ModeEtcd {
		return nil, fmt.Errorf("server %s runs %s, not an embedded etcd; move it into etcd first (k2 server --cluster-init): %w", s.cfg.serverName(), s.ds.Mode, join.ErrNotSupported)
	}
	ic, err := s.ds.AddMember(ctx, req.Name, req.PeerURL)
	if err != nil {
		return nil, err
	}
	cert, key, err := pki.EtcdCA(filepath.Join(s.cfg.DataDir, "pki"))
	if err != nil {
		return nil, err
	}
	return &join.EtcdJoin{InitialCluster: ic, CACert: string(cert), CAKey: string(key)}, nil
}

func (h serverHooks) RemoveEtcdMember(ctx context.Context, name string) error {
	if h.s.ds.Mode != datastore.ModeEtcd {
		return fmt.Errorf("server %s runs %s, not an embedded etcd: %w", h.s.cfg.serverName(), h.s.ds.Mode, join.ErrNotSupported)
	}
	return h.s.ds.RemoveMember(ctx, name)
}

func (h serverHooks) ClusterInit(_ context.Context, req join.ClusterInitRequest) error {
	switch h.s.ds.Mode {
	case datastore.ModeEtcd:
		return nil // there already
	case datastore.ModeExternal:
		return fmt.Errorf("server %s runs on an external datastore; it does not move into an embedded etcd: %w", h.s.cfg.serverName(), join.ErrNotSupported)
	}
	return h.s.requestClusterInit(req)
}

func (h serverHooks) Backup(ctx context.Context, w io.Writer) error {
	if h.s.ds.Mode == datastore.ModeExternal {
		return fmt.Errorf("server %s runs on an external datastore: back it up with that database's own tools: %w", h.s.cfg.serverName(), join.ErrNotSupported)
	}
	_, err := backup.Backup(ctx, h.s.cfg.DataDir, w, backup.Options{K2Version: version.Get().Version})
	return err
}

// awaitRestore is the component that, for a server started with
// AwaitRestore on a data directory without a datastore, serves PUT
// /v1/restore on the join port until an admin uploads a backup, and puts
// its datastore in place (the server's own seeded PKI and tokens stay);
// the datastore component then starts from it.
type awaitRestore struct{ s *Server }

func (*awaitRestore) Name() string               { return "await-restore" }
func (*awaitRestore) Init(context.Context) error { return nil }
func (*awaitRestore) Stop(context.Context) error { return nil }

func (a *awaitRestore) Start(ctx context.Context) error {
	s := a.s
	dir := s.cfg.DataDir
	if _, _, pending := datastore.PendingImport(dir); !s.cfg.AwaitRestore || pending || datastore.HasSQLite(dir) || datastore.HasEtcd(dir) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.PKI.Path(pki.ServingCert), s.PKI.Path(pki.ServingKey))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.JoinPort)))
	if err != nil {
		return fmt.Errorf("waiting for a backup: %w", err)
	}
	done := make(chan *backup.Manifest, 1)
	h := join.RestoreHandler(join.ServerConfig{CACert: s.PKI.CA, CAKey: s.PKI.CAKey, CAPEM: s.PKI.CAData, Logger: s.log},
		func(ctx context.Context, r io.Reader) error {
			m, err := backup.RestoreWith(ctx, r, dir, backup.RestoreOptions{DatastoreOnly: true, Locked: true})
			if err != nil {
				return err
			}
			select {
			case done <- m:
			default:
			}
			return nil
		})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	s.log.Info("waiting for a backup to restore", "addr", ln.Addr().String(), "route", "PUT "+join.RestorePath)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	select {
	case m := <-done:
		s.log.Info("restored a backup", "taken", m.Created, "from", m.Source, "datastore", m.Datastore, "bytes", m.DBBytes)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = errors.New("stopped")
		}
		return fmt.Errorf("waiting for a backup: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}
