package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/testutil"
)

// haK8sfile is an artifact whose control-plane size and datastore come
// from ARGs, with one App.
const haK8sfile = `FROM k2/base:v1.37
ARG cp=3
ARG datastore=
APP web image=nginx:1.27 port=80 replicas=2
MACHINES control-plane=${cp} worker=1 cpu=1 memory=1Gi datastore=${datastore}
`

// haStatus is the part of 'k2 status -o json' the HA tests read.
type haStatus struct {
	Healthy bool `json:"healthy"`
	Servers []struct {
		Name      string `json:"name"`
		APIURL    string `json:"apiURL"`
		JoinURL   string `json:"joinURL"`
		Datastore string `json:"datastore"`
		Role      string `json:"role"`
		Healthy   bool   `json:"healthy"`
		Error     string `json:"error"`
	} `json:"servers"`
	Nodes []struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	} `json:"nodes"`
	Apps []struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	} `json:"apps"`
	Problems []string `json:"problems"`
}

func getHAStatus(t testing.TB, home, env string) haStatus {
	t.Helper()
	r := k2(t, home, "status", env, "-o", "json")
	var st haStatus
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s\n%s", err, r.Stdout, r.Stderr)
	}
	return st
}

// haEnv builds the HA artifact into home and creates env on the host
// network with simulated pods (sim agents keep these tests light).
func haEnv(t testing.TB, home, env string) string {
	t.Helper()
	dir := writeFiles(t, map[string]string{"K8sfile": haK8sfile})
	mustK2(t, home, "build", "-t", "ha:v1", dir)
	simEnv(t, home, env)
	return "ha:v1"
}

// serverClient is a client of one server of env, by name, through the
// per-server context of the kubeconfig k2 keeps.
func serverClient(t testing.TB, home, env, server string) *kubernetes.Clientset {
	t.Helper()
	kc := filepath.Join(home, "clusters", env, "admin.kubeconfig")
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kc}, &clientcmd.ConfigOverrides{CurrentContext: server}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = -1, 0, 3*time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// failoverWriter creates ConfigMaps one after another, as a client behind a load
// balancer would: on an error it moves to the next server and tries again.
// It records every write the API acknowledged.
type failoverWriter struct {
	clients []*kubernetes.Clientset
	prefix  string
	mu      sync.Mutex
	acked   []string
	times   []time.Time
	errs    int
	stop    chan struct{}
	done    chan struct{}
}

