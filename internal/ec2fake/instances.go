package ec2fake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Instance states and their EC2 codes.
const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"
)

var stateCodes = map[string]int{statePending: 0, stateRunning: 16, stateShuttingDown: 32, stateTerminated: 48}

// Boot kinds of images: how a Booter starts an instance of them.
const (
	// BootK2OS: a k2 OS image (imported with ImportSnapshot and
	// RegisterImage); `k2 init` reads its config from IMDS user-data.
	BootK2OS = "k2os"
	// BootCloudInit: a stock Linux image whose cloud-init runs the
	// user-data (the seeded Debian AMIs).
	BootCloudInit = "cloud-init"
)

// Booter boots instances as real machines.
type Booter interface {
	// Boot starts m and returns once it runs (the instance is then
	// "running"); an error terminates the instance with it as the state
	// reason.
	Boot(m Machine) (Running, error)
}

// Machine is what a Booter is asked to boot.
type Machine struct {
	InstanceID string
	ImageID    string
	// Boot is the image's kind: BootK2OS or BootCloudInit.
	Boot      string
	PrivateIP netip.Addr
	// Subnet is the instance's subnet; its first address is the gateway.
	Subnet   netip.Prefix
	UserData []byte
	Tags     map[string]string
	// IMDS serves this instance's metadata (IMDSv2); the Booter makes it
	// reachable from the machine.
	IMDS http.Handler
}

// Running is a booted machine.
type Running interface {
	// Stop powers the machine off for good; the instance is terminated
	// once it returns.
	Stop() error
	// Console is the machine's console output so far.
	Console() []byte
}

type instance struct {
	ID, Type, Image, Subnet, VPC, KeyName, Token, Reservation string
	Arch                                                      string
	PrivateIP, PublicIP                                       string
	Groups                                                    []string
	UserData                                                  []byte
	HTTPTokens                                                string
	HopLimit                                                  int
	RootSize                                                  int
	RootType                                                  string
	Profile                                                   string
	State                                                     string
	Reason                                                    string
	Launched, Terminating                                     time.Time
	Index                                                     int
	running                                                   Running
	bootErr                                                   string
	stopping                                                  bool
}

type reservation struct {
	ID        string
	hash      string
	instances []string
}

func awsArch(goarch string) string {
	if goarch == "amd64" {
		return "x86_64"
	}
	return goarch
}

