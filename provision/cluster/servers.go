// Several servers: each control-plane machine runs `k2 server`, on one
// datastore — an etcd member embedded in each (the first initialises the
// cluster, the others join it through a server's join endpoint), or one
// external etcd, Postgres or MySQL for all.

package cluster

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/freeport"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/controlplane"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state"
)

// serverPorts are one server's ports. Every server gets its own, so that
// several can share one host (the local provider on the host network).
type serverPorts struct {
	API        int `json:"api"`
	Join       int `json:"join"`
	EtcdClient int `json:"etcdClient,omitempty"`
	EtcdPeer   int `json:"etcdPeer,omitempty"`
}

// Server is one server of an environment and where it answers.
type Server struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	Host    string `json:"host"`
	APIURL  string `json:"apiURL"`
	JoinURL string `json:"joinURL"`
	ports   serverPorts
}

// saveIdentity writes id to cluster.json.
func (c *run) saveIdentity(st *engine.State, id *identity) error {
	b, _ := json.MarshalIndent(id, "", "  ")
	return atomicfile.Write(filepath.Join(c.dir(st), "cluster.json"), b, 0o600)
}

// ports returns (allocating and recording them the first time) the ports
// of the server with control-plane index i; etcd ports too when etcd.
func (c *run) ports(ctx context.Context, st *engine.State, i int, etcd bool) (serverPorts, error) {
	id, err := c.load(ctx, st)
	if err != nil {
		return serverPorts{}, err
	}
	grown := false
	for len(id.Servers) <= i {
		id.Servers = append(id.Servers, serverPorts{})
		grown = true
	}
	before := id.Servers[i]
	p := &id.Servers[i]
	wellKnown := st.Plan != nil && usesMachineConfig(st.Plan.Bootstrap)
	switch {
	case p.API != 0:
	case i == 0:
		p.API, p.Join = id.Port, id.JoinPort
	case wellKnown:
		p.API, p.Join = machineconfig.DefaultPort, machineconfig.DefaultJoinPort
	default:
		p.API, _ = freeport.Get()
		p.Join, _ = freeport.Get()
	}
	if etcd && p.EtcdClient == 0 {
		p.EtcdClient, _ = freeport.Get()
		p.EtcdPeer, _ = freeport.Get()
		if wellKnown {
			p.EtcdClient, p.EtcdPeer = 2379, 2380
		}
	}
	if grown || *p != before {
		// Recorded before the server is asked for: a resumed deploy gives
		// it the same ports.
		if err := c.saveIdentity(st, id); err != nil {
			return serverPorts{}, err
		}
	}
	return *p, nil
}

// servers lists the environment's servers that have an address, by index.
func (c *run) servers(ctx context.Context, st *engine.State) ([]Server, error) {
	id, err := c.load(ctx, st)
	if err != nil {
		return nil, err
	}
	ms, err := st.Store.ListMachines(ctx, st.Env.Name)
	if err != nil {
		return nil, err
	}
	return serversOf(id, ms), nil
}

func serversOf(id *identity, ms []state.Machine) []Server {
	var out []Server
	for _, m := range ms {
		if m.Role != engine.RoleControlPlane || len(m.Addresses) == 0 || m.Addresses[0] == "" {
			continue
		}
		i := machineIndex(m.Name)
		p := serverPorts{API: id.Port, Join: id.JoinPort}
		if i < len(id.Servers) && id.Servers[i].API != 0 {
			p = id.Servers[i]
		} else if i > 0 {
			continue // not given ports yet: not started
		}
		h := m.Addresses[0]
		out = append(out, Server{Name: m.Name, Index: i, Host: h, ports: p,
			APIURL:  "https://" + net.JoinHostPort(h, strconv.Itoa(p.API)),
			JoinURL: "https://" + net.JoinHostPort(h, strconv.Itoa(p.Join))})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out
}

// machineIndex is the index at the end of <env>-<pool>-<index>.
func machineIndex(name string) int {
	i, err := strconv.Atoi(name[strings.LastIndex(name, "-")+1:])
	if err != nil {
		return 0
	}
	return i
}

// ServerList returns the servers of env as k2 deployed them (from its
// records on this host), in index order.
func ServerList(ctx context.Context, s *state.Store, home, env string) ([]Server, error) {
	b, err := os.ReadFile(filepath.Join(Dir(home, env), "cluster.json"))
	if err != nil {
		return nil, usererr.New(usererr.KindFailure, "environment %s has no cluster; deploy one with 'k2 deploy <ref> --env %s'", env, env)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, err
	}
	ms, err := s.ListMachines(ctx, env)
	if err != nil {
		return nil, err
	}
	return serversOf(&id, ms), nil
}

// AdminClient returns a client of the environment's join endpoints with
// the cluster admin certificate k2 keeps for env.
func AdminClient(home, env string) (*join.AdminClient, error) {
	dir := filepath.Join(Dir(home, env), "pki")
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	admin, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.AdminCert), filepath.Join(dir, pki.AdminKey))
	if err != nil {
		return nil, fmt.Errorf("reading the admin certificate: %w", err)
	}
	return join.NewAdminClient(caPEM, admin)
}

