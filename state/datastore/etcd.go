package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"

	"k2.dev/k2/internal/atomicfile"
)

// Datastore modes, as Datastore.Mode and status report them.
const (
	ModeSQLite   = "sqlite"   // kine over <data-dir>/db/state.db
	ModeEtcd     = "etcd"     // an etcd member embedded in this process
	ModeExternal = "external" // --datastore-endpoint: etcd, Postgres, MySQL
)

// Where the embedded etcd keeps its data and the file that describes it.
const (
	EtcdDir        = "etcd"      // <data-dir>/db/etcd
	EtcdMemberFile = "etcd.json" // <data-dir>/db/etcd.json
)

// EtcdConfig makes the datastore an etcd member embedded in the process
// (go.etcd.io/etcd/server/v3/embed), as k3s does: the first server
// initialises a cluster of one; the others join it with the InitialCluster
// the join endpoint answers. A member whose data directory already holds
// etcd data restarts as that member and ignores InitialCluster.
type EtcdConfig struct {
	// Name is the member's name, unique in the cluster (the machine name).
	Name string
	// ClientURL is where the local apiserver and k2's tools reach this
	// member: https://127.0.0.1:<port>.
	ClientURL string
	// PeerURL is advertised to the other members: https://<address>:<port>.
	PeerURL string
	// ListenPeerURL is what the peer port binds; default PeerURL.
	ListenPeerURL string
	// InitialCluster is empty to start a new cluster with this member
	// alone, or name=peerURL,… including this member to join a cluster
	// that already added it (as a learner: see AddMember).
	InitialCluster string
	// ClusterToken tells clusters apart at bootstrap; default "k2".
	ClusterToken string
	TLS          TLSFiles
}

// TLSFiles are the etcd PKI files (provision/pki.EnsureEtcd makes them).
type TLSFiles struct {
	CA         string `json:"ca"`
	ServerCert string `json:"serverCert"`
	ServerKey  string `json:"serverKey"`
	PeerCert   string `json:"peerCert"`
	PeerKey    string `json:"peerKey"`
	ClientCert string `json:"clientCert"`
	ClientKey  string `json:"clientKey"`
}

// memberFile is <data-dir>/db/etcd.json: how tools in other processes
// (k2 backup) reach the running member.
type memberFile struct {
	Name      string   `json:"name"`
	ClientURL string   `json:"clientURL"`
	PeerURL   string   `json:"peerURL"`
	TLS       TLSFiles `json:"tls"`
}

// HasEtcd reports whether dataDir holds an embedded etcd member's data: a
// server started on it runs etcd again, whatever its flags say.
func HasEtcd(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "db", EtcdDir, "member"))
	return err == nil
}

// HasSQLite reports whether dataDir holds a SQLite datastore.
func HasSQLite(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "db", DBFile))
	return err == nil
}

func (c *EtcdConfig) validate() error {
	if c.Name == "" || c.ClientURL == "" || c.PeerURL == "" {
		return errors.New("embedded etcd: Name, ClientURL and PeerURL are required")
	}
	for _, u := range []string{c.ClientURL, c.PeerURL, c.ListenPeerURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
			return fmt.Errorf("embedded etcd: %q is not an http(s)://host:port URL", u)
		}
	}
	return nil
}

func mustURLs(s string) []url.URL {
	u, _ := url.Parse(s)
	return []url.URL{*u}
}

