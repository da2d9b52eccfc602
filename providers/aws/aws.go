// Package aws is the built-in provider whose machines are Amazon EC2
// instances, made with aws-sdk-go-v2. It is written only against
// providers/sdk, exactly like an external plugin.
//
// Per environment (the machine label k2.dev/environment) it owns, and tags
// with k2.dev/environment, k2.dev/request-id and k2.dev/managed-by=k2:
//
//   - a security group k2-<env> in the subnet's VPC that lets in only the
//     API and join ports from the configured CIDRs (api_cidrs) and all
//     traffic from members of the group (node to node);
//   - one instance per machine, in the configured subnet (or the default
//     VPC's default subnet for the first availability zone), of the
//     configured instance type or the smallest current-generation type
//     with the machine's cpu, memory and architecture (DescribeInstanceTypes),
//     with a gp3 root volume of the machine's disk size, IMDSv2 only.
//
// Boot (config "os"): "k2" boots a k2 OS AMI (`k2 os build --format raw`,
// then `k2 aws image import`, or any AMI id in "ami") whose `k2 init` reads
// the machine config from IMDS user-data; "cloud-init" boots any Linux AMI
// with cloud-init (by default Debian 12, found through its public SSM
// parameter), and the user-data is a cloud-init document that writes the
// machine config, fetches the k2 binary (k2_url, or k2_image: an OCI
// reference) and runs `k2 init --config` under systemd.
//
// Idempotency: RunInstances carries a ClientToken derived from the request
// id and the machine name, so a retried or resumed Create (even after k2
// was killed mid-call) gets the instance already made. Throttling and
// transient errors are retried by the SDK's standard retryer; reads right
// after a create are retried while EC2 is eventually consistent. A call
// AWS denies is reported with the API call and the IAM action to grant.
//
// Delete terminates instances and, once none of the environment's is left,
// waits for them to be terminated and deletes its security group, found by
// tag — also when a crashed deploy left the group without instances.
package aws

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"k2.dev/k2/providers/sdk"
)

// Name is the provider's name.
const Name = "aws"

// Tags k2 puts on everything it makes.
const (
	TagEnvironment = "k2.dev/environment"
	TagRequestID   = "k2.dev/request-id"
	TagManagedBy   = "k2.dev/managed-by"
	TagMachine     = "k2.dev/machine"
	TagRole        = "k2.dev/role"
	TagPool        = "k2.dev/pool"
)

// LabelEnvironment is the machine label that names the environment.
const LabelEnvironment = sdk.LabelEnvironment

// Boot modes (config "os").
const (
	OSK2        = "k2"
	OSCloudInit = "cloud-init"
)

// Defaults.
const (
	defaultCPU          = 2
	defaultMemory       = 4 << 30
	defaultDiskGiB      = 20
	defaultAPIPort      = 6443
	defaultJoinPort     = 6444
	defaultAMIParameter = "/aws/service/debian/release/12/latest/{arch}"
)

// Provider is the aws provider.
type Provider struct {
	sdk.UnimplementedProvider
}

// New returns the aws provider.
func New() sdk.Provider { return &Provider{} }

var _ sdk.Provider = (*Provider)(nil)