func (c *run) serverBootstrap(ctx context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
	if usesMachineConfig(st.Plan.Bootstrap) {
		if m.Index > 0 {
			return c.agentBootstrap(ctx, st, m) // a k2 OS control plane: one server
		}
		return c.machineConfig(ctx, st, m)
	}
	ds := st.Plan.Datastore
	p, err := c.ports(ctx, st, m.Index, ds.Kind == engine.DatastoreEtcd)
	if err != nil {
		return sdk.Bootstrap{}, err
	}
	seed, err := controlplane.MakeSeed(c.dir(st))
	if err != nil {
		return sdk.Bootstrap{}, err
	}
	// The server binds and advertises the machine's own address, which
	// the provider passes as K2_MACHINE_ADDRESS (see 'k2 server --help').
	cmd := []string{c.o.K2Binary, "server", "--name", m.Name,
		"--port", strconv.Itoa(p.API), "--join-port", strconv.Itoa(p.Join)}
	switch ds.Kind {
	case engine.DatastoreEtcd:
		cmd = append(cmd, "--etcd-client-port", strconv.Itoa(p.EtcdClient), "--etcd-peer-port", strconv.Itoa(p.EtcdPeer))
		if m.Index == 0 {
			cmd = append(cmd, "--cluster-init")
			break
		}
		servers, err := c.servers(ctx, st)
		if err != nil {
			return sdk.Bootstrap{}, err
		}
		var joins []string
		for _, s := range servers {
			if s.Name != m.Name {
				joins = append(joins, s.JoinURL)
			}
		}
		if len(joins) == 0 {
			return sdk.Bootstrap{}, fmt.Errorf("server %s has no running server to join", m.Name)
		}
		cmd = append(cmd, "--join-url", strings.Join(joins, ","))
	}
	env := map[string]string{SeedEnv: base64.StdEncoding.EncodeToString(seed)}
	if ds.Kind == engine.DatastoreExternal {
		// In the environment, not the command line: it may hold a
		// password, and a command line is visible to every user (ps).
		env[DatastoreEndpointEnv] = ds.Endpoint
	}
	if c.o.Restore != "" && m.Index == 0 {
		cmd = append(cmd, "--await-restore")
	}
	return sdk.Bootstrap{Method: sdk.BootstrapExec, Command: cmd, Env: env}, nil
}

// clusterInit moves a first server that runs SQLite into a new embedded
// etcd when the plan asks for etcd (k2 upgrade from control-plane=1 to 3):
// the server copies its objects into etcd and restarts as its first member.
func (c *run) clusterInit(ctx context.Context, st *engine.State) error {
	if st.Plan.Datastore.Kind != engine.DatastoreEtcd || usesMachineConfig(st.Plan.Bootstrap) {
		return nil
	}
	first, ac, err := c.firstServer(ctx, st)
	if err != nil {
		return err
	}
	info, err := waitInfo(ctx, ac, first.JoinURL, c.o.ReadyTimeout, nil)
	if err != nil {
		return err
	}
	id, err := c.load(ctx, st)
	if err != nil {
		return err
	}
	if info.Datastore == engine.DatastoreEtcd {
		if id.Datastore != engine.DatastoreEtcd {
			id.Datastore = engine.DatastoreEtcd
			return c.saveIdentity(st, id)
		}
		return nil
	}
	if info.Datastore != engine.DatastoreSQLite {
		return usererr.New(usererr.KindInvalid, "server %s runs on an external datastore; it cannot move into an embedded etcd", first.Name)
	}
	p, err := c.ports(ctx, st, 0, true)
	if err != nil {
		return err
	}
	st.Progress(first.Name, 10, "moving the SQLite datastore into a new embedded etcd (the server restarts)")
	if err := ac.ClusterInit(ctx, first.JoinURL, join.ClusterInitRequest{EtcdClientPort: p.EtcdClient, EtcdPeerPort: p.EtcdPeer}); err != nil {
		return err
	}
	info, err = waitInfo(ctx, ac, first.JoinURL, c.o.ReadyTimeout, func(i *join.ServerInfo) bool {
		return i.Datastore == engine.DatastoreEtcd && i.Healthy
	})
	if err != nil {
		return fmt.Errorf("waiting for server %s to run on etcd: %w", first.Name, err)
	}
	st.Progress(first.Name, 100, "server %s runs on an embedded etcd (member %s)", first.Name, info.Etcd.Member)
	id.Datastore = engine.DatastoreEtcd
	return c.saveIdentity(st, id)
}

