package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"k2.dev/k2/providers/sdk"
)

// ClientToken is the RunInstances idempotency token of machine name in
// request reqID, generation gen (a generation is used up when its instance
// was terminated: EC2 keeps answering a used token with the old instance).
func ClientToken(reqID, name string, gen int) string {
	h := sha256.Sum256([]byte(reqID + "\x00" + name + "\x00" + strconv.Itoa(gen)))
	return "k2-" + hex.EncodeToString(h[:20])
}

// maxGenerations bounds the walk over used client tokens.
const maxGenerations = 32

// aliveStates are the states of an instance that still counts.
var aliveStates = []string{"pending", "running", "stopping", "stopped"}

// Create runs the requested instances, idempotent by request id (EC2
// ClientToken), and returns them with their state.
func (p *Provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	cfg, ds := load(req.Config)
	configOK := !ds.HasErrors()
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, &req.Bootstrap)...)
	uds := map[string][]byte{}
	if !ds.HasErrors() {
		for i, m := range req.Machines {
			ud, err := userData(cfg, m, req.Bootstrap)
			if !diagnose(&ds, fmt.Sprintf("machines[%d]", i), err) && err != nil {
				return nil, err
			}
			uds[m.Name] = ud
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !configOK {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	// Credentials are checked even when the request has other problems:
	// a user fixes both at once.
	c, cds := connect(ctx, cfg)
	ds = append(ds, cds...)
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	var out []sdk.Machine
	for i, m := range req.Machines {
		got, err := c.create(ctx, req, m, uds[m.Name])
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if diagnose(&ds, fmt.Sprintf("machines[%d]", i), err) {
				return &sdk.CreateResponse{Machines: out, Diagnostics: ds}, nil
			}
			return nil, fmt.Errorf("machine %s: %w", m.Name, err)
		}
		out = append(out, got)
	}
	if err := c.waitRunning(ctx, req, out); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return &sdk.CreateResponse{Machines: out, Diagnostics: ds}, nil
}

// session loads the config and connects: what List, Delete and Console
// need first.
func session(ctx context.Context, raw sdk.Config) (*clients, sdk.Diagnostics) {
	cfg, ds := load(raw)
	if ds.HasErrors() {
		return nil, ds
	}
	c, cds := connect(ctx, cfg)
	return c, append(ds, cds...)
}

// create finds machine m of req (made by an earlier attempt) or launches
// it.
func (c *clients) create(ctx context.Context, req *sdk.CreateRequest, m sdk.MachineRequest, ud []byte) (sdk.Machine, error) {
	env := environment(m)
	if in, err := c.findMachine(ctx, req.RequestID, m.Name); err != nil || in != nil {
		if in != nil {
			req.Report(m.Name, "found %s (%s) from an earlier attempt", aws.ToString(in.InstanceId), in.State.Name)
			return machineOf(*in), nil
		}
		return sdk.Machine{}, err
	}
	pl, err := c.subnet(ctx)
	if err != nil {
		return sdk.Machine{}, err
	}
	api, join := clusterPorts(c.cfg, req.Bootstrap)
	sg, err := c.ensureGroup(ctx, env, req.RequestID, pl, api, join)
	if err != nil {
		return sdk.Machine{}, err
	}
	req.Report(m.Name, "security group %s (ports %d and %d from %s, node to node)", sg, api, join, strings.Join(c.cfg.APICIDRs, ", "))
	arch := m.Arch
	if arch == "" {
		arch = capabilities().Architectures[0]
	}
	ami, err := c.image(ctx, arch)
	if err != nil {
		return sdk.Machine{}, err
	}
	cpu, mem := m.CPU, m.MemoryBytes
	if cpu == 0 {
		cpu = defaultCPU
	}
	if mem == 0 {
		mem = defaultMemory
	}
	it, err := c.chooseType(ctx, arch, cpu, mem)
	if err != nil {
		return sdk.Machine{}, err
	}
	in := c.runInput(req.RequestID, env, m, ami, it.Name, sg, pl, ud)
	req.Report(m.Name, "launching %s from %s in %s", it.Name, ami, pl.Subnet)
	inst, err := c.run(ctx, in, req.RequestID, m.Name)
	if err != nil {
		return sdk.Machine{}, err
	}
	req.Report(m.Name, "instance %s %s at %s", aws.ToString(inst.InstanceId), inst.State.Name, aws.ToString(inst.PrivateIpAddress))
	return machineOf(*inst), nil
}

// runInput is the RunInstances request for machine m.
func (c *clients) runInput(reqID, env string, m sdk.MachineRequest, ami, typ, sg string, pl placement, ud []byte) *ec2.RunInstancesInput {
	disk := int32(defaultDiskGiB)
	if m.DiskBytes > 0 {
		disk = int32((m.DiskBytes + 1<<30 - 1) >> 30)
	}
	extra := map[string]string{"Name": m.Name, TagMachine: m.Name}
	if m.Role != "" {
		extra[TagRole] = m.Role
	}
	if m.Pool != "" {
		extra[TagPool] = m.Pool
	}
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(ami),
		InstanceType: types.InstanceType(typ),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		UserData:     aws.String(base64.StdEncoding.EncodeToString(ud)),
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String("/dev/xvda"),
			Ebs:        &types.EbsBlockDevice{VolumeSize: aws.Int32(disk), VolumeType: types.VolumeType(c.cfg.VolumeType), DeleteOnTermination: aws.Bool(true), Encrypted: aws.Bool(true)},
		}},
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens: types.HttpTokensStateRequired, HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
			HttpPutResponseHopLimit: aws.Int32(2), // 2: containers on the node may reach it through one hop
		},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: c.tags(env, reqID, extra)},
			{ResourceType: types.ResourceTypeVolume, Tags: c.tags(env, reqID, extra)},
		},
	}
	if c.cfg.PublicIP != nil {
		in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{
			DeviceIndex: aws.Int32(0), SubnetId: aws.String(pl.Subnet), Groups: []string{sg},
			AssociatePublicIpAddress: c.cfg.PublicIP, DeleteOnTermination: aws.Bool(true),
		}}
	} else {
		in.SubnetId, in.SecurityGroupIds = aws.String(pl.Subnet), []string{sg}
	}
	if c.cfg.KeyName != "" {
		in.KeyName = aws.String(c.cfg.KeyName)
	}
	if c.cfg.InstanceProfile != "" {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(c.cfg.InstanceProfile)}
	}
	return in
}