// runHash is what ClientToken idempotency compares: every parameter but
// the token, DryRun and the protocol's own.
func runHash(p *params) string {
	var keys []string
	flat := map[string]string{}
	var walk func(prefix string, n *params)
	walk = func(prefix string, n *params) {
		if n.val != "" {
			flat[prefix] = n.val
			keys = append(keys, prefix)
		}
		for k, c := range n.children {
			walk(strings.TrimPrefix(prefix+"."+k, "."), c)
		}
	}
	walk("", p)
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		if k == "ClientToken" || k == "DryRun" || k == "Action" || k == "Version" {
			continue
		}
		fmt.Fprintf(h, "%s=%s\n", k, flat[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) runInstances(p *params, now time.Time) (any, *apiError) {
	token := p.str("ClientToken")
	if len(token) > 64 {
		return nil, badRequest("InvalidParameterValue", "ClientToken is longer than 64 characters")
	}
	hash := runHash(p)
	if r, ok := s.tokens[token]; ok && token != "" {
		if r.hash != hash {
			return nil, badRequest("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
		}
		return s.reservationXML(r), nil
	}
	img, aerr := s.visibleImage(p.str("ImageId"), now)
	if aerr != nil {
		return nil, aerr
	}
	typ, ok := lookupType(p.str("InstanceType"))
	if p.str("InstanceType") == "" {
		typ, ok = lookupType("m1.small")
	}
	if !ok {
		return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for InstanceType.", p.str("InstanceType"))
	}
	if typ.Arch != img.Arch {
		return nil, badRequest("InvalidParameterValue", "The architecture '%s' of the specified instance type does not match the architecture '%s' of the specified AMI.", typ.Arch, img.Arch)
	}
	minC, maxC := p.int("MinCount", 0), p.int("MaxCount", 0)
	if minC < 1 || maxC < minC {
		return nil, badRequest("InvalidParameterValue", "MinCount (%d) and MaxCount (%d) must be at least 1, MinCount <= MaxCount", minC, maxC)
	}
	subnetID, groups := p.str("SubnetId"), p.strs("SecurityGroupId")
	public := false
	if nis := p.list("NetworkInterface"); len(nis) > 0 {
		if subnetID != "" || len(groups) > 0 {
			return nil, badRequest("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request")
		}
		subnetID, groups, public = nis[0].str("SubnetId"), nis[0].strs("SecurityGroupId"), nis[0].bool("AssociatePublicIpAddress")
	}
	if subnetID == "" {
		subnetID = s.subnet.ID
	}
	if subnetID != s.subnet.ID {
		return nil, badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", subnetID)
	}
	if len(groups) == 0 {
		for id, g := range s.groups {
			if g.Name == "default" {
				groups = []string{id}
			}
		}
	}
	for _, g := range groups {
		sg, ok := s.groups[g]
		if !ok || !s.visible(g, now) {
			return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", g, s.vpc.ID)
		}
		if sg.VPC != s.subnet.VPC {
			return nil, badRequest("InvalidParameter", "Security group %s and subnet %s belong to different networks.", g, subnetID)
		}
	}
	ud, err := base64.StdEncoding.DecodeString(p.str("UserData"))
	if err != nil {
		return nil, badRequest("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
	}
	if len(ud) > 16384 {
		return nil, badRequest("InvalidParameterValue", "User data is limited to 16384 bytes")
	}
	httpTokens := p.str("MetadataOptions.HttpTokens")
	switch httpTokens {
	case "":
		httpTokens = "optional"
	case "optional", "required":
	default:
		return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for HttpTokens.", httpTokens)
	}
	rootSize, rootType := 8, "gp2"
	for _, bd := range p.list("BlockDeviceMapping") {
		if bd.str("DeviceName") != img.RootDevice {
			return nil, badRequest("InvalidBlockDeviceMapping", "only the root device %s may be mapped in this fake, not %q", img.RootDevice, bd.str("DeviceName"))
		}
		rootSize = bd.int("Ebs.VolumeSize", rootSize)
		if t := bd.str("Ebs.VolumeType"); t != "" {
			rootType = t
		}
	}
	if rootSize < 1 || rootSize > 16384 {
		return nil, badRequest("InvalidParameterValue", "Volume of %d GiB is out of range", rootSize)
	}
	free := s.freeAddresses()
	if free < minC {
		return nil, badRequest("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", subnetID)
	}
	n := min(maxC, free)
	r := &reservation{ID: s.newID("r"), hash: hash}
	tags := p.tagSpecs("instance")
	for i := range n {
		in := &instance{
			ID: s.newID("i"), Type: typ.Name, Image: img.ID, Subnet: subnetID, VPC: s.subnet.VPC, KeyName: p.str("KeyName"),
			Token: token, Reservation: r.ID, Arch: img.Arch, PrivateIP: s.allocIP(), Groups: groups, UserData: ud,
			HTTPTokens: httpTokens, HopLimit: p.int("MetadataOptions.HttpPutResponseHopLimit", 1),
			RootSize: rootSize, RootType: rootType, Profile: p.str("IamInstanceProfile.Name"),
			State: statePending, Launched: now, Index: i,
		}
		if public {
			in.PublicIP = fmt.Sprintf("198.51.100.%d", 10+len(s.order)%240) // TEST-NET-2: never routed
		}
		s.instances[in.ID] = in
		s.order = append(s.order, in.ID)
		s.born(in.ID, now, copyTags(tags))
		r.instances = append(r.instances, in.ID)
		if s.o.Booter != nil {
			s.boot(in, img)
		}
	}
	if token != "" {
		s.tokens[token] = r
	}
	return s.reservationXML(r), nil
}

// boot hands in to the Booter in the background. Called with s.mu held.
func (s *Server) boot(in *instance, img *image) {
	m := Machine{
		InstanceID: in.ID, ImageID: img.ID, Boot: img.Boot, PrivateIP: netip.MustParseAddr(in.PrivateIP),
		Subnet: netip.MustParsePrefix(s.subnet.CIDR), UserData: in.UserData, Tags: copyTags(s.tags[in.ID]),
		IMDS: s.IMDSHandler(in.ID),
	}
	go func() {
		run, err := s.o.Booter.Boot(m)
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case err != nil:
			in.bootErr = err.Error()
			in.State, in.Reason, in.PrivateIP = stateTerminated, "Server.InternalError: "+err.Error(), ""
		case in.State != statePending: // terminated while booting
			in.running = run
			s.stop(in)
		default:
			in.running, in.State = run, stateRunning
		}
	}()
}

// stop powers a booted instance off in the background; it turns
// terminated once the Booter has stopped it. Called with s.mu held.
func (s *Server) stop(in *instance) {
	run := in.running
	if run == nil {
		return
	}
	in.stopping = true
	go func() {
		_ = run.Stop()
		s.mu.Lock()
		defer s.mu.Unlock()
		in.stopping = false
	}()
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// freeAddresses counts the subnet's addresses no live instance holds.
func (s *Server) freeAddresses() int {
	p := netip.MustParsePrefix(s.subnet.CIDR)
	total := 1<<(32-p.Bits()) - 5
	used := 0
	for _, in := range s.instances {
		if in.PrivateIP != "" {
			used++
		}
	}
	return total - used
}

// allocIP hands out the next free address of the subnet.
func (s *Server) allocIP() string {
	p := netip.MustParsePrefix(s.subnet.CIDR)
	used := map[string]bool{}
	for _, in := range s.instances {
		used[in.PrivateIP] = true
	}
	first := p.Addr().Next().Next().Next().Next()
	for a := s.nextIP; ; {
		if !p.Contains(a) || isBroadcast(p, a) {
			a = first
		}
		if !used[a.String()] {
			s.nextIP = a.Next()
			return a.String()
		}
		a = a.Next()
	}
}

func isBroadcast(p netip.Prefix, a netip.Addr) bool {
	return !p.Contains(a.Next())
}

func (s *Server) reservationXML(r *reservation) any {
	return s.xmlReservation(r.ID, r.instances)
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Groups        []xmlGroup    `xml:"groupSet>item"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlInstance struct {
	InstanceID       string     `xml:"instanceId"`
	ImageID          string     `xml:"imageId"`
	State            xmlState   `xml:"instanceState"`
	PrivateDNSName   string     `xml:"privateDnsName"`
	DNSName          string     `xml:"dnsName"`
	Reason           string     `xml:"reason"`
	KeyName          string     `xml:"keyName,omitempty"`
	AmiLaunchIndex   int        `xml:"amiLaunchIndex"`
	InstanceType     string     `xml:"instanceType"`
	LaunchTime       string     `xml:"launchTime"`
	AvailabilityZone string     `xml:"placement>availabilityZone"`
	SubnetID         string     `xml:"subnetId,omitempty"`
	VpcID            string     `xml:"vpcId,omitempty"`
	PrivateIP        string     `xml:"privateIpAddress,omitempty"`
	PublicIP         string     `xml:"ipAddress,omitempty"`
	Groups           []xmlGroup `xml:"groupSet>item"`
	Architecture     string     `xml:"architecture"`
	RootDeviceType   string     `xml:"rootDeviceType"`
	RootDeviceName   string     `xml:"rootDeviceName"`
	BlockDevices     []struct {
		DeviceName string `xml:"deviceName"`
		VolumeID   string `xml:"ebs>volumeId"`
		Status     string `xml:"ebs>status"`
		Delete     bool   `xml:"ebs>deleteOnTermination"`
	} `xml:"blockDeviceMapping>item"`
	VirtualizationType string    `xml:"virtualizationType"`
	ClientToken        string    `xml:"clientToken,omitempty"`
	Tags               []xmlTag  `xml:"tagSet>item,omitempty"`
	Hypervisor         string    `xml:"hypervisor"`
	StateReason        *xmlState `xml:"stateReason,omitempty"`
	MetadataOptions    struct {
		State      string `xml:"state"`
		HTTPTokens string `xml:"httpTokens"`
		HopLimit   int    `xml:"httpPutResponseHopLimit"`
		Endpoint   string `xml:"httpEndpoint"`
	} `xml:"metadataOptions"`
	IamInstanceProfile *struct {
		Arn string `xml:"arn"`
	} `xml:"iamInstanceProfile,omitempty"`
}

func (s *Server) xmlReservation(id string, ids []string) xmlReservation {
	r := xmlReservation{ReservationID: id, OwnerID: s.o.AccountID}
	for _, iid := range ids {
		in := s.instances[iid]
		x := xmlInstance{
			InstanceID: in.ID, ImageID: in.Image, State: xmlState{stateCodes[in.State], in.State},
			Reason: in.Reason, KeyName: in.KeyName, AmiLaunchIndex: in.Index, InstanceType: in.Type,
			LaunchTime: in.Launched.UTC().Format(time.RFC3339), AvailabilityZone: s.subnet.AZ,
			Architecture: in.Arch, RootDeviceType: "ebs", RootDeviceName: "/dev/xvda", VirtualizationType: "hvm",
			ClientToken: in.Token, Tags: tagSet(s.tags[in.ID]), Hypervisor: "xen",
		}
		if in.State != stateTerminated {
			x.SubnetID, x.VpcID, x.PrivateIP, x.PublicIP = in.Subnet, in.VPC, in.PrivateIP, in.PublicIP
			x.PrivateDNSName = "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal"
			x.BlockDevices = append(x.BlockDevices, struct {
				DeviceName string `xml:"deviceName"`
				VolumeID   string `xml:"ebs>volumeId"`
				Status     string `xml:"ebs>status"`
				Delete     bool   `xml:"ebs>deleteOnTermination"`
			}{"/dev/xvda", "vol-" + in.ID[2:], "attached", true})
			for _, g := range in.Groups {
				x.Groups = append(x.Groups, xmlGroup{GroupID: g, GroupName: s.groupName(g)})
			}
		}
		if in.Reason != "" {
			x.StateReason = &xmlState{Name: in.Reason}
		}
		x.MetadataOptions.State, x.MetadataOptions.HTTPTokens, x.MetadataOptions.HopLimit, x.MetadataOptions.Endpoint = "applied", in.HTTPTokens, in.HopLimit, "enabled"
		if in.Profile != "" {
			x.IamInstanceProfile = &struct {
				Arn string `xml:"arn"`
			}{fmt.Sprintf("arn:aws:iam::%s:instance-profile/%s", s.o.AccountID, in.Profile)}
		}
		r.Instances = append(r.Instances, x)
	}
	if len(r.Instances) > 0 {
		for _, g := range s.instances[ids[0]].Groups {
			r.Groups = append(r.Groups, xmlGroup{GroupID: g, GroupName: s.groupName(g)})
		}
	}
	return r
}

func (s *Server) groupName(id string) string {
	if g, ok := s.groups[id]; ok {
		return g.Name
	}
	return ""
}

// instanceField answers DescribeInstances filters.
func (s *Server) instanceField(in *instance, name string) []string {
	if v, ok := tagFields(s.tags[in.ID], name); ok {
		return v
	}
	switch name {
	case "instance-id":
		return []string{in.ID}
	case "instance-state-name":
		return []string{in.State}
	case "instance-state-code":
		return []string{strconv.Itoa(stateCodes[in.State])}
	case "client-token":
		return []string{in.Token}
	case "vpc-id":
		return []string{in.VPC}
	case "subnet-id":
		return []string{in.Subnet}
	case "image-id":
		return []string{in.Image}
	case "instance-type":
		return []string{in.Type}
	case "private-ip-address":
		return []string{in.PrivateIP}
	case "instance.group-id":
		return in.Groups
	case "reservation-id":
		return []string{in.Reservation}
	}
	return nil
}

func validInstanceID(id string) bool {
	rest, ok := strings.CutPrefix(id, "i-")
	if !ok || (len(rest) != 8 && len(rest) != 17) {
		return false
	}
	_, err := hex.DecodeString(strings.Repeat("0", len(rest)%2) + rest)
	return err == nil
}

// visibleInstances resolves InstanceId.N as EC2 does: a malformed id or
// one not (yet) visible fails the whole call.
func (s *Server) visibleInstances(ids []string, now time.Time) ([]*instance, *apiError) {
	var out []*instance
	for _, id := range ids {
		if !validInstanceID(id) {
			return nil, badRequest("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
		}
		in, ok := s.instances[id]
		if !ok || !s.visible(id, now) {
			return nil, badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		out = append(out, in)
	}
	return out, nil
}

func (s *Server) describeInstances(p *params, now time.Time) (any, *apiError) {
	ids := p.strs("InstanceId")
	var cands []*instance
	if len(ids) > 0 {
		var aerr *apiError
		if cands, aerr = s.visibleInstances(ids, now); aerr != nil {
			return nil, aerr
		}
	} else {
		for _, id := range s.order {
			if s.visible(id, now) {
				cands = append(cands, s.instances[id])
			}
		}
	}
	fs := p.filters()
	var order []string
	byRes := map[string][]string{}
	for _, in := range cands {
		if !matches(fs, func(n string) []string { return s.instanceField(in, n) }) {
			continue
		}
		if _, ok := byRes[in.Reservation]; !ok {
			order = append(order, in.Reservation)
		}
		byRes[in.Reservation] = append(byRes[in.Reservation], in.ID)
	}
	out := struct {
		Reservations []xmlReservation `xml:"reservationSet>item"`
	}{}
	for _, r := range order {
		out.Reservations = append(out.Reservations, s.xmlReservation(r, byRes[r]))
	}
	return out, nil
}

func (s *Server) terminateInstances(p *params, now time.Time) (any, *apiError) {
	ins, aerr := s.visibleInstances(p.strs("InstanceId"), now)
	if aerr != nil {
		return nil, aerr
	}
	type change struct {
		InstanceID string   `xml:"instanceId"`
		Current    xmlState `xml:"currentState"`
		Previous   xmlState `xml:"previousState"`
	}
	out := struct {
		Instances []change `xml:"instancesSet>item"`
	}{}
	for _, in := range ins {
		prev := in.State
		if in.State == statePending || in.State == stateRunning {
			in.State, in.Terminating = stateShuttingDown, now
			in.Reason = "User initiated (" + now.UTC().Format("2006-01-02 15:04:05 MST") + ")"
			s.stop(in)
		}
		out.Instances = append(out.Instances, change{in.ID, xmlState{stateCodes[in.State], in.State}, xmlState{stateCodes[prev], prev}})
	}
	return out, nil
}

func (s *Server) getConsoleOutput(p *params, now time.Time) (any, *apiError) {
	ins, aerr := s.visibleInstances([]string{p.str("InstanceId")}, now)
	if aerr != nil {
		return nil, aerr
	}
	in := ins[0]
	var console []byte
	switch {
	case in.running != nil:
		console = in.running.Console()
	case in.bootErr != "":
		console = []byte("boot failed: " + in.bootErr + "\n")
	case s.o.Booter == nil:
		console = fmt.Appendf(nil, "ec2fake: instance %s of %s (%s) is %s; nothing boots in this fake without a Booter; user-data %d bytes\n",
			in.ID, in.Image, in.Type, in.State, len(in.UserData))
	}
	if len(console) > 64<<10 { // EC2 keeps the last 64 KiB
		console = console[len(console)-64<<10:]
	}
	return struct {
		InstanceID string `xml:"instanceId"`
		Timestamp  string `xml:"timestamp"`
		Output     string `xml:"output"`
	}{in.ID, now.UTC().Format(time.RFC3339), base64.StdEncoding.EncodeToString(console)}, nil
}