// waitInfo polls a server's /v1/server until ok accepts it (nil: any
// answer) or timeout passes.
func waitInfo(ctx context.Context, ac *join.AdminClient, joinURL string, timeout time.Duration, ok func(*join.ServerInfo) bool) (*join.ServerInfo, error) {
	var info *join.ServerInfo
	var last error
	err := poll(ctx, timeout, 250*time.Millisecond, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		info, last = ac.Info(rctx, joinURL)
		return last == nil && (ok == nil || ok(info))
	})
	if err != nil {
		if last == nil && info != nil {
			b, _ := json.Marshal(info)
			last = fmt.Errorf("server says %s", b)
		}
		if last != nil {
			err = fmt.Errorf("%w (last: %w)", err, last)
		}
		return nil, err
	}
	return info, nil
}

// waitServers waits until every server answers /readyz and, on an embedded
// etcd, is a voting member, then records the kubeconfig naming them all.
func (c *run) waitServers(ctx context.Context, st *engine.State) error {
	servers, err := c.servers(ctx, st)
	if err != nil {
		return err
	}
	if len(servers) <= 1 && !st.Plan.Datastore.HA() {
		return nil
	}
	cfg, err := c.restConfig(ctx, st)
	if err != nil {
		return err
	}
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	ac, err := AdminClient(c.o.Home, st.Env.Name)
	if err != nil {
		return err
	}
	for _, s := range servers {
		last := "no answer"
		err := poll(ctx, c.o.ReadyTimeout, 200*time.Millisecond, func() bool {
			resp, err := hc.Get(s.APIURL + "/readyz")
			if err != nil {
				last = err.Error()
				return false
			}
			resp.Body.Close()
			last = resp.Status
			return resp.StatusCode == http.StatusOK
		})
		if err != nil {
			return fmt.Errorf("server %s at %s not ready after %s: %s; see its log (k2 status %s)", s.Name, s.APIURL, c.o.ReadyTimeout, last, st.Env.Name)
		}
		if st.Plan.Datastore.Kind == engine.DatastoreEtcd {
			if _, err := waitInfo(ctx, ac, s.JoinURL, c.o.ReadyTimeout, func(i *join.ServerInfo) bool {
				return i.Healthy && i.Etcd != nil && !i.Etcd.Learner
			}); err != nil {
				return fmt.Errorf("server %s did not become a voting etcd member: %w", s.Name, err)
			}
		}
		st.Progress(s.Name, 100, "server %s ready at %s", s.Name, s.APIURL)
	}
	return c.storeKubeconfig(ctx, st)
}

// storeKubeconfig writes the admin kubeconfig — the first server's address
// as the current context, a context per server beside — and keeps it,
// encrypted, in the state store.
func (c *run) storeKubeconfig(ctx context.Context, st *engine.State) error {
	servers, err := c.servers(ctx, st)
	if err != nil {
		return err
	}
	kc := KubeconfigPath(c.o.Home, st.Env.Name)
	if err := writeAdminKubeconfig(c.dir(st), kc, servers, ""); err != nil {
		return err
	}
	b, err := os.ReadFile(kc)
	if err != nil {
		return err
	}
	return st.Store.PutSecret(ctx, st.Env.Name, state.SecretKubeconfig, b)
}

// ErrNoSuchServer is returned when --server names no server of the
// environment.
var ErrNoSuchServer = errors.New("no such server")