func startFailoverWriter(clients []*kubernetes.Clientset, prefix string) *failoverWriter {
	w := &failoverWriter{clients: clients, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		c := 0
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			name := fmt.Sprintf("%s-%05d", w.prefix, i)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := w.clients[c%len(w.clients)].CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": strconv.Itoa(i)}}, metav1.CreateOptions{})
				cancel()
				if err == nil || strings.Contains(err.Error(), "already exists") {
					// "already exists": an earlier attempt went through
					// although its answer was lost; it counts.
					w.mu.Lock()
					w.acked = append(w.acked, name)
					w.times = append(w.times, time.Now())
					w.mu.Unlock()
					break
				}
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				c++
				select {
				case <-w.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

func (w *failoverWriter) Stop() []string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}

// firstAfter is the first acknowledged write at or after t.
func (w *failoverWriter) firstAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.times {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// killServer SIGKILLs the k2 server of machine name of the local provider
// (its supervisor starts it again a second later).
func killServer(t testing.TB, home, name string) {
	t.Helper()
	pid := machineChild(t, filepath.Join(home, "local", "machines", name))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing server %s (pid %d): %v", name, pid, err)
	}
}

// checkAcked asserts every acknowledged ConfigMap is there.
func checkAcked(t testing.TB, cs *kubernetes.Clientset, acked []string) {
	t.Helper()
	list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	var lost []string
	for _, n := range acked {
		if !have[n] {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost: %v", len(lost), len(acked), lost)
	}
}

// killLeaderAndWrite kills the server that leads the etcd cluster (or the
// first, on an external datastore) while a failoverWriter keeps writing through
// the others, asserts writes go through again within 10 s and none
// acknowledged is lost, and returns the killed server's name.
func killLeaderAndWrite(t testing.TB, home, env string) string {
	victim, _ := killLeaderAndWriteTimed(t, home, env)
	return victim
}

// killLeaderAndWriteTimed is killLeaderAndWrite, also returning the time
// from the kill to the next acknowledged write.
func killLeaderAndWriteTimed(t testing.TB, home, env string) (string, time.Duration) {
	t.Helper()
	st := getHAStatus(t, home, env)
	victim := st.Servers[0].Name
	for _, s := range st.Servers {
		if s.Role == "leader" {
			victim = s.Name
		}
	}
	var clients []*kubernetes.Clientset
	for _, s := range st.Servers {
		clients = append(clients, serverClient(t, home, env, s.Name))
	}
	w := startFailoverWriter(clients, "w-"+env)
	time.Sleep(2 * time.Second)
	killed := time.Now()
	killServer(t, home, victim)
	time.Sleep(12 * time.Second)
	acked := w.Stop()
	next, ok := w.firstAfter(killed)
	if !ok || next.Sub(killed) > 10*time.Second {
		t.Fatalf("no write went through within 10 s of killing %s (next at %v)", victim, next.Sub(killed))
	}
	t.Logf("killed %s: next write after %s; %d writes acknowledged, %d errors", victim, next.Sub(killed).Round(time.Millisecond), len(acked), w.errs)
	for _, s := range st.Servers {
		if s.Name != victim {
			checkAcked(t, serverClient(t, home, env, s.Name), acked)
			break
		}
	}
	return victim, next.Sub(killed)
}

// TestHAEmbeddedEtcd deploys control-plane=3 worker=1 on the local
// provider with an embedded etcd: kubectl works through each server;
// SIGKILL of the etcd leader's server leaves writes going through within
// 10 s and loses none acknowledged; the agent fails over; the killed
// server comes back (k2 deploy again starts its machine) and rejoins;
// k2 destroy leaves no process, machine or listening port.
func TestHAEmbeddedEtcd(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	ref := haEnv(t, home, "ha")
	mustK2(t, home, "deploy", ref, "--env", "ha")
	st := getHAStatus(t, home, "ha")
	leaders := 0
	for _, s := range st.Servers {
		if s.Datastore != "etcd" || !s.Healthy {
			t.Errorf("server %+v: want a healthy etcd member", s)
		}
		if s.Role == "leader" {
			leaders++
		}
	}
	if len(st.Servers) != 3 || leaders != 1 || len(st.Nodes) != 1 || !st.Healthy {
		t.Fatalf("status after deploy: %+v", st)
	}
	for _, s := range st.Servers {
		out := kubectlEnv(t, home, "ha", "--context", s.Name, "get", "nodes", "-o", "name")
		if !strings.Contains(out, "node/ha-worker-0") {
			t.Errorf("kubectl through %s: %q", s.Name, out)
		}
	}
	victim := killLeaderAndWrite(t, home, "ha")
	eventually(t, 30*time.Second, "the worker stays Ready through the remaining servers", func() error {
		st := getHAStatus(t, home, "ha")
		if len(st.Nodes) != 1 || !st.Nodes[0].Ready {
			return fmt.Errorf("nodes: %+v", st.Nodes)
		}
		return nil
	})
	agentLog, _ := os.ReadFile(filepath.Join(home, "local", "machines", "ha-worker-0", "agent.log"))
	if !strings.Contains(string(agentLog), "API server failover") && strings.HasSuffix(victim, "-0") {
		t.Errorf("the agent did not fail over from %s:\n%s", victim, agentLog)
	}

	// k2 deploy again brings the killed machine back; its member rejoins.
	mustK2(t, home, "deploy", ref, "--env", "ha")
	eventually(t, time.Minute, victim+" back as a healthy etcd member", func() error {
		for _, s := range getHAStatus(t, home, "ha").Servers {
			if s.Name == victim && (!s.Healthy || s.Role == "" || s.Role == "learner") {
				return fmt.Errorf("%+v", s)
			}
		}
		return nil
	})
	if out := kubectlEnv(t, home, "ha", "--context", victim, "get", "cm", "-o", "name"); !strings.Contains(out, "configmap/w-ha-") {
		t.Errorf("the rejoined server does not see the writes made while it was down: %q", out)
	}
	destroyAndCheck(t, home, "ha")
}

// destroyAndCheck destroys env and asserts nothing of it is left: no k2
// process, no machine directory, no listening port of any server.
func destroyAndCheck(t testing.TB, home, env string) {
	t.Helper()
	var ports []int
	b, err := os.ReadFile(filepath.Join(home, "clusters", env, "cluster.json"))
	if err == nil {
		var id struct {
			Port, JoinPort int
			Servers        []struct{ API, Join, EtcdClient, EtcdPeer int }
		}
		json.Unmarshal(b, &id)
		ports = append(ports, id.Port, id.JoinPort)
		for _, s := range id.Servers {
			ports = append(ports, s.API, s.Join, s.EtcdClient, s.EtcdPeer)
		}
	}
	mustK2(t, home, "destroy", env, "--yes")
	if p := k2Procs(t, home); len(p) > 0 {
		t.Errorf("processes left after destroy:\n%s", strings.Join(p, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "local", "machines")); len(ents) > 0 {
		t.Errorf("machine dirs left after destroy: %d", len(ents))
	}
	for _, p := range ports {
		if p != 0 && portOpen(p) {
			t.Errorf("port %d still listening after destroy", p)
		}
	}
}

// startEtcd runs Debian's etcd (3.4) on loopback for the test and returns
// its etcd:// endpoint; it skips the test when etcd is not installed.
func startEtcd(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed (Debian: apt-get install etcd-server)")
	}
	dir := t.TempDir()
	client, peer := testutil.FreePort(t), testutil.FreePort(t)
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:"+strconv.Itoa(client), "--advertise-client-urls", "http://127.0.0.1:"+strconv.Itoa(client),
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peer), "--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peer),
		"--initial-cluster", "default=http://127.0.0.1:"+strconv.Itoa(peer))
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=amd64")
	log := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, 30*time.Second, "etcd serving", func() error {
		if !portOpen(client) {
			return fmt.Errorf("not listening yet:\n%s", log.String())
		}
		return nil
	})
	return "etcd://127.0.0.1:" + strconv.Itoa(client)
}

