package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/imagetest"
)

// TestRealPodsClusterReach deploys 1 control plane + 2 kubelet workers with
// the local provider and checks what the upstream conformance suite found
// broken on such a cluster, sharing the cluster and its 3-minute wait:
//
//   - the server's machine never sends a pod or Service address out of its
//     default route (checked before anything else runs on the cluster);
//   - the apiserver reaches pods: a validating webhook served by a pod
//     rejects an object, an aggregated API served by a pod answers
//     `kubectl get`;
//   - an envFrom key that is not a C identifier (data-1) is set;
//   - the first log line of a running and of a completed pod on each node is
//     still printed by `kubectl logs` 3 minutes later (each kubelet's
//     garbage collection used to remove the other node's pod logs);
//   - the apiserver's and kubelets' feature gates are upstream 1.37's.
func TestRealPodsClusterReach(t *testing.T) {
	requireRealPods(t)
	reg := startDockerRegistry(t)
	image := imagetest.Push(t, imagetest.HTTPServerImage(t), reg+"/httpserver:v1")
	home := t.TempDir()
	cfg := filepath.Join(home, "local.yaml")
	// The nodes pull from the loopback registry by the provider's setting,
	// not because the artifact names it.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("network: netns\nruntime: kubelet\nforwardRegistries: [%q]\n", reg)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, "env", "create", "reach", "--provider", "local", "--provider-config", cfg)
	dir := writeFiles(t, map[string]string{"K8sfile": "FROM k2/base:v1.37\nMACHINES control-plane=1 worker=2\n"})
	mustK2(t, home, "build", "-q", "-t", "reach:v1", dir)
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(home, "clusters", "reach", "cluster.json")); err == nil {
			k2(t, home, "destroy", "reach", "--yes")
		}
	})
	start := time.Now()
	mustK2(t, home, "deploy", "reach:v1", "--env", "reach")
	t.Logf("deploy: %s", time.Since(start).Round(time.Millisecond))
	k := kubectlIn(t, home, "reach")

	nodes := checkServerRoutes(t, home, k)

	logPods := startLogPods(t, k, image, nodes)
	logsFrom := time.Now()

	t.Run("envFrom keys that are not identifiers", func(t *testing.T) { checkEnvFrom(t, k, image) })
	ca := serveFromPods(t, k, image)
	t.Run("validating webhook served by a pod", func(t *testing.T) { checkWebhook(t, k, ca) })
	t.Run("aggregated API served by a pod", func(t *testing.T) { checkAggregatedAPI(t, k, ca) })
	t.Run("feature gates are upstream's", func(t *testing.T) { checkFeatureGates(t, k, nodes) })

	// Every kubelet collects garbage once a minute: 3 minutes is three
	// chances to remove another node's pod logs.
	if wait := 3*time.Minute - time.Since(logsFrom); wait > 0 {
		t.Logf("waiting %s so that the kubelets collect garbage three times", wait.Round(time.Second))
		time.Sleep(wait)
	}
	t.Run("pod logs after 3 minutes", func(t *testing.T) { checkLogPods(t, home, k, logPods) })

	mustK2(t, home, "destroy", "reach", "--yes")
	checkNothingLeft(t, home, "reach")
}

// kubectl runs the machine's kubectl against one environment, with a
// discovery cache of its own (an aggregated API appears during the test).
type kubectl struct {
	kubeconfig, cache string
}

func kubectlIn(t *testing.T, home, env string) kubectl {
	return kubectl{kubeconfig: filepath.Join(home, "clusters", env, "admin.kubeconfig"), cache: t.TempDir()}
}

// run returns kubectl's stdout, or its error with stderr.
func (k kubectl) run(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
	}
	return string(out), err
}