// startEtcd starts the member and waits until it serves (which needs a
// quorum: a member restarting while most of its cluster is down waits,
// saying so every 10 s, until ctx ends).
func startEtcd(ctx context.Context, dataDir string, c EtcdConfig, log *slog.Logger) (*embed.Etcd, func(), error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(dataDir, "db", EtcdDir)
	restart := HasEtcd(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = dir
	cfg.ListenClientUrls = mustURLs(c.ClientURL)
	cfg.AdvertiseClientUrls = mustURLs(c.ClientURL)
	cfg.AdvertisePeerUrls = mustURLs(c.PeerURL)
	cfg.ListenPeerUrls = mustURLs(c.PeerURL)
	if c.ListenPeerURL != "" {
		cfg.ListenPeerUrls = mustURLs(c.ListenPeerURL)
	}
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.InitialCluster = c.Name + "=" + c.PeerURL
	if c.InitialCluster != "" && !restart {
		cfg.ClusterState = embed.ClusterStateFlagExisting
		cfg.InitialCluster = c.InitialCluster
	}
	cfg.InitialClusterToken = c.ClusterToken
	if cfg.InitialClusterToken == "" {
		cfg.InitialClusterToken = "k2"
	}
	if c.TLS.CA != "" { // without: plain http:// URLs, for tests
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.TLS.ServerCert, KeyFile: c.TLS.ServerKey, TrustedCAFile: c.TLS.CA, ClientCertAuth: true}
		cfg.PeerTLSInfo = transport.TLSInfo{CertFile: c.TLS.PeerCert, KeyFile: c.TLS.PeerKey, TrustedCAFile: c.TLS.CA, ClientCertAuth: true}
	}
	// The apiserver compacts every 5 minutes itself; etcd keeps the last
	// hour of revisions on top as a safety net, as kubeadm's clusters do.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.SnapshotCount = 10000
	cfg.MaxRequestBytes = 10 << 20
	cfg.QuotaBackendBytes = 4 << 30
	// Start-up on a quiet machine must not look like a dead leader.
	cfg.PreVote = true
	cfg.Metrics = "basic"
	logger, closeLog, err := etcdLogger(dataDir, log)
	if err != nil {
		return nil, nil, err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	cfg.Logger = "zap"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		closeLog()
		return nil, nil, fmt.Errorf("starting embedded etcd member %s (peer %s, client %s): %w", c.Name, c.PeerURL, c.ClientURL, err)
	}
	fail := func(err error) (*embed.Etcd, func(), error) {
		e.Close()
		closeLog()
		return nil, nil, err
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-e.Server.ReadyNotify():
			mf := memberFile{Name: c.Name, ClientURL: c.ClientURL, PeerURL: c.PeerURL, TLS: c.TLS}
			b, _ := json.MarshalIndent(mf, "", "  ")
			if err := atomicfile.Write(filepath.Join(dataDir, "db", EtcdMemberFile), b, 0o600); err != nil {
				return fail(err)
			}
			return e, closeLog, nil
		case err := <-e.Err():
			return fail(fmt.Errorf("embedded etcd member %s: %w", c.Name, err))
		case <-ctx.Done():
			return fail(fmt.Errorf("waiting for embedded etcd member %s: %w", c.Name, ctx.Err()))
		case <-tick.C:
			log.Warn("etcd member waiting for a quorum of its cluster; start more servers", "member", c.Name, "cluster", cfg.InitialCluster)
		}
	}
}

// Member is one member of the embedded etcd cluster.
type Member struct {
	ID        string   `json:"id"` // hex, as etcdctl prints it
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	ClientURL string   `json:"clientURL,omitempty"`
	Learner   bool     `json:"learner,omitempty"`
	Leader    bool     `json:"leader,omitempty"`
	// Started is false for a member added but not yet running.
	Started bool `json:"started"`
}

// ErrNotEtcd is returned by member operations on a datastore that is not
// an embedded etcd.
var ErrNotEtcd = errors.New("the datastore is not an embedded etcd")

