package aws_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/providers/aws"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

func liveInstances(t *testing.T, p sdk.Provider, cfg sdk.Config) []sdk.Machine {
	t.Helper()
	l, err := p.List(context.Background(), &sdk.ListRequest{Config: cfg})
	if err != nil || l.Diagnostics.HasErrors() {
		t.Fatalf("List: %v %v", err, l.Diagnostics.Err())
	}
	return l.Machines
}

// TestThrottleAndLostResponse: EC2 throttles RunInstances twice, then
// launches the instance but the answer is lost. The SDK's retryer retries
// with the same client token, and exactly one instance exists.
func TestThrottleAndLostResponse(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{ConsistencyDelay: 50 * time.Millisecond}, map[string]any{"os": "k2", "ami": ""})
	_, cfg = withConfig(t, cfg, map[string]any{"ami": debianAMI(fake)})
	fake.Throttle("RunInstances", 2)
	fake.LoseResponses("RunInstances", 1)
	fake.Throttle("DescribeInstances", 1)
	p := providertest.Connect(t, aws.New)
	resp := create(t, p, cfg, cpRequest("req-throttle"))
	runs := fake.Calls("RunInstances")
	if len(runs) != 4 {
		t.Errorf("%d RunInstances calls, want 4 (2 throttled, 1 lost, 1 answered)", len(runs))
	}
	for _, c := range runs {
		if got, want := c.Params.Get("ClientToken"), aws.ClientToken("req-throttle", "dev-control-plane-0", 0); got != want {
			t.Errorf("attempt with client token %q, want %q", got, want)
		}
	}
	live := liveInstances(t, p, cfg)
	if len(live) != 1 || live[0].ID != resp.Machines[0].ID {
		t.Errorf("instances after throttling: %+v, want only %s", live, resp.Machines[0].ID)
	}
	// A retry of the whole Create (k2 resumed) finds the same instance.
	again := create(t, p, cfg, cpRequest("req-throttle"))
	if again.Machines[0].ID != resp.Machines[0].ID || len(liveInstances(t, p, cfg)) != 1 {
		t.Errorf("resumed Create gave %s, first %s", again.Machines[0].ID, resp.Machines[0].ID)
	}
}

// TestCreateAfterDelete: a Create with a request id whose instance was
// deleted launches a new one (the next client token), not the terminated
// one EC2 would return for the old token.
func TestCreateAfterDelete(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{}, map[string]any{"os": "k2", "ami": ""})
	_, cfg = withConfig(t, cfg, map[string]any{"ami": debianAMI(fake)})
	p := providertest.Connect(t, aws.New)
	first := create(t, p, cfg, cpRequest("req-again")).Machines[0]
	if _, err := p.Delete(context.Background(), &sdk.DeleteRequest{Config: cfg, RequestID: "req-again", MachineIDs: []string{first.ID}}); err != nil {
		t.Fatal(err)
	}
	second := create(t, p, cfg, cpRequest("req-again")).Machines[0]
	if second.ID == first.ID || second.State != sdk.StateRunning {
		t.Errorf("Create after Delete: %+v (deleted: %s)", second, first.ID)
	}
	tokens := map[string]bool{}
	for _, c := range fake.Calls("RunInstances") {
		tokens[c.Params.Get("ClientToken")] = true
	}
	if !tokens[aws.ClientToken("req-again", "dev-control-plane-0", 1)] {
		t.Errorf("no RunInstances with the second generation's token: %v", tokens)
	}
}

// TestNoCredentials: with no credentials anywhere, Create fails within
// seconds, before any call to EC2, naming the sources it tried.
func TestNoCredentials(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{}, nil)
	_, cfg = withConfig(t, cfg, map[string]any{"access_key_id": "", "secret_access_key": ""})
	p := providertest.Connect(t, aws.New)
	start := time.Now()
	req := cpRequest("req-nocreds")
	req.Config = cfg
	resp, err := p.Create(context.Background(), req)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Diagnostics.Err()
	if msg == nil {
		t.Fatal("Create without credentials succeeded")
	}
	for _, want := range []string{"no AWS credentials found", "AWS_ACCESS_KEY_ID", "shared files", "AWS_EC2_METADATA_DISABLED", "web identity", "container"} {
		if !strings.Contains(msg.Error(), want) {
			t.Errorf("diagnostic does not mention %q: %v", want, msg)
		}
	}
	if took > 5*time.Second {
		t.Errorf("took %s to fail", took)
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("EC2 got %d calls before the credentials were found missing", n)
	}
	t.Logf("failed in %s: %v", took.Round(time.Millisecond), msg)
}

