package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"k2.dev/k2/internal/testutil"
)

// TestServerWithKubectl drives `k2 server` with the real kubectl: namespaces,
// a stable-only API list, a workload whose Deployment gets a ReplicaSet and
// Pods from the in-process controllers, and a hand-made Node that gets those
// Pods bound by the in-process scheduler. A second server on the same data
// directory is refused, and a clean restart keeps every object.
func TestServerWithKubectl(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)

	ns := s.mustKubectl("get", "ns", "-o", "name")
	for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"} {
		if !strings.Contains(ns, want) {
			t.Errorf("kubectl get ns lacks %s:\n%s", want, ns)
		}
	}
	res := s.mustKubectl("api-resources", "--no-headers", "-o", "wide")
	if strings.Contains(res, "alpha") || strings.Contains(res, "beta") {
		t.Errorf("api-resources lists alpha/beta APIs by default:\n%s", res)
	}
	if !strings.Contains(res, "apps/v1") {
		t.Errorf("api-resources lacks apps/v1:\n%s", res)
	}

	s.applyWorkload(t, 30*time.Second)

	node := `{"apiVersion":"v1","kind":"Node","metadata":{"name":"hand-made"}}`
	nodeFile := filepath.Join(t.TempDir(), "node.json")
	os.WriteFile(nodeFile, []byte(node), 0o644)
	s.mustKubectl("create", "-f", nodeFile)
	now := time.Now().UTC().Format(time.RFC3339)
	s.mustKubectl("patch", "node", "hand-made", "--subresource=status", "--type=merge", "-p",
		`{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},`+
			`"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"made by hand","lastHeartbeatTime":"`+now+`","lastTransitionTime":"`+now+`"}]}}`)
	eventually(t, 60*time.Second, "scheduler binds both Pods to hand-made", func() error {
		out, err := s.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}")
		if err != nil {
			return err
		}
		if out != "hand-made hand-made" {
			return fmt.Errorf("nodeNames = %q", out)
		}
		return nil
	})

	if r := k2(t, t.TempDir(), "server", "--data-dir", dir, "--port", fmt.Sprint(testutil.FreePort(t)), "--join-port", fmt.Sprint(testutil.FreePort(t))); r.Code == 0 || !strings.Contains(r.Stderr, "in use by another k2") {
		t.Errorf("second server on the same data dir: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}

	s.Stop()
	if _, err := os.Stat(filepath.Join(dir, "db", "state.db-wal")); err == nil {
		if st, _ := os.Stat(filepath.Join(dir, "db", "state.db-wal")); st.Size() > 0 {
			t.Errorf("WAL not checkpointed on clean stop: %d bytes left", st.Size())
		}
	}
	s2 := startServer(t, dir)
	if out := s2.mustKubectl("get", "deploy,svc,cm", "-o", "name"); !strings.Contains(out, "deployment.apps/web") ||
		!strings.Contains(out, "service/web") || !strings.Contains(out, "configmap/web") {
		t.Errorf("after restart, objects are missing:\n%s", out)
	}
}

// writer creates ConfigMaps as fast as it can and remembers every create the
// server acknowledged.
type writer struct {
	mu    sync.Mutex
	acked map[string]bool
	n     atomic.Int64
}

func (w *writer) run(ctx context.Context, cs *kubernetes.Clientset, id int) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("w%d-%d", id, i)
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": fmt.Sprint(i)},
		}, metav1.CreateOptions{})
		if err == nil {
			w.mu.Lock()
			w.acked[name] = true
			w.mu.Unlock()
			w.n.Add(1)
		}
	}
}

func (w *writer) snapshot() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.acked))
	for k := range w.acked {
		out[k] = true
	}
	return out
}

func configMapNames(t *testing.T, cs *kubernetes.Clientset) map[string]bool {
	t.Helper()
	list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, cm := range list.Items {
		names[cm.Name] = true
	}
	return names
}

// TestBackupDuringWritesRestore takes `k2 backup` while 4 clients keep
// writing, restores it into a fresh data directory, starts a server there and
// finds every object acknowledged before the backup began.
func TestBackupDuringWritesRestore(t *testing.T) {
	s := startServer(t, t.TempDir())
	cs := s.Client()
	w := &writer{acked: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, cs, i) }()
	}
	time.Sleep(2 * time.Second)
	before := w.snapshot()
	file := filepath.Join(t.TempDir(), "backup.tar.gz")
	mustK2(t, t.TempDir(), "backup", "--data-dir", s.DataDir, "-o", file)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d creates acknowledged before the backup, %d in all", len(before), w.n.Load())
	if len(before) < 20 {
		t.Fatalf("only %d writes before the backup; the test needs writes in flight", len(before))
	}
	all := w.snapshot()
	s.Stop()

	restored := t.TempDir()
	mustK2(t, t.TempDir(), "restore", file, "--data-dir", restored)
	s2 := startServer(t, restored)
	got := configMapNames(t, s2.Client())
	missing := 0
	for name := range before {
		if !got[name] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d ConfigMaps acknowledged before the backup are missing after restore", missing, len(before))
	}
	for name := range got {
		if strings.HasPrefix(name, "w") && !all[name] {
			t.Errorf("restored ConfigMap %s was never acknowledged", name)
		}
	}
}

// TestSIGKILLKeepsAcknowledgedWrites kills `k2 server` with SIGKILL while
// clients write, restarts it on the same data directory and finds every
// write the server had acknowledged.
func TestSIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	cs := s.Client()
	w := &writer{acked: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, cs, i) }()
	}
	time.Sleep(3 * time.Second)
	s.Kill()
	cancel()
	wg.Wait()
	acked := w.snapshot()
	t.Logf("%d creates acknowledged before SIGKILL", len(acked))
	if len(acked) < 20 {
		t.Fatalf("only %d writes before the kill; the test needs writes in flight", len(acked))
	}
	s2 := startServer(t, dir)
	got := configMapNames(t, s2.Client())
	lost := 0
	for name := range acked {
		if !got[name] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost after SIGKILL and restart", lost, len(acked))
	}
}

// TestBackupPushRestore pushes a backup to Debian's docker-registry as an OCI
// artifact, restores it by reference into a fresh data directory and finds
// the object written before the backup.
func TestBackupPushRestore(t *testing.T) {
	reg := startDockerRegistry(t)
	s := startServer(t, t.TempDir())
	s.mustKubectl("create", "configmap", "before-backup", "--from-literal=k=v")
	home := t.TempDir()
	ref := reg + "/backups/k2:test"
	out := mustK2(t, home, "backup", "--data-dir", s.DataDir, "--push", ref).Stdout
	if !strings.Contains(out, "@sha256:") {
		t.Errorf("backup --push did not print a pinned reference: %s", out)
	}
	s.Stop()
	restored := t.TempDir()
	mustK2(t, t.TempDir(), "restore", ref, "--data-dir", restored)
	s2 := startServer(t, restored)
	if got := s2.mustKubectl("get", "configmap", "before-backup", "-o", "jsonpath={.data.k}"); got != "v" {
		t.Errorf("restored ConfigMap data = %q, want v", got)
	}
}