// TestHAExternalEtcd deploys control-plane=3 worker=1 with every server on
// one external etcd (Debian's etcd-server 3.4): kubectl through each, one
// server killed while writing, nothing acknowledged lost, destroy cleans up.
func TestHAExternalEtcd(t *testing.T) {
	t.Parallel()
	ep := startEtcd(t)
	home := t.TempDir()
	ref := haEnv(t, home, "hx")
	mustK2(t, home, "deploy", ref, "--env", "hx", "--set", "datastore="+ep)
	st := getHAStatus(t, home, "hx")
	if len(st.Servers) != 3 || !st.Healthy {
		t.Fatalf("status after deploy: %+v", st)
	}
	for _, s := range st.Servers {
		if s.Datastore != "external" || !s.Healthy {
			t.Errorf("server %+v: want healthy on the external etcd", s)
		}
		if out := kubectlEnv(t, home, "hx", "--context", s.Name, "get", "nodes", "-o", "name"); !strings.Contains(out, "node/hx-worker-0") {
			t.Errorf("kubectl through %s: %q", s.Name, out)
		}
	}
	killLeaderAndWrite(t, home, "hx")
	destroyAndCheck(t, home, "hx")
}

// TestHAMigrateThenGrow moves a one-server SQLite cluster with an App and
// 100 ConfigMaps to a new environment (k2 migrate): every object is there,
// the App Ready, the old environment gone. Then it grows the new one from
// 1 server to 3 (k2 upgrade: SQLite moves into an embedded etcd, two
// servers join): every object still there, counted; going back to 1 is
// refused; killing a server leaves writes going through.
func TestHAMigrateThenGrow(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	ref := haEnv(t, home, "mig-a")
	mustK2(t, home, "deploy", ref, "--env", "mig-a", "--set", "cp=1")
	cs := serverClient(t, home, "mig-a", "k2")
	for i := range 100 {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data-%03d", i)}, Data: map[string]string{"i": strconv.Itoa(i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(env, ctx string) int {
		list, err := serverClient(t, home, env, ctx).CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Name, "data-") {
				n++
			}
		}
		return n
	}

	cfg := filepath.Join(home, "local-sim.yaml")
	r := mustK2(t, home, "migrate", "mig-a", "--to-env", "mig-b", "--provider", "local", "--provider-config", cfg, "--yes", "-o", "json")
	var mr struct {
		BackupRef string `json:"backupRef"`
		OldKept   bool   `json:"oldKept"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &mr); err != nil || mr.OldKept || !strings.Contains(mr.BackupRef, "@sha256:") {
		t.Fatalf("migrate -o json: %v\n%s", err, r.Stdout)
	}
	if n := count("mig-b", "k2"); n != 100 {
		t.Errorf("after migrate: %d ConfigMaps, want 100", n)
	}
	st := getHAStatus(t, home, "mig-b")
	if len(st.Apps) != 1 || !st.Apps[0].Ready || len(st.Nodes) != 1 || st.Nodes[0].Name != "mig-b-worker-0" {
		t.Errorf("mig-b after migrate: %+v", st)
	}
	if old := status(t, home, "mig-a"); len(old.Machines) != 0 {
		t.Errorf("mig-a still has machines: %+v", old.Machines)
	}
	for _, p := range k2Procs(t, home) {
		if strings.Contains(p, "mig-a-") {
			t.Errorf("a process of mig-a is left: %s", p)
		}
	}

	// Grow mig-b to three servers; shrinking back is refused.
	mustK2(t, home, "upgrade", "mig-b", ref, "--set", "cp=3")
	st = getHAStatus(t, home, "mig-b")
	if len(st.Servers) != 3 || !st.Healthy {
		t.Fatalf("after the upgrade to 3 servers: %+v", st)
	}
	for _, s := range st.Servers {
		if s.Datastore != "etcd" {
			t.Errorf("server %s runs %q, want etcd", s.Name, s.Datastore)
		}
		if n := count("mig-b", s.Name); n != 100 {
			t.Errorf("through %s after the upgrade: %d ConfigMaps, want 100", s.Name, n)
		}
	}
	r = k2(t, home, "upgrade", "mig-b", ref, "--set", "cp=1")
	if r.Code != 3 || !strings.Contains(r.Stderr, "going back to one server is refused") {
		t.Errorf("3 → 1: exit %d, want 3 with a reason:\n%s", r.Code, r.Stderr)
	}
	killLeaderAndWrite(t, home, "mig-b")
	destroyAndCheck(t, home, "mig-b")
}

// TestLeaderElectionRecampaign: a server that loses a controller's lease
// (another holder takes it) stops that controller and campaigns again; when
// the other holder goes, it leads again and the controller works — the
// controller-manager and scheduler run a second time in the same process.
func TestLeaderElectionRecampaign(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), "--cluster-init", "--name", "solo",
		"--etcd-client-port", strconv.Itoa(testutil.FreePort(t)), "--etcd-peer-port", strconv.Itoa(testutil.FreePort(t)))
	cs := s.Client()
	ctx := context.Background()
	leases := cs.CoordinationV1().Leases("kube-system")
	names := []string{"kube-controller-manager", "kube-scheduler"}
	holder := func(name string) string {
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	for _, n := range names {
		eventually(t, time.Minute, n+" led by the server", func() error {
			if h := holder(n); !strings.HasPrefix(h, "solo_") {
				return fmt.Errorf("holder %q", h)
			}
			return nil
		})
	}
	// Another holder takes both leases for 12 s (more than the 10 s renew deadline).
	for _, n := range names {
		l, err := leases.Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		thief, d := "thief", int32(12)
		l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime, l.Spec.LeaseDurationSeconds = &thief, &now, &now, &d
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "the server gives both up", func() error {
		if c := strings.Count(s.log.String(), "not leading any more"); c < 2 {
			return fmt.Errorf("%d of 2 lost", c)
		}
		return nil
	})
	for _, n := range names {
		eventually(t, time.Minute, n+" led by the server again", func() error {
			if h := holder(n); !strings.HasPrefix(h, "solo_") {
				return fmt.Errorf("holder %q", h)
			}
			return nil
		})
	}
	// The controller-manager of the second run makes a ReplicaSet.
	s.applyWorkload(t, time.Minute)
	if strings.Contains(s.log.String(), "leader-elected controller stopped") {
		t.Errorf("a controller failed when it ran again:\n%s", s.log.String())
	}
}