// pickServer finds server by name, index or API URL ("" is the first).
func pickServer(servers []Server, server string) (Server, error) {
	if len(servers) == 0 {
		return Server{}, fmt.Errorf("the environment has no server with an address")
	}
	if server == "" {
		return servers[0], nil
	}
	var names []string
	for _, s := range servers {
		if s.Name == server || strconv.Itoa(s.Index) == server || s.APIURL == server {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Server{}, usererr.Wrap(usererr.KindUsage, fmt.Errorf("--server %s: %w", server, ErrNoSuchServer),
		"name one of "+strings.Join(names, ", ")+" (or its index)")
}

// writeAdminKubeconfig writes the admin kubeconfig of the cluster whose
// identity is in dir to path: current context the chosen server's (""
// the first), and one context per server named after it.
func writeAdminKubeconfig(dir, path string, servers []Server, server string) error {
	cur, err := pickServer(servers, server)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, "pki")
	ca, err := os.ReadFile(filepath.Join(p, pki.CACert))
	if err != nil {
		return err
	}
	extra := map[string]string{}
	if len(servers) > 1 {
		for _, s := range servers {
			extra[s.Name] = s.APIURL
		}
	}
	certData, err := os.ReadFile(filepath.Join(p, pki.AdminCert))
	if err != nil {
		return err
	}
	keyData, err := os.ReadFile(filepath.Join(p, pki.AdminKey))
	if err != nil {
		return err
	}
	const user = "k2-admin"
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certData, ClientKeyData: keyData}
	cfg.Clusters["k2"] = &clientcmdapi.Cluster{Server: cur.APIURL, CertificateAuthorityData: ca}
	cfg.Contexts["k2"] = &clientcmdapi.Context{Cluster: "k2", AuthInfo: user}
	for name, url := range extra {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: ca}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	}
	cfg.CurrentContext = "k2"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// firstJoinURL is the first server's join endpoint.
func (c *run) firstJoinURL(ctx context.Context, st *engine.State, id *identity) string {
	if servers, err := c.servers(ctx, st); err == nil && len(servers) > 0 {
		return servers[0].JoinURL
	}
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(id.JoinPort))
}

// firstServer is the environment's first server and an admin client of
// the join endpoints, for the steps that talk to that server alone.
func (c *run) firstServer(ctx context.Context, st *engine.State) (Server, *join.AdminClient, error) {
	servers, err := c.servers(ctx, st)
	if err != nil {
		return Server{}, nil, fmt.Errorf("finding the first server: %w", err)
	}
	if len(servers) == 0 {
		return Server{}, nil, errors.New("no server with an address yet")
	}
	ac, err := AdminClient(c.o.Home, st.Env.Name)
	if err != nil {
		return Server{}, nil, err
	}
	return servers[0], ac, nil
}

// restore hands the backup of Options.Restore to the first server, which
// waits for it ('k2 server --await-restore') before it starts; a server
// that already runs (a resumed k2 migrate) restored it before.
func (c *run) restore(ctx context.Context, st *engine.State) error {
	if c.o.Restore == "" {
		return nil
	}
	first, ac, err := c.firstServer(ctx, st)
	if err != nil {
		return err
	}
	fi, err := os.Stat(c.o.Restore)
	if err != nil {
		return err
	}
	var last error
	err = poll(ctx, c.o.ReadyTimeout, 250*time.Millisecond, func() bool {
		f, err := os.Open(c.o.Restore)
		if err != nil {
			last = err
			return false
		}
		defer f.Close()
		st.Progress(first.Name, 10, "restoring the cluster's state onto %s (%d bytes)", first.Name, fi.Size())
		if last = ac.Restore(ctx, first.JoinURL, f, fi.Size()); last == nil {
			return true
		}
		ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := ac.Info(ictx, first.JoinURL); err == nil {
			last = nil // it runs: restored by an earlier attempt
			return true
		}
		var op *net.OpError
		return !errors.As(last, &op) && !strings.Contains(last.Error(), "connection refused") && !strings.Contains(last.Error(), "EOF")
	})
	if err == nil && last != nil {
		err = last
	}
	if err != nil {
		if last != nil && !errors.Is(err, last) {
			err = fmt.Errorf("%w (last: %w)", err, last)
		}
		return fmt.Errorf("restoring onto server %s: %w", first.Name, err)
	}
	st.Progress(first.Name, 100, "state restored onto %s", first.Name)
	return nil
}

// Kubeconfig returns env's admin kubeconfig with server (a name, an index
// or an API URL; "" the first) as its current context and a context for
// each server: 'k2 kubeconfig ENV --server'.
func Kubeconfig(ctx context.Context, s *state.Store, home, env, server string) ([]byte, error) {
	servers, err := ServerList(ctx, s, home, env)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "k2-kubeconfig-*")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := writeAdminKubeconfig(Dir(home, env), tmp.Name(), servers, server); err != nil {
		return nil, err
	}
	return os.ReadFile(tmp.Name())
}