// TestPermissionDenied: a call AWS refuses names the API call and the IAM
// action to grant.
func TestPermissionDenied(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{}, map[string]any{"os": "k2", "ami": ""})
	_, cfg = withConfig(t, cfg, map[string]any{"ami": debianAMI(fake)})
	fake.Deny("RunInstances")
	p := providertest.Connect(t, aws.New)
	req := cpRequest("req-denied")
	req.Config = cfg
	resp, err := p.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Diagnostics.Err()
	if msg == nil || !strings.Contains(msg.Error(), "EC2 RunInstances") || !strings.Contains(msg.Error(), "IAM action ec2:RunInstances") {
		t.Errorf("diagnostic: %v", msg)
	}
	if runs := fake.Calls("RunInstances"); len(runs) != 1 {
		t.Errorf("a denied call was retried: %d calls", len(runs))
	}
}

// TestDeleteRemovesGroup: the environment's security group stays while
// one of its machines lives, goes with the last one, and is also found
// and removed when a crashed deploy left it without any instance.
func TestDeleteRemovesGroup(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{ConsistencyDelay: 30 * time.Millisecond}, map[string]any{"os": "k2", "ami": ""})
	_, cfg = withConfig(t, cfg, map[string]any{"ami": debianAMI(fake)})
	p := providertest.Connect(t, aws.New)
	ctx := context.Background()
	cp := create(t, p, cfg, cpRequest("req-cp")).Machines[0]
	w := cpRequest("req-w")
	w.Machines[0].Name, w.Machines[0].Role = "dev-worker-0", "worker"
	worker := create(t, p, cfg, w).Machines[0]
	groups := func() int {
		n := 0
		for _, c := range fake.Calls("CreateSecurityGroup", "DeleteSecurityGroup") {
			if c.Error == "" {
				n += map[string]int{"CreateSecurityGroup": 1, "DeleteSecurityGroup": -1}[c.Action]
			}
		}
		return n
	}
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, RequestID: "req-w", MachineIDs: []string{worker.ID}}); err != nil {
		t.Fatal(err)
	}
	if groups() != 1 {
		t.Fatalf("the group went while the control plane still runs")
	}
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, RequestID: "req-cp", MachineIDs: []string{cp.ID}}); err != nil {
		t.Fatal(err)
	}
	if groups() != 0 {
		t.Fatalf("the group outlived the last machine")
	}

	// A deploy that died after making the group and before launching:
	// RunInstances is denied here, so only the group exists.
	fake.Deny("RunInstances")
	req := cpRequest("req-crashed")
	req.Config = cfg
	if resp, err := p.Create(ctx, req); err != nil || !resp.Diagnostics.HasErrors() {
		t.Fatalf("Create: %v %v", resp, err)
	}
	if groups() != 1 {
		t.Fatalf("groups: %d, want the one the failed Create made", groups())
	}
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, RequestID: "req-crashed"}); err != nil {
		t.Fatal(err)
	}
	if groups() != 0 {
		t.Errorf("Delete of the crashed request left its group")
	}
}

