package ec2fake

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

type vpc struct {
	ID, CIDR string
	Default  bool
}

type subnet struct {
	ID, VPC, CIDR, AZ string
}

type securityGroup struct {
	ID, Name, Description, VPC string
	Rules                      []rule
}

type rule struct {
	ID       string
	Protocol string
	From, To int
	CIDRs    []string
	Groups   []string
}

func (r rule) same(o rule) bool {
	return r.Protocol == o.Protocol && r.From == o.From && r.To == o.To &&
		strings.Join(r.CIDRs, ",") == strings.Join(o.CIDRs, ",") && strings.Join(r.Groups, ",") == strings.Join(o.Groups, ",")
}

// resourceType is the EC2 resource type of an id, by its prefix.
func resourceType(id string) string {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "i":
		return "instance"
	case "sg":
		return "security-group"
	case "ami":
		return "image"
	case "snap":
		return "snapshot"
	case "vpc":
		return "vpc"
	case "subnet":
		return "subnet"
	case "import":
		return "import-snapshot-task"
	}
	return ""
}

func (s *Server) createSecurityGroup(p *params, now time.Time) (any, *apiError) {
	name, desc, vpcID := p.str("GroupName"), p.str("GroupDescription"), p.str("VpcId")
	switch {
	case name == "" || desc == "":
		return nil, badRequest("MissingParameter", "The request must contain the parameters GroupName and GroupDescription")
	case strings.HasPrefix(name, "sg-"):
		return nil, badRequest("InvalidParameterValue", "Group names may not be in the format sg-*")
	case len(name) > 255 || len(desc) > 255:
		return nil, badRequest("InvalidParameterValue", "GroupName and GroupDescription are limited to 255 characters")
	}
	if vpcID == "" {
		vpcID = s.vpc.ID
	}
	if vpcID != s.vpc.ID {
		return nil, badRequest("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", vpcID)
	}
	for _, g := range s.groups {
		if g.Name == name && g.VPC == vpcID {
			return nil, badRequest("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpcID)
		}
	}
	g := &securityGroup{ID: s.newID("sg"), Name: name, Description: desc, VPC: vpcID}
	s.groups[g.ID] = g
	tags := p.tagSpecs("security-group")
	s.born(g.ID, now, tags)
	return struct {
		GroupID string   `xml:"groupId"`
		Tags    []xmlTag `xml:"tagSet>item,omitempty"`
	}{g.ID, tagSet(tags)}, nil
}

// visibleGroup finds a group by id, as EC2 does after its consistency delay.
func (s *Server) visibleGroup(id string, now time.Time) (*securityGroup, *apiError) {
	g, ok := s.groups[id]
	if !ok || !s.visible(id, now) {
		return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return g, nil
}

func (s *Server) describeSecurityGroups(p *params, now time.Time) (any, *apiError) {
	ids, names := p.strs("GroupId"), p.strs("GroupName")
	var cands []*securityGroup
	for _, id := range ids {
		g, aerr := s.visibleGroup(id, now)
		if aerr != nil {
			return nil, aerr
		}
		cands = append(cands, g)
	}
	if len(ids) == 0 {
		for id, g := range s.groups {
			if s.visible(id, now) && (len(names) == 0 || contains(names, g.Name)) {
				cands = append(cands, g)
			}
		}
	}
	type xmlRange struct {
		CIDR string `xml:"cidrIp"`
	}
	type xmlPair struct {
		UserID  string `xml:"userId"`
		GroupID string `xml:"groupId"`
	}
	type xmlPerm struct {
		Protocol string     `xml:"ipProtocol"`
		From     *int       `xml:"fromPort,omitempty"`
		To       *int       `xml:"toPort,omitempty"`
		Groups   []xmlPair  `xml:"groups>item"`
		Ranges   []xmlRange `xml:"ipRanges>item"`
	}
	type xmlSG struct {
		OwnerID     string    `xml:"ownerId"`
		GroupName   string    `xml:"groupName"`
		Description string    `xml:"groupDescription"`
		GroupID     string    `xml:"groupId"`
		Ingress     []xmlPerm `xml:"ipPermissions>item"`
		Egress      []xmlPerm `xml:"ipPermissionsEgress>item"`
		VpcID       string    `xml:"vpcId"`
		Tags        []xmlTag  `xml:"tagSet>item,omitempty"`
	}
	out := struct {
		Groups []xmlSG `xml:"securityGroupInfo>item"`
	}{}
	fs := p.filters()
	sortByID(cands, func(g *securityGroup) string { return g.ID })
	for _, g := range cands {
		if !matches(fs, func(n string) []string { return s.groupField(g, n) }) {
			continue
		}
		x := xmlSG{OwnerID: s.o.AccountID, GroupName: g.Name, Description: g.Description, GroupID: g.ID, VpcID: g.VPC, Tags: tagSet(s.tags[g.ID]),
			Egress: []xmlPerm{{Protocol: "-1", Ranges: []xmlRange{{"0.0.0.0/0"}}}}}
		for _, r := range g.Rules {
			perm := xmlPerm{Protocol: r.Protocol}
			if r.Protocol != "-1" {
				from, to := r.From, r.To
				perm.From, perm.To = &from, &to
			}
			for _, c := range r.CIDRs {
				perm.Ranges = append(perm.Ranges, xmlRange{c})
			}
			for _, gid := range r.Groups {
				perm.Groups = append(perm.Groups, xmlPair{s.o.AccountID, gid})
			}
			x.Ingress = append(x.Ingress, perm)
		}
		out.Groups = append(out.Groups, x)
	}
	return out, nil
}

func (s *Server) groupField(g *securityGroup, name string) []string {
	if v, ok := tagFields(s.tags[g.ID], name); ok {
		return v
	}
	switch name {
	case "group-id":
		return []string{g.ID}
	case "group-name":
		return []string{g.Name}
	case "vpc-id":
		return []string{g.VPC}
	case "description":
		return []string{g.Description}
	}
	return nil
}

func (s *Server) deleteSecurityGroup(p *params, now time.Time) (any, *apiError) {
	id := p.str("GroupId")
	if id == "" {
		for gid, g := range s.groups {
			if g.Name == p.str("GroupName") && g.VPC == s.vpc.ID {
				id = gid
			}
		}
	}
	g, aerr := s.visibleGroup(id, now)
	if aerr != nil {
		return nil, aerr
	}
	if g.Name == "default" {
		return nil, badRequest("CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", id)
	}
	for _, in := range s.instances {
		if in.State != stateTerminated && contains(in.Groups, id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
		}
	}
	for _, o := range s.groups {
		for _, r := range o.Rules {
			if o.ID != id && contains(r.Groups, id) {
				return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
			}
		}
	}
	delete(s.groups, id)
	delete(s.tags, id)
	return struct {
		Return  bool   `xml:"return"`
		GroupID string `xml:"groupId"`
	}{true, id}, nil
}

func (s *Server) authorizeIngress(p *params, now time.Time) (any, *apiError) {
	g, aerr := s.visibleGroup(p.str("GroupId"), now)
	if aerr != nil {
		return nil, aerr
	}
	var add []rule
	perms := p.list("IpPermissions")
	if len(perms) == 0 && p.has("IpProtocol") { // the legacy single-rule form
		perms = []*params{{children: map[string]*params{
			"IpProtocol": {val: p.str("IpProtocol")}, "FromPort": {val: p.str("FromPort")}, "ToPort": {val: p.str("ToPort")},
			"IpRanges": {children: map[string]*params{"1": {children: map[string]*params{"CidrIp": {val: p.str("CidrIp")}}}}},
		}}}
	}
	if len(perms) == 0 {
		return nil, badRequest("MissingParameter", "No IpPermissions given")
	}
	for _, perm := range perms {
		proto := perm.str("IpProtocol")
		switch proto {
		case "tcp", "udp", "icmp", "-1", "6", "17", "1":
		default:
			return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for IP protocol. Unknown protocol.", proto)
		}
		r := rule{Protocol: proto, From: perm.int("FromPort", -1), To: perm.int("ToPort", -1)}
		if proto != "-1" && (r.From < 0 && proto != "icmp" || r.To < r.From || r.To > 65535) {
			return nil, badRequest("InvalidParameterValue", "Invalid port range %d-%d", r.From, r.To)
		}
		for _, ipr := range perm.list("IpRanges") {
			c := ipr.str("CidrIp")
			if _, err := netip.ParsePrefix(c); err != nil {
				return nil, badRequest("InvalidParameterValue", "CIDR block %s is malformed", c)
			}
			r.CIDRs = append(r.CIDRs, c)
		}
		for _, pair := range perm.list("Groups") {
			gid := pair.str("GroupId")
			if _, aerr := s.visibleGroup(gid, now); aerr != nil {
				return nil, aerr
			}
			r.Groups = append(r.Groups, gid)
		}
		if len(r.CIDRs) == 0 && len(r.Groups) == 0 {
			return nil, badRequest("MissingParameter", "A rule needs IpRanges or Groups")
		}
		for _, old := range g.Rules {
			if old.same(r) {
				return nil, badRequest("InvalidPermission.Duplicate", "the specified rule \"peer: %s, %s, from port: %d, to port: %d, ALLOW\" already exists",
					strings.Join(append(r.CIDRs, r.Groups...), ","), strings.ToUpper(proto), r.From, r.To)
			}
		}
		r.ID = s.newID("sgr")
		add = append(add, r)
	}
	g.Rules = append(g.Rules, add...)
	type xmlRule struct {
		ID       string `xml:"securityGroupRuleId"`
		GroupID  string `xml:"groupId"`
		Owner    string `xml:"groupOwnerId"`
		IsEgress bool   `xml:"isEgress"`
		Protocol string `xml:"ipProtocol"`
		From     int    `xml:"fromPort"`
		To       int    `xml:"toPort"`
		CIDR     string `xml:"cidrIpv4,omitempty"`
		RefGroup string `xml:"referencedGroupInfo>groupId,omitempty"`
	}
	out := struct {
		Return bool      `xml:"return"`
		Rules  []xmlRule `xml:"securityGroupRuleSet>item"`
	}{Return: true}
	for _, r := range add {
		for _, c := range r.CIDRs {
			out.Rules = append(out.Rules, xmlRule{ID: r.ID, GroupID: g.ID, Owner: s.o.AccountID, Protocol: r.Protocol, From: r.From, To: r.To, CIDR: c})
		}
		for _, gid := range r.Groups {
			out.Rules = append(out.Rules, xmlRule{ID: r.ID, GroupID: g.ID, Owner: s.o.AccountID, Protocol: r.Protocol, From: r.From, To: r.To, RefGroup: gid})
		}
	}
	return out, nil
}

// exists reports whether a taggable resource exists and is visible.
func (s *Server) exists(id string, now time.Time) bool {
	if !s.visible(id, now) {
		return false
	}
	switch resourceType(id) {
	case "instance":
		return s.instances[id] != nil
	case "security-group":
		return s.groups[id] != nil
	case "image":
		return s.images[id] != nil
	case "snapshot":
		return s.snapshots[id] != nil
	case "vpc", "subnet":
		return true
	case "import-snapshot-task":
		return s.tasks[id] != nil
	}
	return false
}

func (s *Server) createTags(p *params, now time.Time) (any, *apiError) {
	ids := p.strs("ResourceId")
	if len(ids) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	for _, id := range ids {
		if !s.exists(id, now) {
			code := "InvalidID"
			switch resourceType(id) {
			case "instance":
				code = "InvalidInstanceID.NotFound"
			case "security-group":
				code = "InvalidGroup.NotFound"
			case "image":
				code = "InvalidAMIID.NotFound"
			}
			return nil, badRequest(code, "The ID '%s' is not valid", id)
		}
	}
	for _, id := range ids {
		if s.tags[id] == nil {
			s.tags[id] = map[string]string{}
		}
		for _, t := range p.list("Tag") {
			k := t.str("Key")
			if k == "" || strings.HasPrefix(k, "aws:") || len(k) > 128 || len(t.str("Value")) > 256 {
				return nil, badRequest("InvalidParameterValue", "Tag key %q is empty, reserved (aws:) or too long", k)
			}
			s.tags[id][k] = t.str("Value")
		}
		if len(s.tags[id]) > 50 {
			return nil, badRequest("TagLimitExceeded", "The maximum number of tags (50) for %s has been reached", id)
		}
	}
	return struct {
		Return bool `xml:"return"`
	}{true}, nil
}

func (s *Server) describeTags(p *params, now time.Time) (any, *apiError) {
	type xmlResTag struct {
		ResourceID   string `xml:"resourceId"`
		ResourceType string `xml:"resourceType"`
		Key          string `xml:"key"`
		Value        string `xml:"value"`
	}
	out := struct {
		Tags []xmlResTag `xml:"tagSet>item"`
	}{}
	var ids []string
	for id := range s.tags {
		if s.exists(id, now) {
			ids = append(ids, id)
		}
	}
	sortByID(ids, func(s string) string { return s })
	fs := p.filters()
	for _, id := range ids {
		for _, t := range tagSet(s.tags[id]) {
			field := func(n string) []string {
				switch n {
				case "resource-id":
					return []string{id}
				case "resource-type":
					return []string{resourceType(id)}
				case "key":
					return []string{t.Key}
				case "value":
					return []string{t.Value}
				}
				v, _ := tagFields(s.tags[id], n)
				return v
			}
			if matches(fs, field) {
				out.Tags = append(out.Tags, xmlResTag{id, resourceType(id), t.Key, t.Value})
			}
		}
	}
	return out, nil
}

func (s *Server) describeVpcs(p *params, now time.Time) (any, *apiError) {
	for _, id := range p.strs("VpcId") {
		if id != s.vpc.ID {
			return nil, badRequest("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
		}
	}
	type xmlVpc struct {
		VpcID     string   `xml:"vpcId"`
		State     string   `xml:"state"`
		CIDR      string   `xml:"cidrBlock"`
		OwnerID   string   `xml:"ownerId"`
		Tenancy   string   `xml:"instanceTenancy"`
		IsDefault bool     `xml:"isDefault"`
		Tags      []xmlTag `xml:"tagSet>item,omitempty"`
	}
	out := struct {
		Vpcs []xmlVpc `xml:"vpcSet>item"`
	}{}
	v := s.vpc
	field := func(n string) []string {
		if t, ok := tagFields(s.tags[v.ID], n); ok {
			return t
		}
		switch n {
		case "vpc-id":
			return []string{v.ID}
		case "is-default", "isDefault":
			return []string{strconv.FormatBool(v.Default)}
		case "state":
			return []string{"available"}
		case "cidr", "cidr-block-association.cidr-block":
			return []string{v.CIDR}
		}
		return nil
	}
	if matches(p.filters(), field) {
		out.Vpcs = append(out.Vpcs, xmlVpc{v.ID, "available", v.CIDR, s.o.AccountID, "default", v.Default, tagSet(s.tags[v.ID])})
	}
	return out, nil
}

func (s *Server) describeSubnets(p *params, now time.Time) (any, *apiError) {
	for _, id := range p.strs("SubnetId") {
		if id != s.subnet.ID {
			return nil, badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
		}
	}
	type xmlSubnet struct {
		SubnetID  string   `xml:"subnetId"`
		State     string   `xml:"state"`
		VpcID     string   `xml:"vpcId"`
		CIDR      string   `xml:"cidrBlock"`
		Available int      `xml:"availableIpAddressCount"`
		AZ        string   `xml:"availabilityZone"`
		AZID      string   `xml:"availabilityZoneId"`
		Default   bool     `xml:"defaultForAz"`
		MapPublic bool     `xml:"mapPublicIpOnLaunch"`
		OwnerID   string   `xml:"ownerId"`
		Arn       string   `xml:"subnetArn"`
		Tags      []xmlTag `xml:"tagSet>item,omitempty"`
	}
	out := struct {
		Subnets []xmlSubnet `xml:"subnetSet>item"`
	}{}
	sn := s.subnet
	field := func(n string) []string {
		if t, ok := tagFields(s.tags[sn.ID], n); ok {
			return t
		}
		switch n {
		case "subnet-id":
			return []string{sn.ID}
		case "vpc-id":
			return []string{sn.VPC}
		case "default-for-az", "defaultForAz":
			return []string{"true"}
		case "availability-zone":
			return []string{sn.AZ}
		case "state":
			return []string{"available"}
		}
		return nil
	}
	if matches(p.filters(), field) {
		out.Subnets = append(out.Subnets, xmlSubnet{sn.ID, "available", sn.VPC, sn.CIDR, s.freeAddresses(), sn.AZ, "use1-az1", true, false,
			s.o.AccountID, "arn:aws:ec2:" + s.o.Region + ":" + s.o.AccountID + ":subnet/" + sn.ID, tagSet(s.tags[sn.ID])})
	}
	return out, nil
}

func sortByID[T any](l []T, id func(T) string) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && id(l[j]) < id(l[j-1]); j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}
