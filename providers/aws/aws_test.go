package aws_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/providers/aws"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// TestMain isolates the SDK from this machine: no instance metadata probe
// (AWS_EC2_METADATA_DISABLED), no shared files, no credentials or endpoint
// from the environment. Every test points endpoint_url at an ec2fake on
// loopback.
func TestMain(m *testing.M) {
	for _, k := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		os.Unsetenv(k)
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", "/nonexistent/k2-test/config")
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/k2-test/credentials")
	os.Exit(m.Run())
}

// fakeConfig starts a fake and returns it with a provider config for it.
func fakeConfig(t *testing.T, o ec2fake.Options, extra map[string]any) (*ec2fake.Server, sdk.Config) {
	t.Helper()
	fake := ec2fake.New(o)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg := map[string]any{
		"endpoint_url": srv.URL, "region": "us-east-1", "access_key_id": "AKIDK2TEST", "secret_access_key": "secret",
		"poll_interval": "50ms", "max_backoff": "100ms", "api_cidrs": []string{"10.0.0.0/8"},
		"k2_url": "http://127.0.0.1:1/k2-{arch}",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	return fake, b
}

// TestConformance runs the provider contract against the fake, with EC2's
// eventual consistency switched on.
func TestConformance(t *testing.T) {
	providertest.Run(t, aws.New, providertest.WithConfig(func(t *testing.T) sdk.Config {
		_, cfg := fakeConfig(t, ec2fake.Options{ConsistencyDelay: 30 * time.Millisecond, BootDelay: 50 * time.Millisecond}, nil)
		return cfg
	}))
}

// machineConfig stands for the k2 machine config the deploy engine puts in
// Bootstrap.UserData.
const machineConfig = "version: v1\nrole: control-plane\n"

func cpRequest(reqID string) *sdk.CreateRequest {
	return &sdk.CreateRequest{
		RequestID: reqID,
		Machines: []sdk.MachineRequest{{Name: "dev-control-plane-0", Role: "control-plane", Pool: "control-plane", Arch: "amd64",
			CPU: 2, MemoryBytes: 4 << 30, DiskBytes: 30 << 30, Labels: map[string]string{aws.LabelEnvironment: "dev"}}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapUserData, ServerURL: "https://10.0.0.5:7443", UserData: []byte(machineConfig)},
	}
}

func create(t *testing.T, p sdk.Provider, cfg sdk.Config, req *sdk.CreateRequest) *sdk.CreateResponse {
	t.Helper()
	req.Config = cfg
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := p.Create(ctx, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Diagnostics.HasErrors() {
		t.Fatalf("Create: %v", resp.Diagnostics.Err())
	}
	return resp
}

// TestExactRequests checks what k2 sends EC2 for one control-plane
// machine: tags on every resource, the client token derived from the
// request id, the user-data, IMDSv2, the root volume from the disk size,
// the instance type from cpu/memory/arch, and the security group's rules.
func TestExactRequests(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{}, nil)
	ami := debianAMI(fake)
	_, cfg = withConfig(t, cfg, map[string]any{"os": "k2", "ami": ami})
	p := providertest.Connect(t, aws.New)
	resp := create(t, p, cfg, cpRequest("req-1"))
	m := resp.Machines[0]
	if m.State != sdk.StateRunning || !strings.HasPrefix(m.ID, "i-") || m.RequestID != "req-1" || m.Name != "dev-control-plane-0" ||
		m.Arch != "amd64" || m.CPU != 2 || m.MemoryBytes != 4<<30 || len(m.Addresses) != 1 {
		t.Errorf("machine: %+v", m)
	}

	runs := fake.Calls("RunInstances")
	if len(runs) != 1 {
		t.Fatalf("%d RunInstances, want 1", len(runs))
	}
	r := runs[0].Params
	want := map[string]string{
		"ImageId": ami, "InstanceType": "t3.medium", "MinCount": "1", "MaxCount": "1",
		"ClientToken":                         aws.ClientToken("req-1", "dev-control-plane-0", 0),
		"UserData":                            base64.StdEncoding.EncodeToString([]byte(machineConfig)),
		"MetadataOptions.HttpTokens":          "required",
		"MetadataOptions.HttpEndpoint":        "enabled",
		"BlockDeviceMapping.1.DeviceName":     "/dev/xvda",
		"BlockDeviceMapping.1.Ebs.VolumeSize": "30",
		"BlockDeviceMapping.1.Ebs.VolumeType": "gp3",
		"TagSpecification.1.ResourceType":     "instance",
		"TagSpecification.2.ResourceType":     "volume",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = r.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RunInstances parameters (-want +got):\n%s", diff)
	}
	wantTags := map[string]string{"Name": "dev-control-plane-0", "k2.dev/environment": "dev", "k2.dev/request-id": "req-1",
		"k2.dev/managed-by": "k2", "k2.dev/machine": "dev-control-plane-0", "k2.dev/role": "control-plane", "k2.dev/pool": "control-plane"}
	for _, spec := range []string{"TagSpecification.1", "TagSpecification.2"} {
		if diff := cmp.Diff(wantTags, formTags(r, spec+".Tag")); diff != "" {
			t.Errorf("%s tags (-want +got):\n%s", spec, diff)
		}
	}

	sgs := fake.Calls("CreateSecurityGroup")
	if len(sgs) != 1 {
		t.Fatalf("%d CreateSecurityGroup, want 1", len(sgs))
	}
	sg := sgs[0].Params
	if sg.Get("GroupName") != "k2-dev" || sg.Get("TagSpecification.1.ResourceType") != "security-group" {
		t.Errorf("CreateSecurityGroup: %v", sg)
	}
	wantSGTags := map[string]string{"Name": "k2-dev", "k2.dev/environment": "dev", "k2.dev/request-id": "req-1", "k2.dev/managed-by": "k2"}
	if diff := cmp.Diff(wantSGTags, formTags(sg, "TagSpecification.1.Tag")); diff != "" {
		t.Errorf("security group tags (-want +got):\n%s", diff)
	}
	groupID := r.Get("SecurityGroupId.1")
	var rules []string
	for _, c := range fake.Calls("AuthorizeSecurityGroupIngress") {
		q := c.Params
		if q.Get("GroupId") != groupID {
			t.Errorf("rule on %s, instance in %s", q.Get("GroupId"), groupID)
		}
		rules = append(rules, strings.Join([]string{q.Get("IpPermissions.1.IpProtocol"), q.Get("IpPermissions.1.FromPort"),
			q.Get("IpPermissions.1.ToPort"), q.Get("IpPermissions.1.IpRanges.1.CidrIp"), q.Get("IpPermissions.1.Groups.1.GroupId")}, " "))
	}
	// The API port comes from the bootstrap's server URL (7443); the join
	// port (for image uploads from k2 deploy) is the default 6444.
	wantRules := []string{"tcp 7443 7443 10.0.0.0/8 ", "tcp 6444 6444 10.0.0.0/8 ", "-1    " + groupID}
	if diff := cmp.Diff(wantRules, rules); diff != "" {
		t.Errorf("ingress rules (-want +got):\n%s", diff)
	}
}

// formTags reads Tag.N.Key/Value form values under prefix.
func formTags(v map[string][]string, prefix string) map[string]string {
	out := map[string]string{}
	for i := 1; ; i++ {
		k := first(v, prefix+"."+itoa(i)+".Key")
		if k == "" {
			return out
		}
		out[k] = first(v, prefix+"."+itoa(i)+".Value")
	}
}

func first(v map[string][]string, k string) string {
	if l := v[k]; len(l) > 0 {
		return l[0]
	}
	return ""
}

func itoa(i int) string { return strconv.Itoa(i) }

// withConfig returns cfg with keys changed.
func withConfig(t *testing.T, cfg sdk.Config, set map[string]any) (map[string]any, sdk.Config) {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return m, b
}

// debianAMI is the fake's public Debian AMI (any AMI serves os k2 here:
// the fake boots nothing in these tests).
func debianAMI(fake *ec2fake.Server) string {
	return fake.Parameter("/aws/service/debian/release/12/latest/amd64")
}