// run launches the instance, idempotently: each generation's client token
// is tried in turn; a token whose instance was terminated is used up and
// the next one is tried, so a Create after a Delete makes a new instance
// while a retried Create returns the one it made.
func (c *clients) run(ctx context.Context, in *ec2.RunInstancesInput, reqID, name string) (*types.Instance, error) {
	for gen := range maxGenerations {
		in.ClientToken = aws.String(ClientToken(reqID, name, gen))
		out, err := c.ec2.RunInstances(ctx, in)
		var inst *types.Instance
		switch {
		case errorCode(err) == "IdempotentParameterMismatch":
			// This token launched an instance with other parameters (the
			// bootstrap changed between attempts): adopt it if it lives.
			if inst, err = c.byToken(ctx, *in.ClientToken); err != nil {
				return nil, err
			}
			if inst == nil {
				continue
			}
		case err != nil:
			return nil, classify(err)
		case len(out.Instances) == 0:
			return nil, errors.New("RunInstances returned no instance")
		default:
			inst = &out.Instances[0]
		}
		if alive(*inst) {
			return inst, nil
		}
	}
	return nil, fmt.Errorf("machine %s of request %s: %d instances launched and terminated; use a new request id", name, reqID, maxGenerations)
}

func alive(in types.Instance) bool {
	return in.State != nil && contains(aliveStates, string(in.State.Name))
}

// byToken finds the instance launched with a client token, alive or
// terminated; nil if none shows.
func (c *clients) byToken(ctx context.Context, token string) (*types.Instance, error) {
	out, err := c.describe(ctx, filter("client-token", token))
	if err != nil || len(out) == 0 {
		return nil, err
	}
	for _, in := range out {
		if alive(in) {
			return &in, nil
		}
	}
	return &out[0], nil
}

// findMachine returns the live instance of machine name in request reqID,
// or nil.
func (c *clients) findMachine(ctx context.Context, reqID, name string) (*types.Instance, error) {
	out, err := c.describe(ctx, filter("tag:"+TagRequestID, reqID), filter("tag:"+TagMachine, name),
		filter("instance-state-name", aliveStates...))
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return &out[0], nil
}