func (k kubectl) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := k.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply applies manifests (YAML documents).
func (k kubectl) apply(t *testing.T, manifests ...string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(strings.Join(manifests, "\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	k.must(t, "apply", "-f", f)
}

type testNode struct{ name, ip, podCIDR string }

// checkServerRoutes asks the routing table of the control plane's machine
// (its network namespace) about an address in each node's pod range (via
// that node), an address of the pod range no node has and two Service
// addresses (no route): none may name the default gateway. The host's own
// table must hold none of the cluster's routes.
func checkServerRoutes(t *testing.T, home string, k kubectl) []testNode {
	t.Helper()
	var nodes []testNode
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ PodCIDR string }
			Status   struct {
				Addresses []struct{ Type, Address string }
			}
		}
	}
	if err := json.Unmarshal([]byte(k.must(t, "get", "nodes", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, n := range list.Items {
		tn := testNode{name: n.Metadata.Name, podCIDR: n.Spec.PodCIDR}
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				tn.ip = a.Address
			}
		}
		nodes = append(nodes, tn)
	}
	if len(nodes) != 2 {
		t.Fatalf("nodes %+v, want 2 workers", nodes)
	}
	ns := ""
	ents, _ := os.ReadDir(filepath.Join(home, "local", "machines"))
	for _, e := range ents {
		var r struct{ Role, NetNS string }
		b, _ := os.ReadFile(filepath.Join(home, "local", "machines", e.Name(), "machine.json"))
		if json.Unmarshal(b, &r) == nil && r.Role == "control-plane" {
			ns = r.NetNS
		}
	}
	if ns == "" {
		t.Fatal("the control plane's machine has no network namespace of its own: its routes would be the host's")
	}
	ip := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	def, err := ip("-4", "route", "show", "default")
	f := strings.Fields(def)
	if err != nil || len(f) < 3 || f[1] != "via" {
		t.Fatalf("no default route in %s (%v): %q", ns, err, def)
	}
	gw := f[2]
	check := func(addr, wantVia string) {
		t.Helper()
		out, err := ip("route", "get", addr)
		line, _, _ := strings.Cut(out, "\n")
		switch {
		case strings.Contains(" "+line+" ", " via "+gw+" "):
			t.Errorf("ip route get %s on the server's machine names the default gateway %s: %s", addr, gw, line)
		case wantVia != "" && !strings.Contains(" "+line+" ", " via "+wantVia+" "):
			t.Errorf("ip route get %s on the server's machine: %q (%v), want via node %s", addr, line, err, wantVia)
		case wantVia == "" && err == nil:
			t.Errorf("ip route get %s on the server's machine: %q, want no route (blackhole)", addr, line)
		}
	}
	for _, n := range nodes {
		p, err := netip.ParsePrefix(n.podCIDR)
		if err != nil {
			t.Fatalf("node %s pod CIDR %q: %v", n.name, n.podCIDR, err)
		}
		check(p.Addr().Next().Next().String(), n.ip)
	}
	check("10.42.254.7", "") // in the pod range, no node's
	svcIP := strings.TrimSpace(k.must(t, "get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"))
	check(svcIP, "")
	check("10.43.254.7", "")
	host, _ := exec.Command("ip", "-4", "route", "show").Output()
	for _, n := range nodes {
		if strings.Contains(string(host), " via "+n.ip+" ") {
			t.Errorf("the host's own routing table routes through node %s (%s):\n%s", n.name, n.ip, host)
		}
	}
	if t.Failed() {
		// No webhook or aggregated API may be registered: the apiserver's
		// calls would leave through the default route.
		t.FailNow()
	}
	return nodes
}

type logPod struct{ name, node, firstLine string }

// startLogPods starts, on each node, a pod that keeps running and one that
// prints a line and exits.
func startLogPods(t *testing.T, k kubectl, image string, nodes []testNode) []logPod {
	t.Helper()
	var pods []logPod
	var ms []string
	for i, n := range nodes {
		run := logPod{name: fmt.Sprintf("running-%d", i), node: n.name, firstLine: "listening on :8080 as running-" + fmt.Sprint(i)}
		done := logPod{name: fmt.Sprintf("completed-%d", i), node: n.name, firstLine: fmt.Sprintf("first line of completed-%d", i)}
		ms = append(ms, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: %s
  containers: [{name: c, image: %s}]`, run.name, n.name, image),
			fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: %s
  restartPolicy: Never
  containers: [{name: c, image: %s, args: [echo, %q]}]`, done.name, n.name, image, done.firstLine))
		pods = append(pods, run, done)
	}
	k.apply(t, ms...)
	for _, p := range pods {
		eventually(t, 2*time.Minute, "pod "+p.name+" to log its first line", func() error {
			out, err := k.run("logs", p.name)
			if err != nil || !strings.Contains(out, p.firstLine) {
				return fmt.Errorf("logs %q, %w", out, err)
			}
			return nil
		})
	}
	return pods
}

