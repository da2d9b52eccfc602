package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/internal/ec2fake/ec2boot"
)

// awsArtifact is a cluster of one control plane and one worker whose only
// layer is a ConfigMap: the assertion is about machines and nodes, so no
// image has to be pulled.
func awsArtifact(t *testing.T) string {
	return writeFiles(t, map[string]string{
		"K8sfile":           "FROM k2/base:v1.37\nADD ./manifests\nMACHINES control-plane=1 worker=1 cpu=2 memory=2Gi\n",
		"manifests/cm.yaml": "kind: ConfigMap\nmetadata:\n  name: aws-e2e\n  namespace: default\ndata:\n  provider: aws\n",
	})
}

// awsFake is an EC2 fake on loopback whose instances boot as network
// namespaces running `k2 init` (ec2boot), reading their machine config
// from an IMDS endpoint inside their namespace.
type awsFake struct {
	fake *ec2fake.Server
	url  string
}

func startAWSFake(t *testing.T, home string) *awsFake {
	t.Helper()
	if why := ec2boot.Usable(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("the aws e2e needs network namespaces in CI: %s", why)
		}
		t.Skip(why)
	}
	b, err := ec2boot.New(ec2boot.Options{K2Binary: k2Bin, Dir: filepath.Join(home, "ec2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	fake := ec2fake.New(ec2fake.Options{SubnetCIDR: b.Subnet().String(), Booter: b, ConsistencyDelay: 300 * time.Millisecond,
		TerminateDelay: 300 * time.Millisecond})
	srv := httptest.NewServer(fake) // 127.0.0.1
	t.Cleanup(srv.Close)
	return &awsFake{fake: fake, url: srv.URL}
}

// awsSettings are the provider settings that reach the fake.
func (f *awsFake) settings() map[string]string {
	return map[string]string{"endpoint_url": f.url, "region": "us-east-1", "access_key_id": "AKIDK2E2E",
		"secret_access_key": "e2e-secret", "poll_interval": "200ms", "max_backoff": "500ms"}
}

func (f *awsFake) live() []ec2fake.InstanceInfo {
	var out []ec2fake.InstanceInfo
	for _, in := range f.fake.Instances() {
		if in.State == "pending" || in.State == "running" {
			out = append(out, in)
		}
	}
	return out
}

