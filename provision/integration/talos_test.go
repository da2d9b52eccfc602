package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// talosStandIn stands in for the metal provider booting Talos, which
// cannot run here (no Talos images, no servers): like it, it answers an OS
// talos Create with the cluster's admin kubeconfig — this test's control
// plane's — and the machine's node registers (a Ready Node named after the
// machine, as Talos's kubelet would make). Everything k2 does with that is
// real: the plan, the journal, keeping the kubeconfig, the wait for nodes
// and the layers applied through it.
type talosStandIn struct {
	mu         sync.Mutex
	kubeconfig []byte
	creates    []sdk.CreateRequest
}

func (p *talosStandIn) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "metal", Capabilities: sdk.Capabilities{
		Architectures: []string{"amd64"}, CustomSizes: true,
		BootstrapMethods: []string{sdk.BootstrapNetworkBoot}, OperatingSystems: []string{sdk.OSK2, sdk.OSTalos},
	}}, nil
}

func (p *talosStandIn) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	p.mu.Lock()
	p.creates = append(p.creates, *req)
	p.mu.Unlock()
	var out []sdk.Machine
	for _, m := range req.Machines {
		if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Labels: m.Labels}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		if err := setNodeReady(ctx, m.Name, nil); err != nil {
			return nil, err
		}
		out = append(out, sdk.Machine{ID: "metal-" + m.Name, Name: m.Name, RequestID: req.RequestID, State: sdk.StateRunning, Role: m.Role, Pool: m.Pool})
	}
	return &sdk.CreateResponse{Machines: out, Kubeconfig: p.kubeconfig}, nil
}

func (p *talosStandIn) Delete(_ context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	return &sdk.DeleteResponse{Deleted: req.MachineIDs}, nil
}

func (p *talosStandIn) List(context.Context, *sdk.ListRequest) (*sdk.ListResponse, error) {
	return &sdk.ListResponse{}, nil
}

// TestTalosDeploy: an OS talos artifact deploys through the engine's Talos
// path — every machine asked for with the artifact's OS, Talos version and
// Kubernetes version, the control plane first; no k2 server, agent or join
// token; the provider's kubeconfig kept (file and state store); the nodes
// waited for; the layers applied through it.
func TestTalosDeploy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k8s := "FROM k2/base:v1.37\nOS talos version=v1.10.6\nADD ./manifests as settings\nMACHINES control-plane=1 worker=1\n"
	if err := os.WriteFile(filepath.Join(dir, k8sfile.DefaultName), []byte(k8s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: talos-settings\n  namespace: default\ndata:\n  os: talos\n"
	if err := os.WriteFile(filepath.Join(dir, "manifests", "cm.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, err := k8sfile.ParseFile(filepath.Join(dir, k8sfile.DefaultName))
	if err != nil {
		t.Fatal(err)
	}
	store, err := artifact.OpenStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Build(ctx, f, artifact.BuildOptions{Store: store, Context: os.DirFS(dir), Ref: "talos:v1"}); err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Open(ctx, store, "talos:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := os.ReadFile(adminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	st, err := state.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	prov := &talosStandIn{kubeconfig: kc}
	const env = "talos16"
	res, err := engine.DeployArtifact(ctx, st, engine.ArtifactDeploy{
		Env: env, Provider: "metal", Artifact: a, Client: prov,
		Steps: cluster.Steps(cluster.Options{Home: home, K2Binary: "/nonexistent/k2", Provider: prov, Artifact: a}),
	})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	defer func() {
		for _, m := range res.Plan.Machines {
			_ = kube.CoreV1().Nodes().Delete(ctx, m.Name, metav1.DeleteOptions{})
		}
		_ = kube.CoreV1().ConfigMaps("default").Delete(ctx, "talos-settings", metav1.DeleteOptions{})
	}()
	if !res.Plan.ForeignOS() || res.Plan.Artifact.OSVersion != "v1.10.6" {
		t.Errorf("plan artifact %+v", res.Plan.Artifact)
	}
	var order []string
	for _, c := range prov.creates {
		b := c.Bootstrap
		if b.OS != sdk.OSTalos || b.OSVersion != "v1.10.6" || b.KubernetesVersion != a.Config.Kubernetes || b.Method != sdk.BootstrapNetworkBoot {
			t.Errorf("bootstrap %+v, want talos v1.10.6 with Kubernetes %s over network-boot", b, a.Config.Kubernetes)
		}
		if b.JoinToken != "" || b.ServerURL != "" || len(b.UserData) != 0 || len(b.Command) != 0 {
			t.Errorf("a Talos machine was given k2's join material: %+v", b)
		}
		order = append(order, c.Machines[0].Role)
	}
	if !slices.Equal(order, []string{"control-plane", "worker"}) {
		t.Errorf("creates %v, want the control plane, then the worker", order)
	}
	got, err := kube.CoreV1().ConfigMaps("default").Get(ctx, "talos-settings", metav1.GetOptions{})
	if err != nil || got.Data["os"] != "talos" {
		t.Errorf("the layer was not applied through the provider's kubeconfig: %v %v", err, got)
	}
	if b, err := os.ReadFile(cluster.KubeconfigPath(home, env)); err != nil || string(b) != string(kc) {
		t.Errorf("kept kubeconfig: %v (%d bytes)", err, len(b))
	}
	if b, err := st.GetSecret(ctx, env, state.SecretKubeconfig); err != nil || string(b) != string(kc) {
		t.Errorf("kubeconfig in the state store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cluster.Dir(home, env), "pki")); err == nil {
		t.Error("a k2 PKI was made for a Talos cluster")
	}
}
