package aws

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// placement is where an environment's instances go.
type placement struct {
	Subnet, VPC, AZ string
	MapPublicIP     bool
}

// subnet resolves the configured subnet, or the default VPC's default
// subnet (the first availability zone's, by name).
func (c *clients) subnet(ctx context.Context) (placement, error) {
	in := &ec2.DescribeSubnetsInput{}
	if c.cfg.SubnetID != "" {
		in.SubnetIds = []string{c.cfg.SubnetID}
	} else {
		vpcs, err := c.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []types.Filter{filter("is-default", "true")}})
		if err != nil {
			return placement{}, classify(err)
		}
		if len(vpcs.Vpcs) == 0 {
			return placement{}, userErrorf("config.subnet_id", "region %s has no default VPC; set subnet_id to a subnet k2 may launch instances in", c.region)
		}
		in.Filters = []types.Filter{filter("vpc-id", aws.ToString(vpcs.Vpcs[0].VpcId)), filter("default-for-az", "true")}
	}
	out, err := c.ec2.DescribeSubnets(ctx, in)
	if errorCode(err) == "InvalidSubnetID.NotFound" {
		return placement{}, userErrorf("config.subnet_id", "subnet %s does not exist in region %s", c.cfg.SubnetID, c.region)
	}
	if err != nil {
		return placement{}, classify(err)
	}
	if len(out.Subnets) == 0 {
		return placement{}, userErrorf("config.subnet_id", "the default VPC in %s has no default subnet; set subnet_id", c.region)
	}
	sort.Slice(out.Subnets, func(i, j int) bool {
		return aws.ToString(out.Subnets[i].AvailabilityZone) < aws.ToString(out.Subnets[j].AvailabilityZone)
	})
	s := out.Subnets[0]
	return placement{Subnet: aws.ToString(s.SubnetId), VPC: aws.ToString(s.VpcId), AZ: aws.ToString(s.AvailabilityZone),
		MapPublicIP: aws.ToBool(s.MapPublicIpOnLaunch)}, nil
}

func filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

// groupName is the environment's security group.
func groupName(env string) string { return "k2-" + env }

// findGroup returns the environment's security group in vpc, or "".
func (c *clients) findGroup(ctx context.Context, env, vpc string) (string, error) {
	fs := []types.Filter{filter("tag:"+TagEnvironment, env), filter("tag:"+TagManagedBy, "k2")}
	if vpc != "" {
		fs = append(fs, filter("vpc-id", vpc))
	}
	out, err := c.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: fs})
	if err != nil {
		return "", classify(err)
	}
	if len(out.SecurityGroups) == 0 {
		return "", nil
	}
	return aws.ToString(out.SecurityGroups[0].GroupId), nil
}