// checkLogPods: every log pod's first line is still there, and its logs
// live in its node's own pod log directory, not the host's /var/log/pods.
func checkLogPods(t *testing.T, home string, k kubectl, pods []logPod) {
	for _, p := range pods {
		out, err := k.run("logs", p.name)
		if err != nil || !strings.HasPrefix(out, p.firstLine) {
			t.Errorf("kubectl logs %s (on %s) after 3 minutes: %q, %v; want it to start with %q", p.name, p.node, out, err, p.firstLine)
		}
		uid := strings.TrimSpace(k.must(t, "get", "pod", p.name, "-o", "jsonpath={.metadata.uid}"))
		dirName := "default_" + p.name + "_" + uid
		if _, err := os.Stat(filepath.Join("/var/log/pods", dirName)); err == nil {
			t.Errorf("pod %s logs to the host's /var/log/pods, which every node's kubelet garbage-collects", p.name)
		}
		own := filepath.Join(home, "local", "machines", p.node, "data", "logs", "pods", dirName)
		if _, err := os.Stat(own); err != nil {
			t.Errorf("pod %s: no log directory in its node's data dir: %v", p.name, err)
		}
	}
}

// checkEnvFrom: a ConfigMap and a Secret with keys that are not C
// identifiers reach the container's environment (printed by the program
// itself, no shell in between), prefixes included.
func checkEnvFrom(t *testing.T, k kubectl, image string) {
	k.apply(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: env-names}
data: {data-1: value-1, DATA_2: value-2, "1-leading-digit": value-3}`,
		`apiVersion: v1
kind: Secret
metadata: {name: env-secret}
stringData: {secret-1: s-value-1}`,
		fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: env-names}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    args: [env]
    envFrom:
    - configMapRef: {name: env-names}
    - configMapRef: {name: env-names}
      prefix: p-
    - secretRef: {name: env-secret}`, image))
	var out string
	eventually(t, 2*time.Minute, "the env-names pod to print its environment", func() error {
		if phase := strings.TrimSpace(k.must(t, "get", "pod", "env-names", "-o", "jsonpath={.status.phase}")); phase != "Succeeded" {
			return fmt.Errorf("pod %s", phase)
		}
		out = k.must(t, "logs", "env-names")
		return nil
	})
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[l] = true
	}
	for _, want := range []string{"data-1=value-1", "DATA_2=value-2", "1-leading-digit=value-3", "p-data-1=value-1", "secret-1=s-value-1"} {
		if !lines[want] {
			t.Errorf("%s not in the container's environment:\n%s", want, out)
		}
	}
}

// serveFromPods runs the test server's webhook and aggregated API in pods
// behind Services, with a serving certificate from a CA made here, and
// returns the CA (PEM).
func serveFromPods(t *testing.T, k kubectl, image string) []byte {
	t.Helper()
	caPEM, certPEM, keyPEM := testCA(t, "webhook.reach-apis.svc", "apiservice.reach-apis.svc")
	var ms []string
	ms = append(ms, `apiVersion: v1
kind: Namespace
metadata: {name: reach-apis}`, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: serving, namespace: reach-apis}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}`, base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM)))
	for _, mode := range []string{"webhook", "apiservice"} {
		ms = append(ms, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: reach-apis, labels: {app: %[1]s}}
spec:
  containers:
  - name: c
    image: %[2]s
    args: [%[1]s]
    env: [{name: TLS_DIR, value: /tls}]
    ports: [{containerPort: 8443}]
    readinessProbe: {tcpSocket: {port: 8443}, periodSeconds: 1}
    volumeMounts: [{name: tls, mountPath: /tls}]
  volumes: [{name: tls, secret: {secretName: serving}}]`, mode, image), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: reach-apis}
