package e2e

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// historyRow is the part of `k2 history -o json` the tests read.
type historyRow struct {
	ID             string            `json:"id"`
	Op             string            `json:"op"`
	ArtifactDigest string            `json:"artifactDigest"`
	Values         map[string]string `json:"values"`
	ValuesHash     string            `json:"valuesHash"`
	Actor          string            `json:"actor"`
	Source         string            `json:"source"`
	Result         string            `json:"result"`
}

func history(t *testing.T, home, env string) []historyRow {
	t.Helper()
	var h []historyRow
	if err := json.Unmarshal([]byte(mustK2(t, home, "history", env, "-o", "json").Stdout), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// wantHistory checks env's history, newest first, as "op digest source"
// (source "" for none).
func wantHistory(t *testing.T, home, env string, want ...[3]string) []historyRow {
	t.Helper()
	h := history(t, home, env)
	var got, exp []string
	for _, r := range h {
		got = append(got, r.Op+" "+short(r.ArtifactDigest)+" "+r.Source+" "+r.Result)
		if r.Actor != "e2e-tester" || !strings.HasPrefix(r.ValuesHash, "sha256:") {
			t.Errorf("%s history row %s lacks who or values hash: %+v", env, r.ID, r)
		}
	}
	for _, w := range want {
		exp = append(exp, w[0]+" "+short(w[1])+" "+w[2]+" succeeded")
	}
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Fatalf("history of %s:\n%s\nwant:\n%s", env, strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
	return h
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// envDiffRows returns `k2 env diff a b -o json` rows by field.
func envDiffRows(t *testing.T, home, a, b string) map[string][2]string {
	t.Helper()
	var d struct {
		Rows []struct{ Field, A, B string } `json:"rows"`
	}
	if err := json.Unmarshal([]byte(mustK2(t, home, "env", "diff", a, b, "-o", "json").Stdout), &d); err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, r := range d.Rows {
		out[r.Field] = [2]string{r.A, r.B}
	}
	return out
}

// wantEnvDiff checks fields of `k2 env diff a b`: each want is
// field → [a's value, b's value].
func wantEnvDiff(t *testing.T, home, a, b string, want map[string][2]string) {
	t.Helper()
	got := envDiffRows(t, home, a, b)
	for f, w := range want {
		if got[f] != w {
			t.Errorf("env diff %s %s: %s = %q, want %q", a, b, f, got[f], w)
		}
	}
}

// writeKeyPair writes a PKCS#8 private key and its PKIX public key.
func writeKeyPair(t *testing.T, dir, name string, ec bool) (priv, pub string) {
	t.Helper()
	var key any
	var pubKey any
	if ec {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, pubKey = k, k.Public()
	} else {
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, pubKey = k, p
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644)
	return priv, pub
}

// k2Registry is a running `k2 registry serve`.
type k2Registry struct {
	Addr string
	cmd  *exec.Cmd
	once sync.Once
	err  error
}

// Stop sends sig and waits for the registry to exit (once).
func (r *k2Registry) Stop(sig os.Signal) error {
	r.cmd.Process.Signal(sig)
	r.once.Do(func() { r.err = r.cmd.Wait() })
	return r.err
}

// startK2Registry runs `k2 registry serve` on a free port (a registry with
// the OCI referrers API, unlike Debian's docker-registry); it is killed
// when the test ends.
func startK2Registry(t *testing.T, home string) *k2Registry {
	t.Helper()
	cmd := exec.Command(k2Bin, "registry", "serve", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "K2_HOME="+home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &k2Registry{cmd: cmd}
	t.Cleanup(func() { r.Stop(os.Kill) })
	line := make([]byte, 64)
	n, err := stdout.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	r.Addr = strings.TrimSpace(string(line[:n]))
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Fatalf("registry serve printed %q", r.Addr)
	}
	return r
}

// simEnvWith creates env like simEnv, with extra `k2 env create` flags.
func simEnvWith(t *testing.T, home, env string, flags ...string) {
	t.Helper()
	cfg := filepath.Join(home, "local-sim.yaml")
	if err := os.WriteFile(cfg, []byte("network: host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, append([]string{"env", "create", env, "--provider", "local", "--provider-config", cfg}, flags...)...)
}

// refused runs a k2 command that a gate must refuse: exit 1, stderr
// naming each gate in gates.
func refused(t *testing.T, home string, gates []string, args ...string) string {
	t.Helper()
	r := k2(t, home, args...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "refused") {
		t.Fatalf("k2 %v: exit %d, want 1 and a refusal\nstdout:\n%s\nstderr:\n%s", args, r.Code, r.Stdout, r.Stderr)
	}
	for _, g := range gates {
		if !strings.Contains(r.Stderr, "gate "+g+":") {
			t.Errorf("k2 %v: the refusal does not name gate %s:\n%s", args, g, r.Stderr)
		}
	}
	return r.Stderr
}

// TestPromoteSignRollbackDrift walks one artifact through dev → staging →
// prod on the local provider (simulated pods, host network): signed with
// k2 sign, refused by a missing signature and by a health gate not held
// yet, promoted to prod through a second registry process (the copy carries
// the signature), then v2 to dev and staging, staging rolled back to v1,
// and a hand edit in staging found by k2 diff. history and env diff are
// checked at every step. The three clusters are shared by all assertions.
func TestPromoteSignRollbackDrift(t *testing.T) {
	t.Setenv("K2_ACTOR", "e2e-tester")
	home := t.TempDir()
	regA := startDockerRegistry(t) // no referrers API: the tag schema
	regB := startK2Registry(t, t.TempDir()).Addr
	keys := t.TempDir()
	priv, pub := writeKeyPair(t, keys, "release", false)
	_, otherPub := writeKeyPair(t, keys, "other", true)

	src := filepath.Join(t.TempDir(), "hello")
	copyTree(t, helloDir(t), src)
	k8sfile := filepath.Join(src, "K8sfile")
	b, _ := os.ReadFile(k8sfile)
	os.WriteFile(k8sfile, []byte(strings.Replace(string(b), "worker=2", "worker=1", 1)), 0o644)

	// v1: built and pushed, not signed yet.
	mustK2(t, home, "build", "-q", "-t", regA+"/e2e/hello:v1", src)
	v1ref := strings.TrimSpace(mustK2(t, home, "push", "-q", regA+"/e2e/hello:v1").Stdout)
	v1 := v1ref[strings.Index(v1ref, "@")+1:]
	if r := k2(t, home, "verify", v1ref, "--key", pub); r.Code != 1 || !strings.Contains(r.Stderr, "no signature") {
		t.Fatalf("verify of an unsigned artifact: exit %d\n%s", r.Code, r.Stderr)
	}

	const healthy = 8 * time.Second
	simEnvWith(t, home, "dev", "--registry", regA+"/e2e")
	simEnvWith(t, home, "staging", "--registry", regA+"/e2e")
	simEnvWith(t, home, "prod", "--registry", regB+"/prod", "--set", "replicas=1")
	mustK2(t, home, "env", "set", "staging", "--gate", "healthy="+healthy.String(), "--gate", "signed-by="+pub)
	mustK2(t, home, "env", "set", "prod", "--gate", "signed-by="+pub, "--gate", "approval")
	t.Cleanup(func() {
		for _, e := range []string{"dev", "staging", "prod"} {
			k2(t, home, "destroy", e, "--yes")
		}
	})

	start := time.Now()
	mustK2(t, home, "deploy", v1ref, "--env", "dev")
	t.Logf("deploy v1 to dev: %s", time.Since(start).Round(time.Millisecond))
	wantHistory(t, home, "dev", [3]string{"deploy", v1, ""})

	// Refused: no signature yet, and dev not healthy for long enough.
	refused(t, home, []string{"signed-by", "healthy"}, "promote", "--from", "dev", "--to", "staging")
	if h := history(t, home, "staging"); len(h) != 0 {
		t.Fatalf("a refused promotion changed staging's history: %+v", h)
	}
	mustK2(t, home, "sign", v1ref, "--key", priv)
	mustK2(t, home, "verify", v1ref, "--key", pub)
	if r := k2(t, home, "verify", v1ref, "--key", otherPub); r.Code != 1 || !strings.Contains(r.Stderr, "no valid signature") {
		t.Fatalf("verify with the wrong key: exit %d\n%s", r.Code, r.Stderr)
	}
	waitGates(t, home, "dev", "staging", 2*healthy+30*time.Second)

	start = time.Now()
	mustK2(t, home, "promote", "--from", "dev", "--to", "staging")
	t.Logf("promote v1 to staging: %s", time.Since(start).Round(time.Millisecond))
	stagingV1 := wantHistory(t, home, "staging", [3]string{"promote", v1, "dev"})[0]
	wantEnvDiff(t, home, "dev", "staging", map[string][2]string{
		"artifact": {v1, v1}, "value replicas": {"2", "2"}, "kubernetes": {"v1.37.2", "v1.37.2"}, "machines worker": {"1", "1"},
	})

	// prod: its own registry process and an approval gate.
	refused(t, home, []string{"approval"}, "promote", "--from", "staging", "--to", "prod")
	mustK2(t, home, "approve", "prod", v1, "--comment", "e2e")
	start = time.Now()
	mustK2(t, home, "promote", "--from", "staging", "--to", "prod")
	t.Logf("promote v1 to prod (copy to a second registry): %s", time.Since(start).Round(time.Millisecond))
	prodRef := regB + "/prod/hello@" + v1
	mustK2(t, home, "verify", prodRef, "--key", pub) // the copy carried the signature
	wantHistory(t, home, "prod", [3]string{"promote", v1, "staging"})
	wantEnvDiff(t, home, "staging", "prod", map[string][2]string{
		"artifact": {v1, v1}, "value replicas": {"2", "1"}, "registry": {regA + "/e2e", regB + "/prod"},
	})
	if got := kubectlEnv(t, home, "prod", "get", "app", "web", "-o", "jsonpath={.spec.replicas}"); got != "1" {
		t.Errorf("prod App replicas = %s, want prod's own value 1", got)
	}

	// v2: a changed ConfigMap, signed, upgraded on dev, promoted to staging.
	cm := filepath.Join(src, "manifests", "configmap.yaml")
	b, _ = os.ReadFile(cm)
	os.WriteFile(cm, []byte(strings.Replace(string(b), "hello from k2", "hello from v2", 1)), 0o644)
	mustK2(t, home, "build", "-q", "-t", regA+"/e2e/hello:v2", src)
	v2ref := strings.TrimSpace(mustK2(t, home, "push", "-q", regA+"/e2e/hello:v2").Stdout)
	v2 := v2ref[strings.Index(v2ref, "@")+1:]
	mustK2(t, home, "sign", v2ref, "--key", priv)
	mustK2(t, home, "upgrade", "dev", v2ref)
	wantHistory(t, home, "dev", [3]string{"upgrade", v2, ""}, [3]string{"deploy", v1, ""})
	waitGates(t, home, "dev", "staging", 2*healthy+30*time.Second)
	mustK2(t, home, "promote", "--from", "dev", "--to", "staging")
	wantHistory(t, home, "staging", [3]string{"promote", v2, "dev"}, [3]string{"promote", v1, "dev"})
	if got := kubectlEnv(t, home, "staging", "get", "configmap", "hello-config", "-o", "jsonpath={.data.message}"); got != "hello from v2" {
		t.Errorf("staging runs %q after promoting v2", got)
	}
	wantEnvDiff(t, home, "dev", "staging", map[string][2]string{"artifact": {v2, v2}})
	wantEnvDiff(t, home, "staging", "prod", map[string][2]string{"artifact": {v2, v1}})
	// prod's approval was for v1 only.
	refused(t, home, []string{"approval"}, "promote", "--from", "staging", "--to", "prod", "--dry-run")

	// Roll staging back to v1, with the values it had then.
	mustK2(t, home, "rollback", "staging", "--to", v1)
	h := wantHistory(t, home, "staging", [3]string{"rollback", v1, stagingV1.ID}, [3]string{"promote", v2, "dev"}, [3]string{"promote", v1, "dev"})
	if h[0].ValuesHash != stagingV1.ValuesHash {
		t.Errorf("rollback values %s, want those of %s: %s", h[0].ValuesHash, stagingV1.ID, stagingV1.ValuesHash)
	}
	if got := kubectlEnv(t, home, "staging", "get", "configmap", "hello-config", "-o", "jsonpath={.data.message}"); got != "hello from k2" {
		t.Errorf("staging runs %q after rolling back to v1", got)
	}
	wantEnvDiff(t, home, "staging", "prod", map[string][2]string{"artifact": {v1, v1}})
	wantEnvDiff(t, home, "dev", "staging", map[string][2]string{"artifact": {v2, v1}})

	// Drift: none after the rollback, then a hand edit.
	if r := k2(t, home, "diff", "staging"); r.Code != 0 {
		t.Fatalf("k2 diff staging right after the rollback: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	kubectlEnv(t, home, "staging", "patch", "configmap", "hello-config", "--type", "merge", "-p", `{"data":{"message":"edited by hand"}}`)
	r := k2(t, home, "diff", "staging", "-o", "json")
	if r.Code != 1 {
		t.Fatalf("k2 diff staging after a hand edit: exit %d, want 1\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	var drift struct {
		Digest      string `json:"digest"`
		Differences []struct {
			Layer, Change string
			Object        struct{ Kind, Name string }
			Fields        []struct {
				Path       string
				Live, Want any
			}
		} `json:"differences"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &drift); err != nil {
		t.Fatal(err)
	}
	if drift.Digest != v1 || len(drift.Differences) != 1 {
		t.Fatalf("drift = %s", r.Stdout)
	}
	d := drift.Differences[0]
	if d.Layer != "hello-manifests" || d.Change != "changed" || d.Object.Kind != "ConfigMap" || d.Object.Name != "hello-config" ||
		len(d.Fields) != 1 || d.Fields[0].Path != "data.message" || d.Fields[0].Live != "edited by hand" || d.Fields[0].Want != "hello from k2" {
		t.Errorf("drift = %s", r.Stdout)
	}
	if txt := k2(t, home, "diff", "staging"); !strings.Contains(txt.Stdout, "hello-manifests") || !strings.Contains(txt.Stdout, "kubectl-patch") {
		t.Errorf("k2 diff text names neither the layer nor who edited:\n%s", txt.Stdout)
	}
}

// waitGates waits until every gate of a promotion passes (its dry run
// exits 0), asking once a second.
func waitGates(t *testing.T, home, from, to string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := k2(t, home, "promote", "--from", from, "--to", to, "--dry-run")
		if r.Code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("promotion %s → %s still refused after %s:\n%s\n%s", from, to, timeout, r.Stdout, r.Stderr)
		}
		time.Sleep(time.Second)
	}
}