// ensureGroup finds or creates the environment's security group and makes
// sure it has its rules: the API and join ports from the configured CIDRs,
// and everything from members of the group.
func (c *clients) ensureGroup(ctx context.Context, env, reqID string, pl placement, apiPort, joinPort int) (string, error) {
	id, err := c.findGroup(ctx, env, pl.VPC)
	if err != nil {
		return "", err
	}
	if id == "" {
		out, err := c.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
			GroupName:   aws.String(groupName(env)),
			Description: aws.String("k2 environment " + env + ": API from the configured CIDRs, node to node inside the group"),
			VpcId:       aws.String(pl.VPC),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup,
				Tags: c.tags(env, reqID, map[string]string{"Name": groupName(env)})}},
		})
		switch {
		case errorCode(err) == "InvalidGroup.Duplicate":
			// A concurrent Create made it, or it is not ours: find it by
			// name and check its tags.
			var got *ec2.DescribeSecurityGroupsOutput
			derr := retryEventual(ctx, c.cfg.poll, func() error {
				var err error
				got, err = c.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
					filter("group-name", groupName(env)), filter("vpc-id", pl.VPC)}})
				if err == nil && len(got.SecurityGroups) == 0 {
					return errNotYet // made a moment ago: EC2 does not show it yet
				}
				return err
			}, notYet)
			if derr != nil {
				return "", fmt.Errorf("finding security group %s: %w", groupName(env), classify(derr))
			}
			g := got.SecurityGroups[0]
			if tagValue(g.Tags, TagManagedBy) != "k2" || tagValue(g.Tags, TagEnvironment) != env {
				return "", userErrorf("config.subnet_id", "VPC %s already has a security group %s (%s) that k2 did not make; delete or rename it, or deploy to another VPC",
					pl.VPC, groupName(env), aws.ToString(g.GroupId))
			}
			id = aws.ToString(g.GroupId)
		case err != nil:
			return "", classify(err)
		default:
			id = aws.ToString(out.GroupId)
		}
	}
	var ranges []types.IpRange
	for _, cidr := range c.cfg.APICIDRs {
		ranges = append(ranges, types.IpRange{CidrIp: aws.String(cidr), Description: aws.String("k2 API")})
	}
	for _, perm := range []types.IpPermission{
		{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(apiPort)), ToPort: aws.Int32(int32(apiPort)), IpRanges: ranges},
		{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(joinPort)), ToPort: aws.Int32(int32(joinPort)), IpRanges: joinRanges(ranges)},
		{IpProtocol: aws.String("-1"), UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(id), Description: aws.String("k2 node to node")}}},
	} {
		err := retryEventual(ctx, c.cfg.poll, func() error {
			_, err := c.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
				GroupId: aws.String(id), IpPermissions: []types.IpPermission{perm}})
			return err
		}, "InvalidGroup.NotFound")
		if err != nil && errorCode(err) != "InvalidPermission.Duplicate" {
			return "", classify(err)
		}
	}
	return id, nil
}

// errNotYet stands for an empty answer about a resource made a moment ago.
var errNotYet = &smithy.GenericAPIError{Code: notYet, Message: "not visible yet"}

const notYet = "k2.NotVisibleYet"

// joinRanges labels the API ranges for the join port.
func joinRanges(api []types.IpRange) []types.IpRange {
	out := make([]types.IpRange, len(api))
	for i, r := range api {
		out[i] = types.IpRange{CidrIp: r.CidrIp, Description: aws.String("k2 join (image upload)")}
	}
	return out
}

// deleteGroups removes the environment's security groups, retrying while
// terminated instances still hold them (DependencyViolation) until ctx
// ends.
func (c *clients) deleteGroups(ctx context.Context, env string) error {
	out, err := c.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		filter("tag:"+TagEnvironment, env), filter("tag:"+TagManagedBy, "k2")}})
	if err != nil {
		return classify(err)
	}
	for _, g := range out.SecurityGroups {
		id := aws.ToString(g.GroupId)
		err := retryDependency(ctx, c.cfg.poll, func() error {
			_, err := c.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
			return err
		})
		if err != nil && errorCode(err) != "InvalidGroup.NotFound" {
			return fmt.Errorf("deleting security group %s: %w", id, classify(err))
		}
	}
	return nil
}

// retryDependency retries f while it fails with DependencyViolation (the
// network interfaces of terminated instances take a while to go).
func retryDependency(ctx context.Context, poll time.Duration, f func() error) error {
	for {
		err := f()
		if errorCode(err) != "DependencyViolation" {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// tags are the tags of a resource k2 makes for env and request reqID.
func (c *clients) tags(env, reqID string, extra map[string]string) []types.Tag {
	m := map[string]string{TagEnvironment: env, TagRequestID: reqID, TagManagedBy: "k2"}
	for k, v := range c.cfg.extraTags {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func tagValue(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// envOf is the environment of a resource by its tags, or "".
func envOf(tags []types.Tag) string { return strings.TrimSpace(tagValue(tags, TagEnvironment)) }