// describe lists the instances matching filters, every page.
func (c *clients) describe(ctx context.Context, fs ...types.Filter) ([]types.Instance, error) {
	var out []types.Instance
	p := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{Filters: fs})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, classify(err)
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// waitRunning waits until every machine runs and refreshes their records.
func (c *clients) waitRunning(ctx context.Context, req *sdk.CreateRequest, ms []sdk.Machine) error {
	var ids []string
	for _, m := range ms {
		if m.State != sdk.StateRunning {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	req.Report("", "waiting for %s to run", strings.Join(ids, ", "))
	w := ec2.NewInstanceRunningWaiter(c.ec2, func(o *ec2.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = c.cfg.poll, max(c.cfg.poll, 30*time.Second)
	})
	out, err := w.WaitForOutput(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids}, 15*time.Minute)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("waiting for %s to run: %w (see 'k2 status' and the console: GetConsoleOutput)", strings.Join(ids, ", "), classify(err))
	}
	byID := map[string]types.Instance{}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			byID[aws.ToString(in.InstanceId)] = in
		}
	}
	for i, m := range ms {
		if in, ok := byID[m.ID]; ok {
			ms[i] = machineOf(in)
			req.Report(m.Name, "%s running at %s", m.ID, strings.Join(ms[i].Addresses, ", "))
		}
	}
	return nil
}

// machineOf describes an instance as an sdk.Machine.
func machineOf(in types.Instance) sdk.Machine {
	m := sdk.Machine{
		ID: aws.ToString(in.InstanceId), Name: tagValue(in.Tags, TagMachine), RequestID: tagValue(in.Tags, TagRequestID),
		Role: tagValue(in.Tags, TagRole), Pool: tagValue(in.Tags, TagPool), Labels: map[string]string{},
	}
	if m.Name == "" {
		m.Name = tagValue(in.Tags, "Name")
	}
	switch in.Architecture {
	case types.ArchitectureValuesX8664:
		m.Arch = "amd64"
	case types.ArchitectureValuesArm64:
		m.Arch = "arm64"
	}
	if t, ok := lookupSize(string(in.InstanceType)); ok {
		m.CPU, m.MemoryBytes = t.CPU, t.MiB<<20
	}
	// The private address first: nodes reach each other and the API
	// through it; the public one (if any) is for k2 and kubectl from
	// outside the VPC.
	if a := aws.ToString(in.PrivateIpAddress); a != "" {
		m.Addresses = append(m.Addresses, a)
	}
	if a := aws.ToString(in.PublicIpAddress); a != "" {
		m.Addresses = append(m.Addresses, a)
	}
	state := ""
	if in.State != nil {
		state = string(in.State.Name)
	}
	switch state {
	case "pending":
		m.State = sdk.StatePending
	case "running":
		m.State = sdk.StateRunning
	case "stopping", "stopped":
		m.State = sdk.StateStopped
	default:
		m.State = sdk.StateFailed
	}
	m.Message = fmt.Sprintf("%s %s %s", in.InstanceType, state, aws.ToString(in.Placement.AvailabilityZone))
	if in.StateReason != nil && aws.ToString(in.StateReason.Message) != "" && m.State != sdk.StateRunning {
		m.Message += ": " + aws.ToString(in.StateReason.Message)
	}
	m.Labels["node.kubernetes.io/instance-type"] = string(in.InstanceType)
	m.Labels["k2.dev/instance-id"] = m.ID
	return m
}

// sizes remembers the sizes of instance types this process looked up.
var sizes sync.Map

func lookupSize(name string) (instanceType, bool) {
	t, ok := sizes.Load(name)
	if !ok {
		return instanceType{}, false
	}
	return t.(instanceType), true
}

// clusterPorts are the ports to open to the API CIDRs: the API port and
// the join port (k2 deploy uploads vendored images through it).
//
// The API port: the config's api_port; else where the machine config (the
// user-data) says the API is served — its controlPlane.port (default
// 6443) or the port of its server URL; else the port of the bootstrap's
// server URL; else 6443. The join port: the machine config's
// controlPlane.joinPort or the port of its joinURL, else 6444.
func clusterPorts(cfg *config, b sdk.Bootstrap) (api, join int) {
	api, join = defaultAPIPort, defaultJoinPort
	server := b.ServerURL
	if doc, ok := parseMachineConfig(b.UserData); ok {
		if cp := doc.ControlPlane; cp != nil {
			server = ""
			if cp.Port > 0 {
				api = cp.Port
			}
			if cp.JoinPort > 0 {
				join = cp.JoinPort
			}
		} else if doc.Server != "" {
			server = doc.Server
		}
		if p := urlPort(doc.JoinURL); p > 0 {
			join = p
		}
	}
	if p := urlPort(server); p > 0 {
		api = p
	}
	if cfg.APIPort != 0 {
		api = cfg.APIPort
	}
	return api, join
}

// urlPort is the explicit port of an https URL, or 0.
func urlPort(s string) int {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