var schema = []sdk.ConfigField{
	{Name: "region", Type: sdk.TypeString, Description: "AWS region; default from AWS_REGION or the profile's region, as every AWS tool"},
	{Name: "profile", Type: sdk.TypeString, Description: "profile of ~/.aws/config and ~/.aws/credentials (SSO, roles, keys); default AWS_PROFILE or \"default\""},
	{Name: "access_key_id", Type: sdk.TypeString, Secret: true, Description: "static credentials; default: the SDK's chain (environment, shared files, SSO, web identity, container, IMDS)"},
	{Name: "secret_access_key", Type: sdk.TypeString, Secret: true, Description: "with access_key_id"},
	{Name: "session_token", Type: sdk.TypeString, Secret: true, Description: "with access_key_id, for temporary credentials"},
	{Name: "endpoint_url", Type: sdk.TypeString, Description: "one endpoint for EC2, S3 and SSM: an EC2-compatible cloud, or a test fake; default AWS's own (or AWS_ENDPOINT_URL)"},
	{Name: "subnet_id", Type: sdk.TypeString, Description: "subnet of the instances; default: the default VPC's default subnet"},
	{Name: "instance_type", Type: sdk.TypeString, Description: "instance type of every machine; default: the smallest current type with the pool's cpu, memory and arch"},
	{Name: "os", Type: sdk.TypeString, Description: "k2: a k2 OS AMI ('k2 aws image import'), k2 init reads IMDS user-data; cloud-init: any Linux AMI with cloud-init; default k2 when ami is set, else cloud-init"},
	{Name: "ami", Type: sdk.TypeString, Description: "AMI id (for os k2: from 'k2 aws image import')"},
	{Name: "ami_parameter", Type: sdk.TypeString, Default: defaultAMIParameter, Description: "SSM parameter naming the AMI when ami is empty ({arch}: amd64, arm64)"},
	{Name: "k2_url", Type: sdk.TypeString, Description: "os cloud-init: URL of the k2 binary the machine downloads ({arch}: amd64, arm64)"},
	{Name: "k2_image", Type: sdk.TypeString, Description: "os cloud-init: OCI reference whose first layer is the k2 binary (instead of k2_url)"},
	{Name: "api_cidrs", Type: sdk.TypeList, Description: "CIDRs allowed to reach the API port; default [0.0.0.0/0] (with a warning)"},
	{Name: "api_port", Type: sdk.TypeInt, Description: "the API port to open; default: the machine config's, else 6443 (the join port, default 6444, is opened too)"},
	{Name: "public_ip", Type: sdk.TypeBool, Description: "give instances a public address (default: the subnet's setting)"},
	{Name: "key_name", Type: sdk.TypeString, Description: "EC2 key pair for SSH (optional)"},
	{Name: "instance_profile", Type: sdk.TypeString, Description: "IAM instance profile name (optional)"},
	{Name: "volume_type", Type: sdk.TypeString, Default: "gp3", Description: "EBS type of the root volume"},
	{Name: "tags", Type: sdk.TypeList, Description: "extra tags key=value on everything k2 makes"},
	{Name: "poll_interval", Type: sdk.TypeDuration, Default: "5s", Description: "how often to poll EC2 while waiting for instances and imports"},
	{Name: "max_attempts", Type: sdk.TypeInt, Default: "10", Description: "attempts per AWS call (throttling, 5xx) before giving up"},
	{Name: "max_backoff", Type: sdk.TypeDuration, Default: "20s", Description: "longest wait between attempts of one AWS call"},
}

func capabilities() sdk.Capabilities {
	return sdk.Capabilities{
		Architectures:    []string{"amd64", "arm64"},
		CustomSizes:      true,
		MaxMachines:      20,
		BootstrapMethods: []string{sdk.BootstrapUserData},
		Console:          true,
	}
}

// Describe names the provider, its capabilities and its config schema.
func (p *Provider) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:         Name,
		Description:  "Amazon EC2 instances (or an EC2-compatible cloud), booting the k2 OS AMI or any cloud-init Linux AMI",
		Capabilities: capabilities(),
		ConfigSchema: schema,
	}, nil
}

// config is the provider configuration.
type config struct {
	Region          string   `json:"region"`
	Profile         string   `json:"profile"`
	AccessKeyID     string   `json:"access_key_id"`
	SecretAccessKey string   `json:"secret_access_key"`
	SessionToken    string   `json:"session_token"`
	EndpointURL     string   `json:"endpoint_url"`
	SubnetID        string   `json:"subnet_id"`
	InstanceType    string   `json:"instance_type"`
	OS              string   `json:"os"`
	AMI             string   `json:"ami"`
	AMIParameter    string   `json:"ami_parameter"`
	K2URL           string   `json:"k2_url"`
	K2Image         string   `json:"k2_image"`
	APICIDRs        []string `json:"api_cidrs"`
	APIPort         int      `json:"api_port"`
	PublicIP        *bool    `json:"public_ip"`
	KeyName         string   `json:"key_name"`
	InstanceProfile string   `json:"instance_profile"`
	VolumeType      string   `json:"volume_type"`
	Tags            []string `json:"tags"`
	PollInterval    string   `json:"poll_interval"`
	MaxAttempts     int      `json:"max_attempts"`
	MaxBackoff      string   `json:"max_backoff"`

	poll, backoff time.Duration
	extraTags     map[string]string
}