// TestAWSProviderEndToEnd: `k2 aws image import` registers a k2 OS AMI in
// the fake; `k2 deploy --provider aws` is SIGKILLed right after the fake
// launched the worker (before k2 heard back), `k2 resume` finishes it with
// no duplicate instance; the control plane and the worker — real `k2 init`
// processes in their own network namespaces that read their machine config
// from IMDS user-data and run k2 server and k2 agent with the kubelet
// runtime — are Ready in kubectl; `k2 destroy` leaves no instance and no
// security group.
func TestAWSProviderEndToEnd(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	home := t.TempDir()
	f := startAWSFake(t, home)
	set := f.settings()

	disk := filepath.Join(t.TempDir(), "k2-os.raw")
	img := make([]byte, 1<<20)
	img[510], img[511] = 0x55, 0xAA // a stand-in for 'k2 os build --format raw': ec2boot runs this host's k2
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"aws", "image", "import", disk, "--bucket", "k2-e2e", "--create-bucket", "--name", "k2-os-e2e"}
	for k, v := range set {
		args = append(args, "--set", k+"="+v)
	}
	ami := strings.TrimSpace(mustK2(t, home, args...).Stdout)
	if !strings.HasPrefix(ami, "ami-") {
		t.Fatalf("k2 aws image import printed %q", ami)
	}

	set["ami"] = ami
	cfg := map[string]any{"api_cidrs": []string{"127.0.0.0/8", "10.0.0.0/8"}}
	for k, v := range set {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(home, "aws.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, "build", "-t", "aws-e2e:v1", awsArtifact(t))
	mustK2(t, home, "env", "create", "awsdev", "--provider", "aws", "--provider-config", cfgFile)

	// SIGKILL k2 deploy the moment the fake has launched the worker, before
	// the answer reaches k2.
	t0 := time.Now()
	killed := deployKilledAtWorkerLaunch(t, home, f)
	if !killed {
		t.Fatalf("k2 deploy ended before it launched the worker:\n%s", consoles(home))
	}
	if r := k2(t, home, "resume", "awsdev"); r.Code != 0 {
		t.Fatalf("k2 resume: exit %d\n%s\nconsoles:\n%s", r.Code, r.Stderr, consoles(home))
	}
	t.Logf("deploy (killed once) + resume: %s", time.Since(t0).Round(time.Second))

	live := f.live()
	if len(live) != 2 {
		t.Fatalf("%d live instances after the resume, want 2: %+v", len(live), live)
	}
	roles := map[string]int{}
	for _, in := range live {
		roles[in.Tags["k2.dev/role"]]++
		if in.Tags["k2.dev/environment"] != "awsdev" || in.Tags["k2.dev/request-id"] == "" {
			t.Errorf("instance %s tags: %v", in.ID, in.Tags)
		}
	}
	if roles["control-plane"] != 1 || roles["worker"] != 1 {
		t.Errorf("roles of the live instances: %v", roles)
	}
	if n := len(f.fake.Instances()); n != 2 {
		t.Errorf("the fake launched %d instances in all, want 2 (a duplicate was made and removed?)", n)
	}

	nodes := kubectlEnv(t, home, "awsdev", "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}")
	for _, n := range []string{"awsdev-control-plane-0=True", "awsdev-worker-0=True"} {
		if !strings.Contains(nodes, n) {
			t.Errorf("kubectl get nodes: %q lacks %s", nodes, n)
		}
	}
	if got := kubectlEnv(t, home, "awsdev", "get", "configmap", "aws-e2e", "-o", "jsonpath={.data.provider}"); got != "aws" {
		t.Errorf("the artifact's ConfigMap: %q", got)
	}
	if sgs := f.fake.SecurityGroups(); len(sgs) != 1 || sgs[0].Name != "k2-awsdev" || sgs[0].Rules < 2 {
		t.Errorf("security groups: %+v", sgs)
	}

	mustK2(t, home, "destroy", "awsdev", "--yes")
	if live := f.live(); len(live) != 0 {
		t.Errorf("instances left after destroy: %+v", live)
	}
	if sgs := f.fake.SecurityGroups(); len(sgs) != 0 {
		t.Errorf("security groups left after destroy: %+v", sgs)
	}
}

// deployKilledAtWorkerLaunch runs k2 deploy and SIGKILLs it from the
// fake's hook on the worker's RunInstances, which runs after the instance
// exists and before the answer is written.
func deployKilledAtWorkerLaunch(t *testing.T, home string, f *awsFake) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k2Bin, "deploy", "aws-e2e:v1", "--env", "awsdev")
	cmd.Env = append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	var once sync.Once
	killed := false
	f.fake.OnCall(func(c ec2fake.Call) {
		if c.Action != "RunInstances" || c.Error != "" || !strings.Contains(c.Params.Encode(), "worker") {
			return
		}
		once.Do(func() {
			if cmd.Process != nil {
				killed = cmd.Process.Signal(syscall.SIGKILL) == nil
			}
		})
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	return killed
}

// consoles returns the tail of each fake instance's console.
func consoles(home string) string {
	var sb strings.Builder
	ents, _ := os.ReadDir(filepath.Join(home, "ec2"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(home, "ec2", e.Name(), "console.log"))
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		fmt.Fprintf(&sb, "== %s\n%s\n", e.Name(), b)
	}
	return sb.String()
}

// TestAWSNoCredentials: with no credentials anywhere, k2 deploy --provider
// aws fails within seconds with the provider's exit code, naming the
// sources it tried, and the fake (AWS_ENDPOINT_URL) got no call.
func TestAWSNoCredentials(t *testing.T) {
	home := t.TempDir()
	fake := ec2fake.New(ec2fake.Options{})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	mustK2(t, home, "build", "-t", "aws-e2e:v1", awsArtifact(t))
	t0 := time.Now()
	cmd := exec.Command(k2Bin, "deploy", "aws-e2e:v1", "--provider", "aws", "--env", "nocreds")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "K2_HOME=" + home, "NO_COLOR=1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1", "AWS_ENDPOINT_URL=" + srv.URL}
	out, err := cmd.CombinedOutput()
	took := time.Since(t0)
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if code != 4 {
		t.Fatalf("exit %d, want 4 (provider error):\n%s", code, out)
	}
	for _, want := range []string{"no AWS credentials found", "AWS_ACCESS_KEY_ID", "shared files", "web identity", "AWS_EC2_METADATA_DISABLED"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if took > 20*time.Second {
		t.Errorf("took %s to fail", took)
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("the fake got %d calls", n)
	}
	t.Logf("failed in %s", took.Round(time.Millisecond))
}

// TestAWSReal deploys 1 control plane + 1 worker to real AWS and destroys
// them. It runs only with K2_AWS_E2E=1 and credentials, and needs either
// K2_AWS_AMI (a k2 OS AMI) or K2_AWS_K2_URL (a k2 binary URL for the Debian
// cloud-init path); K2_AWS_CONFIG may name a provider config file to start
// from (region, subnet_id, api_cidrs...).
func TestAWSReal(t *testing.T) {
	switch {
	case os.Getenv("K2_AWS_E2E") != "1":
		t.Skip("real AWS: set K2_AWS_E2E=1 with credentials (and K2_AWS_AMI or K2_AWS_K2_URL) to run; costs money")
	case os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" && os.Getenv("K2_AWS_CONFIG") == "":
		t.Skip("real AWS: K2_AWS_E2E=1 but no credentials (AWS_ACCESS_KEY_ID or AWS_PROFILE)")
	case os.Getenv("K2_AWS_AMI") == "" && os.Getenv("K2_AWS_K2_URL") == "":
		t.Skip("real AWS: set K2_AWS_AMI (k2 OS AMI) or K2_AWS_K2_URL (k2 binary for cloud-init)")
	}
	home := t.TempDir()
	cfg := map[string]any{}
	if p := os.Getenv("K2_AWS_CONFIG"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil || json.Unmarshal(b, &cfg) != nil {
			t.Fatalf("K2_AWS_CONFIG %s must be a JSON object: %v", p, err)
		}
	}
	if ami := os.Getenv("K2_AWS_AMI"); ami != "" {
		cfg["ami"] = ami
	} else {
		cfg["os"], cfg["k2_url"] = "cloud-init", os.Getenv("K2_AWS_K2_URL")
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(home, "aws.json")
	os.WriteFile(cfgFile, b, 0o600)
	env := fmt.Sprintf("e2e-%d", time.Now().Unix()%100000)
	mustK2(t, home, "build", "-t", "aws-e2e:v1", awsArtifact(t))
	mustK2(t, home, "env", "create", env, "--provider", "aws", "--provider-config", cfgFile)
	t.Cleanup(func() { k2(t, home, "destroy", env, "--yes") })
	if r := k2(t, home, "deploy", "aws-e2e:v1", "--env", env, "--timeout", "15m"); r.Code != 0 {
		t.Fatalf("deploy to AWS: exit %d\n%s", r.Code, r.Stderr)
	}
	nodes := kubectlEnv(t, home, env, "get", "nodes")
	t.Logf("nodes:\n%s", nodes)
	mustK2(t, home, "destroy", env, "--yes")
}