// TestInstanceTypeChoice: the smallest current type with the machine's
// cpu, memory and architecture; a named type wins.
func TestInstanceTypeChoice(t *testing.T) {
	for _, tc := range []struct {
		arch   string
		cpu    int32
		mem    int64
		named  string
		want   string
		errHas string
	}{
		{arch: "amd64", want: "t3.medium"}, // the default 2 vCPU, 4 GiB
		{arch: "arm64", cpu: 2, mem: 4 << 30, want: "t4g.medium"},
		{arch: "amd64", cpu: 4, mem: 16 << 30, want: "t3.xlarge"},
		{arch: "amd64", cpu: 3, mem: 1 << 30, want: "c6i.xlarge"}, // 4 vCPUs, least memory
		{arch: "amd64", cpu: 8, mem: 64 << 30, want: "m6i.4xlarge"},
		{arch: "amd64", cpu: 2, named: "c6i.large", want: "c6i.large"},
		{arch: "arm64", named: "t3.small", errHas: "not arm64"},
		{arch: "amd64", cpu: 512, errHas: "no x86_64 instance type"},
	} {
		t.Run(tc.arch+"-"+tc.want+tc.named, func(t *testing.T) {
			fake, cfg := fakeConfig(t, ec2fake.Options{}, map[string]any{"instance_type": tc.named})
			if tc.named == "" {
				_, cfg = withConfig(t, cfg, map[string]any{"instance_type": ""})
			}
			p := providertest.Connect(t, aws.New)
			req := &sdk.CreateRequest{RequestID: "r", Config: cfg, Machines: []sdk.MachineRequest{{Name: "m", Arch: tc.arch, CPU: tc.cpu, MemoryBytes: tc.mem}},
				Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapUserData, UserData: []byte("#cloud-config\n{}\n")}}
			resp, err := p.Create(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.errHas != "" {
				if e := resp.Diagnostics.Err(); e == nil || !strings.Contains(e.Error(), tc.errHas) {
					t.Errorf("diagnostics %v, want %q", e, tc.errHas)
				}
				return
			}
			if resp.Diagnostics.HasErrors() {
				t.Fatal(resp.Diagnostics.Err())
			}
			runs := fake.Calls("RunInstances")
			if got := runs[0].Params.Get("InstanceType"); got != tc.want {
				t.Errorf("instance type %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCloudInitUserData: with os cloud-init (the Debian AMI from its SSM
// parameter), the machine config is wrapped into a cloud-init document
// that writes it, fetches k2 from k2_url for the machine's architecture
// and runs `k2 init --config` under systemd.
func TestCloudInitUserData(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{}, nil)
	p := providertest.Connect(t, aws.New)
	req := cpRequest("req-ci")
	req.Machines[0].Arch = "arm64"
	create(t, p, cfg, req)
	run := fake.Calls("RunInstances")[0].Params
	if got, want := run.Get("ImageId"), fake.Parameter("/aws/service/debian/release/12/latest/arm64"); got != want {
		t.Errorf("image %s, want the Debian arm64 AMI %s", got, want)
	}
	if run.Get("InstanceType") != "t4g.medium" {
		t.Errorf("instance type %s", run.Get("InstanceType"))
	}
	ud, _ := base64.StdEncoding.DecodeString(run.Get("UserData"))
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Fatalf("user-data is not a cloud-config:\n%s", ud)
	}
	var doc struct {
		WriteFiles []struct{ Path, Permissions, Encoding, Content string } `yaml:"write_files"`
		RunCmd     [][]string                                              `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, ud)
	}
	files := map[string]string{}
	for _, f := range doc.WriteFiles {
		c := f.Content
		if f.Encoding == "b64" {
			b, _ := base64.StdEncoding.DecodeString(c)
			c = string(b)
		}
		files[f.Path] = c
		if f.Path == "/etc/k2/machine.yaml" && f.Permissions != "0600" {
			t.Errorf("machine config readable by others: %s", f.Permissions)
		}
	}
	if files["/etc/k2/machine.yaml"] != machineConfig {
		t.Errorf("machine config written: %q", files["/etc/k2/machine.yaml"])
	}
	if !strings.Contains(files["/usr/local/lib/k2/fetch-k2"], "'http://127.0.0.1:1/k2-arm64'") {
		t.Errorf("fetch script:\n%s", files["/usr/local/lib/k2/fetch-k2"])
	}
	if !strings.Contains(files["/etc/systemd/system/k2.service"], "ExecStart=/usr/local/bin/k2 init --config /etc/k2/machine.yaml") {
		t.Errorf("unit:\n%s", files["/etc/systemd/system/k2.service"])
	}
	if len(doc.RunCmd) != 2 || strings.Join(doc.RunCmd[1], " ") != "systemctl enable --now k2.service" {
		t.Errorf("runcmd: %v", doc.RunCmd)
	}

	// Without k2_url or k2_image a machine config cannot boot a stock image.
	_, bad := withConfig(t, cfg, map[string]any{"k2_url": ""})
	v, err := p.Validate(context.Background(), &sdk.ValidateRequest{Config: bad, Machines: req.Machines, Bootstrap: &req.Bootstrap})
	if err != nil || !v.Diagnostics.HasErrors() || !strings.Contains(v.Diagnostics.Err().Error(), "k2_url") {
		t.Errorf("Validate without k2_url: %v %v", v, err)
	}
}

// TestAPIPortFromMachineConfig: the port the security group opens comes
// from the machine config the engine hands over (plain or gzip).
func TestAPIPortFromMachineConfig(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: control-plane\ncontrolPlane:\n  port: 7777\n  joinPort: 7778\n  identity: x\n"))
	zw.Close()
	for _, tc := range []struct {
		name       string
		ud         []byte
		want, join string
	}{
		{"control-plane-gzip", gz.Bytes(), "7777", "7778"},
		{"control-plane-default", []byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: control-plane\ncontrolPlane:\n  identity: x\n"), "6443", "6444"},
		{"worker", []byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: worker\nserver: https://10.1.2.3:32001\njoinURL: https://10.1.2.3:32002\n"), "32001", "32002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, cfg := fakeConfig(t, ec2fake.Options{}, nil)
			p := providertest.Connect(t, aws.New)
			req := cpRequest("r")
			req.Bootstrap = sdk.Bootstrap{Method: sdk.BootstrapUserData, UserData: tc.ud}
			create(t, p, cfg, req)
			auth := fake.Calls("AuthorizeSecurityGroupIngress")
			if got := auth[0].Params.Get("IpPermissions.1.FromPort"); got != tc.want {
				t.Errorf("API port %s, want %s", got, tc.want)
			}
			if got := auth[1].Params.Get("IpPermissions.1.FromPort"); got != tc.join {
				t.Errorf("join port %s, want %s", got, tc.join)
			}
			// os cloud-init wraps the machine config, gzip or not, unchanged.
			ud, _ := base64.StdEncoding.DecodeString(fake.Calls("RunInstances")[0].Params.Get("UserData"))
			if !strings.Contains(string(ud), base64.StdEncoding.EncodeToString(tc.ud)) {
				t.Errorf("machine config not carried as is:\n%s", ud)
			}
		})
	}
}