// load decodes and checks the config, filling defaults.
func load(c sdk.Config) (*config, sdk.Diagnostics) {
	ds := sdk.CheckConfig(schema, c)
	cfg := &config{}
	if err := c.Decode(cfg); err != nil {
		ds.Errorf("config", "%v", err)
		return cfg, ds
	}
	if cfg.AMIParameter == "" {
		cfg.AMIParameter = defaultAMIParameter
	}
	if cfg.VolumeType == "" {
		cfg.VolumeType = "gp3"
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	cfg.poll, cfg.backoff = 5*time.Second, 20*time.Second
	if d, err := time.ParseDuration(cfg.PollInterval); err == nil && d > 0 {
		cfg.poll = d
	}
	if d, err := time.ParseDuration(cfg.MaxBackoff); err == nil && d > 0 {
		cfg.backoff = d
	}
	switch cfg.OS {
	case "":
		cfg.OS = OSCloudInit
		if cfg.AMI != "" {
			cfg.OS = OSK2
		}
	case OSK2, OSCloudInit:
	default:
		ds.Errorf("config.os", "os %q: use k2 (a k2 OS AMI) or cloud-init (any Linux AMI with cloud-init)", cfg.OS)
	}
	if cfg.OS == OSK2 && cfg.AMI == "" {
		ds.Errorf("config.ami", "os k2 needs the AMI id of a k2 OS image: build one with 'k2 os build --format raw' and import it with 'k2 aws image import'")
	}
	if cfg.AMI != "" && !strings.HasPrefix(cfg.AMI, "ami-") {
		ds.Errorf("config.ami", "%q is not an AMI id (ami-…)", cfg.AMI)
	}
	if cfg.EndpointURL != "" {
		if u, err := url.Parse(cfg.EndpointURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ds.Errorf("config.endpoint_url", "%q is not an http(s) URL", cfg.EndpointURL)
		}
	}
	if cfg.K2URL != "" && cfg.K2Image != "" {
		ds.Errorf("config.k2_image", "set k2_url or k2_image, not both")
	}
	if cfg.K2URL != "" {
		if u, err := url.Parse(cfg.K2URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			ds.Errorf("config.k2_url", "%q is not an http(s) URL", cfg.K2URL)
		}
	}
	if cfg.K2Image != "" {
		if _, _, _, err := splitRef(cfg.K2Image); err != nil {
			ds.Errorf("config.k2_image", "%v", err)
		}
	}
	if len(cfg.APICIDRs) == 0 {
		cfg.APICIDRs = []string{"0.0.0.0/0"}
		ds.Warnf("config.api_cidrs", "the API port is open to 0.0.0.0/0; set api_cidrs to the addresses k2 and kubectl connect from")
	}
	for i, c := range cfg.APICIDRs {
		if p, err := netip.ParsePrefix(c); err != nil || !p.Addr().Is4() {
			ds.Errorf(fmt.Sprintf("config.api_cidrs[%d]", i), "%q is not an IPv4 CIDR such as 203.0.113.0/24", c)
		}
	}
	if cfg.APIPort < 0 || cfg.APIPort > 65535 {
		ds.Errorf("config.api_port", "port %d is out of range", cfg.APIPort)
	}
	if cfg.MaxAttempts < 1 {
		ds.Errorf("config.max_attempts", "must be at least 1")
	}
	switch cfg.VolumeType {
	case "gp2", "gp3", "io1", "io2", "st1", "sc1", "standard":
	default:
		ds.Errorf("config.volume_type", "volume type %q: use gp3, gp2, io1, io2, st1, sc1 or standard", cfg.VolumeType)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		ds.Errorf("config.secret_access_key", "access_key_id and secret_access_key go together")
	}
	cfg.extraTags = map[string]string{}
	for i, kv := range cfg.Tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.HasPrefix(k, "aws:") || strings.HasPrefix(k, "k2.dev/") {
			ds.Errorf(fmt.Sprintf("config.tags[%d]", i), "tag %q: use key=value, keys not starting with aws: or k2.dev/", kv)
			continue
		}
		cfg.extraTags[k] = v
	}
	return cfg, ds
}

// Validate checks the config, the credentials and the machines against the
// capabilities without making anything.
func (p *Provider) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, req.Bootstrap)...)
	if req.Bootstrap != nil && !ds.HasErrors() {
		for i, m := range req.Machines {
			if _, err := userData(cfg, m, *req.Bootstrap); err != nil {
				ds.Errorf(fmt.Sprintf("machines[%d]", i), "%v", err)
			}
		}
	}
	return &sdk.ValidateResponse{Diagnostics: ds}, nil
}

// environment is a machine's environment (its k2.dev/environment label);
// machines without one (such as the conformance kit's) share "k2".
func environment(m sdk.MachineRequest) string {
	if e := m.Labels[LabelEnvironment]; e != "" {
		return e
	}
	return "k2"
}