// CheckPlan refuses a plan the environment's running control plane cannot
// become: fewer servers than it has (an HA control plane does not go back
// to one), another kind of datastore than it runs (only SQLite may grow
// into an embedded etcd), or several servers booted by a machine config.
func CheckPlan(ctx context.Context, s *state.Store, home string, p *engine.Plan) error {
	if p.Datastore.HA() && usesMachineConfig(p.Bootstrap) {
		return usererr.New(usererr.KindInvalid, "MACHINES control-plane=%d: several servers on machines booted with %s (the k2 OS) are not supported yet; use control-plane=1 there, or a provider that runs commands (exec)",
			p.Datastore.Servers, p.Bootstrap)
	}
	b, err := os.ReadFile(filepath.Join(Dir(home, p.Env), "cluster.json"))
	if err != nil {
		return nil // nothing deployed: anything goes
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return err
	}
	ms, err := s.ListMachines(ctx, p.Env)
	if err != nil {
		return err
	}
	have := 0
	for _, m := range ms {
		if m.Role == engine.RoleControlPlane {
			have++
		}
	}
	if have == 0 {
		return nil
	}
	kind := id.Datastore
	if kind == "" {
		kind = engine.DatastoreSQLite
	}
	want := p.Datastore
	switch {
	case want.Servers < have && want.Servers == 1:
		return usererr.New(usererr.KindInvalid,
			"environment %s runs %d servers on %s; going back to one server is refused: the cluster's state lives in all of them and one server alone "+
				"would have no copy to fall back on. Keep MACHINES control-plane=%d, or move the cluster to a new environment with 'k2 migrate %s --to-env NEW'",
			p.Env, have, describeKind(kind), have, p.Env)
	case want.Servers < have:
		return usererr.New(usererr.KindInvalid,
			"environment %s runs %d servers; removing servers from a running control plane is not supported: keep MACHINES control-plane=%d (or move the cluster with 'k2 migrate')",
			p.Env, have, have)
	case kind == want.Kind:
		return nil
	case kind == engine.DatastoreSQLite && want.Kind == engine.DatastoreEtcd:
		return nil // the first server moves its objects into etcd (clusterInit)
	}
	return usererr.New(usererr.KindInvalid,
		"environment %s runs on %s; this deploy wants %s: a running cluster only grows from SQLite into an embedded etcd. "+
			"Keep datastore=%s, or move the cluster to a new environment with 'k2 migrate %s --to-env NEW' (its values may choose another datastore)",
		p.Env, describeKind(kind), describeKind(want.Kind), kind, p.Env)
}

func describeKind(k string) string {
	switch k {
	case engine.DatastoreEtcd:
		return "an embedded etcd"
	case engine.DatastoreExternal:
		return "an external datastore"
	}
	return "SQLite"
}

// ServerStatus is one server as `k2 status` shows it.
type ServerStatus struct {
	Name    string `json:"name"`
	APIURL  string `json:"apiURL"`
	JoinURL string `json:"joinURL"`
	// Datastore is sqlite, etcd or external; Role, on etcd, is leader,
	// follower or learner.
	Datastore string   `json:"datastore,omitempty"`
	Role      string   `json:"role,omitempty"`
	Member    string   `json:"member,omitempty"` // etcd member id
	DBBytes   int64    `json:"dbBytes,omitempty"`
	Healthy   bool     `json:"healthy"`
	Error     string   `json:"error,omitempty"`
	Leading   []string `json:"leading,omitempty"`
}

// serverStatuses asks every server of env about itself, at once, and
// returns their answers and the API URL of one that is healthy ("" none).
func serverStatuses(ctx context.Context, s *state.Store, home, env string) ([]ServerStatus, string) {
	servers, err := ServerList(ctx, s, home, env)
	if err != nil || len(servers) == 0 {
		return nil, ""
	}
	ac, err := AdminClient(home, env)
	if err != nil {
		return nil, ""
	}
	out := make([]ServerStatus, len(servers))
	done := make(chan int, len(servers))
	for i, sv := range servers {
		go func() {
			defer func() { done <- i }()
			ss := ServerStatus{Name: sv.Name, APIURL: sv.APIURL, JoinURL: sv.JoinURL}
			rctx, cancel := context.WithTimeout(ctx, 4*time.Second)
			defer cancel()
			info, err := ac.Info(rctx, sv.JoinURL)
			if err != nil {
				ss.Error = "unreachable: " + err.Error()
				out[i] = ss
				return
			}
			ss.Datastore, ss.Healthy, ss.Error, ss.Leading = info.Datastore, info.Healthy, info.Error, info.Leading
			if e := info.Etcd; e != nil {
				ss.Member, ss.DBBytes = e.ID, e.DBBytes
				switch {
				case e.Learner:
					ss.Role = "learner"
				case e.IsLeader:
					ss.Role = "leader"
				default:
					ss.Role = "follower"
				}
			}
			out[i] = ss
		}()
	}
	for range servers {
		<-done
	}
	for _, ss := range out {
		if ss.Healthy {
			return out, ss.APIURL
		}
	}
	return out, ""
}