// Members lists the etcd cluster's members, the leader marked.
func (d *Datastore) Members(ctx context.Context) ([]Member, error) {
	if d.etcd == nil {
		return nil, ErrNotEtcd
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := d.client.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	lead := uint64(d.etcd.Server.Leader())
	var out []Member
	for _, m := range resp.Members {
		mm := Member{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, PeerURLs: m.PeerURLs, Learner: m.IsLearner, Leader: m.ID == lead, Started: m.Name != ""}
		if len(m.ClientURLs) > 0 {
			mm.ClientURL = m.ClientURLs[0]
		}
		out = append(out, mm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddMember adds a member called name with peerURL to the cluster as a
// learner (it gets the data but no vote; this member's leader promotes it
// once it has caught up, so a new member that never starts cannot cost the
// cluster its quorum) and returns the initial-cluster string the new member
// starts with. A member of the same name or peer URL that exists already
// is what a machine that lost its disk left: it is removed first, unless
// it is running, which is an error.
func (d *Datastore) AddMember(ctx context.Context, name, peerURL string) (string, error) {
	if d.etcd == nil {
		return "", ErrNotEtcd
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	list, err := d.client.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("listing etcd members: %w", err)
	}
	for _, m := range list.Members {
		same := m.Name == name
		for _, u := range m.PeerURLs {
			same = same || u == peerURL
		}
		if !same {
			continue
		}
		if m.ID == uint64(d.etcd.Server.MemberID()) {
			return "", fmt.Errorf("member %s (%s) is this server itself; give the new server another name and address", m.Name, peerURL)
		}
		// The server asking joins only when it has no etcd data: a member
		// of its name is what it was before it lost its disk, and one of
		// its address without a name is an earlier attempt that never
		// started. Either is dead, and in the way.
		d.log.Info("removing the etcd member a re-created server left behind", "member", m.Name, "id", fmt.Sprintf("%x", m.ID), "peer", m.PeerURLs)
		if _, err := d.client.MemberRemove(ctx, m.ID); err != nil {
			return "", fmt.Errorf("removing stale etcd member %s: %w", m.Name, err)
		}
	}
	resp, err := d.client.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		return "", fmt.Errorf("adding etcd member %s: %w", name, err)
	}
	var parts []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			continue // another member added but never started
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	sort.Strings(parts)
	d.log.Info("added etcd member as learner", "member", name, "peer", peerURL, "id", fmt.Sprintf("%x", resp.Member.ID))
	return strings.Join(parts, ","), nil
}

// RemoveMember removes the member called name from the cluster; removing
// one that is not there is no error.
func (d *Datastore) RemoveMember(ctx context.Context, name string) error {
	if d.etcd == nil {
		return ErrNotEtcd
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	list, err := d.client.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("listing etcd members: %w", err)
	}
	for _, m := range list.Members {
		if m.Name != name {
			continue
		}
		if _, err := d.client.MemberRemove(ctx, m.ID); err != nil {
			return fmt.Errorf("removing etcd member %s: %w", name, err)
		}
		d.log.Info("removed etcd member", "member", name, "id", fmt.Sprintf("%x", m.ID))
	}
	return nil
}

// promoteLearners runs on every member: while this member leads, it
// promotes the learners that have caught up (etcd refuses the others).
func (d *Datastore) promoteLearners(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.etcd.Server.Leader() != d.etcd.Server.MemberID() {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := d.client.MemberList(lctx)
		if err == nil {
			for _, m := range list.Members {
				if !m.IsLearner || m.Name == "" {
					continue
				}
				if _, err := d.client.MemberPromote(lctx, m.ID); err != nil {
					d.log.Debug("etcd learner not promoted yet", "member", m.Name, "err", err)
					continue
				}
				d.log.Info("promoted etcd learner to voting member", "member", m.Name)
			}
		}
		cancel()
	}
}

// EtcdStatus is this member's view of the embedded etcd cluster.
type EtcdStatus struct {
	Member    string   `json:"member"`
	ID        string   `json:"id"`
	Leader    string   `json:"leader,omitempty"` // the leader's name
	IsLeader  bool     `json:"isLeader"`
	Learner   bool     `json:"learner,omitempty"`
	Healthy   bool     `json:"healthy"`
	Error     string   `json:"error,omitempty"`
	DBBytes   int64    `json:"dbBytes"`
	RaftIndex uint64   `json:"raftIndex"`
	Members   []Member `json:"members,omitempty"`
}

// EtcdStatus reports this member's role and health: healthy means a
// linearizable read went through the cluster within 3 seconds.
func (d *Datastore) EtcdStatus(ctx context.Context) (*EtcdStatus, error) {
	if d.etcd == nil {
		return nil, ErrNotEtcd
	}
	s := d.etcd.Server
	st := &EtcdStatus{Member: d.etcdName, ID: fmt.Sprintf("%x", uint64(s.MemberID())), IsLeader: s.Leader() == s.MemberID(), Learner: s.IsLearner()}
	st.RaftIndex = s.CommittedIndex()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := d.client.Get(rctx, "health"); err != nil {
		st.Error = err.Error()
	} else {
		st.Healthy = true
	}
	if ms, err := d.Members(ctx); err == nil {
		st.Members = ms
		for _, m := range ms {
			if m.Leader {
				st.Leader = m.Name
			}
		}
	}
	st.DBBytes = s.Backend().Size()
	return st, nil
}

// EtcdClient returns a client of the running embedded member (in process),
// or nil when the datastore is not an embedded etcd. Do not close it.
func (d *Datastore) EtcdClient() *clientv3.Client { return d.client }

// runEtcd starts the member and the datastore's etcd-side goroutines.
func (d *Datastore) runEtcd(ctx context.Context, cfg Config) error {
	e, closeLog, err := startEtcd(ctx, cfg.DataDir, *cfg.Etcd, d.log)
	if err != nil {
		return err
	}
	d.etcd, d.etcdName = e, cfg.Etcd.Name
	d.client = v3client.New(e.Server)
	d.EtcdServers = []string{cfg.Etcd.ClientURL}
	if cfg.Etcd.TLS.CA != "" {
		d.EtcdTLS = &cfg.Etcd.TLS
	}
	d.Mode = ModeEtcd
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.promoteLearners(pctx) }()
	go func() {
		defer d.wg.Done()
		select {
		case err := <-e.Err():
			if pctx.Err() == nil {
				d.log.Error("embedded etcd failed", "err", err)
			}
		case <-pctx.Done():
		}
	}()
	d.stopEtcd = func() {
		cancel()
		d.client.Close()
		e.Close() // hands leadership to another member first
		closeLog()
	}
	return nil
}

// DialEtcd connects to the embedded etcd member a server runs on dataDir
// from another process (k2 backup), with the member's client certificate.
func DialEtcd(dataDir string) (*clientv3.Client, string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "db", EtcdMemberFile))
	if err != nil {
		return nil, "", fmt.Errorf("no embedded etcd member described in %s: %w", dataDir, err)
	}
	var mf memberFile
	if err := json.Unmarshal(b, &mf); err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", EtcdMemberFile, err)
	}
	cc := clientv3.Config{Endpoints: []string{mf.ClientURL}, DialTimeout: 3 * time.Second, Logger: zapNop()}
	if mf.TLS.CA != "" {
		tlsInfo := transport.TLSInfo{CertFile: mf.TLS.ClientCert, KeyFile: mf.TLS.ClientKey, TrustedCAFile: mf.TLS.CA}
		if cc.TLS, err = tlsInfo.ClientConfig(); err != nil {
			return nil, "", fmt.Errorf("etcd client TLS: %w", err)
		}
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, "", err
	}
	return c, mf.ClientURL, nil
}