spec:
  selector: {app: %[1]s}
  ports: [{port: 443, targetPort: 8443}]`, mode))
	}
	k.apply(t, ms...)
	k.must(t, "wait", "-n", "reach-apis", "--for=condition=Ready", "pod/webhook", "pod/apiservice", "--timeout=120s")
	return caPEM
}

func checkWebhook(t *testing.T, k kubectl, ca []byte) {
	k.apply(t, fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: reach-deny-forbidden}
webhooks:
- name: deny-forbidden.demo.k2.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  clientConfig:
    caBundle: %s
    service: {namespace: reach-apis, name: webhook, path: /validate, port: 443}`, base64.StdEncoding.EncodeToString(ca)))
	defer k.run("delete", "validatingwebhookconfiguration", "reach-deny-forbidden")
	// Allowed objects prove the webhook answers (with failurePolicy Fail an
	// unreachable webhook rejects them too); the denied one proves it is
	// the webhook that decides.
	eventually(t, 60*time.Second, "the webhook to allow a ConfigMap", func() error {
		_, err := k.run("create", "configmap", fmt.Sprintf("allowed-%d", time.Now().UnixNano()))
		return err
	})
	_, err := k.run("create", "configmap", "forbidden-one")
	if err == nil || !strings.Contains(err.Error(), "denied by the k2 test webhook") {
		t.Errorf("creating configmap forbidden-one: %v; want the webhook's denial", err)
	}
	if out, err := k.run("logs", "-n", "reach-apis", "webhook"); err != nil || !strings.Contains(out, "POST /validate") {
		t.Errorf("the webhook pod logged no call: %q %v", out, err)
	}
}

func checkAggregatedAPI(t *testing.T, k kubectl, ca []byte) {
	k.apply(t, fmt.Sprintf(`apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.demo.k2.dev}
spec:
  group: demo.k2.dev
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: %s
  service: {namespace: reach-apis, name: apiservice, port: 443}`, base64.StdEncoding.EncodeToString(ca)))
	defer k.run("delete", "apiservice", "v1.demo.k2.dev")
	eventually(t, 90*time.Second, "APIService v1.demo.k2.dev to be Available", func() error {
		out, _ := k.run("get", "apiservice", "v1.demo.k2.dev", "-o", `jsonpath={.status.conditions[?(@.type=="Available")]}`)
		if !strings.Contains(out, `"status":"True"`) {
			return fmt.Errorf("condition %s", out)
		}
		return nil
	})
	var out string
	eventually(t, 30*time.Second, "kubectl get greetings to answer", func() error {
		var err error
		out, err = k.run("get", "greetings")
		return err
	})
	if !strings.Contains(out, "hello-from-apiservice") {
		t.Errorf("kubectl get greetings: %q, want the object the pod serves", out)
	}
}

// checkFeatureGates compares the feature gates the apiserver and each
// kubelet report (kubernetes_feature_enabled) with upstream 1.37's
// defaults, as the Kubernetes code k2 embeds registers them.
func checkFeatureGates(t *testing.T, k kubectl, nodes []testNode) {
	want := upstreamGates()
	sources := map[string]string{"kube-apiserver": "/metrics"}
	for _, n := range nodes {
		sources["kubelet "+n.name] = "/api/v1/nodes/" + n.name + "/proxy/metrics"
	}
	for who, path := range sources {
		got := reportedGates(t, k.must(t, "get", "--raw", path))
		if len(got) < 50 {
			t.Errorf("%s reports %d feature gates; want the whole set", who, len(got))
		}
		for name, on := range got {
			if def, ok := want[name]; ok && def != on {
				t.Errorf("%s runs with feature gate %s=%v; upstream 1.37's default is %v", who, name, on, def)
			}
		}
	}
}

// reportedGates parses kubernetes_feature_enabled{name="X",stage="…"} 1.
func reportedGates(t *testing.T, metrics string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(metrics))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "kubernetes_feature_enabled{") {
			continue
		}
		_, rest, _ := strings.Cut(l, `name="`)
		name, _, _ := strings.Cut(rest, `"`)
		out[name] = strings.HasSuffix(l, " 1")
	}
	return out
}

// testCA makes a CA and a serving certificate for names, PEM-encoded.
func testCA(t *testing.T, names ...string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k2 e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
