package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"k2.dev/k2/providers/sdk"
)

// List returns the environment's instances (those of one request if
// RequestID is set).
func (p *Provider) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	c, ds := session(ctx, req.Config)
	if ds.HasErrors() {
		return &sdk.ListResponse{Diagnostics: ds}, nil
	}
	fs := []types.Filter{filter("tag:"+TagManagedBy, "k2"), filter("instance-state-name", aliveStates...)}
	if req.RequestID != "" {
		fs = append(fs, filter("tag:"+TagRequestID, req.RequestID))
	}
	ins, err := c.describe(ctx, fs...)
	if err != nil {
		if diagnose(&ds, "config", err) {
			return &sdk.ListResponse{Diagnostics: ds}, nil
		}
		return nil, err
	}
	var out []sdk.Machine
	for _, in := range ins {
		out = append(out, machineOf(in))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return &sdk.ListResponse{Machines: out}, nil
}

// validInstanceID reports whether id can be an EC2 instance id.
func validInstanceID(id string) bool {
	rest, ok := strings.CutPrefix(id, "i-")
	if !ok || (len(rest) != 8 && len(rest) != 17) {
		return false
	}
	for _, r := range rest {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// Delete terminates the instances; an id that names none counts as deleted.
func (p *Provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	c, ds := session(ctx, req.Config)
	if ds.HasErrors() {
		return &sdk.DeleteResponse{Diagnostics: ds}, nil
	}
	err := c.delete(ctx, req)
	if err != nil {
		if diagnose(&ds, "config", err) {
			return &sdk.DeleteResponse{Diagnostics: ds}, nil
		}
		return nil, err
	}
	return &sdk.DeleteResponse{Deleted: req.MachineIDs}, nil
}

func (c *clients) delete(ctx context.Context, req *sdk.DeleteRequest) error {
	var ids []string
	for _, id := range req.MachineIDs {
		if validInstanceID(id) { // anything else was never an instance: gone
			ids = append(ids, id)
		}
	}
	envs := map[string]bool{}
	var mine []string
	if len(ids) > 0 {
		ins, err := c.describe(ctx, filter("instance-id", ids...))
		if err != nil {
			return err
		}
		var live []string
		for _, in := range ins {
			if e := envOf(in.Tags); e != "" && tagValue(in.Tags, TagManagedBy) == "k2" {
				envs[e] = true
			}
			mine = append(mine, aws.ToString(in.InstanceId))
			if alive(in) {
				live = append(live, aws.ToString(in.InstanceId))
			}
		}
		if len(live) > 0 {
			if _, err := c.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: live}); err != nil && errorCode(err) != "InvalidInstanceID.NotFound" {
				return classify(err)
			}
		}
	}
	if req.RequestID != "" {
		// A crashed deploy may have left a group and no instance: find the
		// group by the request that made it.
		out, err := c.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
			filter("tag:"+TagRequestID, req.RequestID), filter("tag:"+TagManagedBy, "k2")}})
		if err != nil {
			return classify(err)
		}
		for _, g := range out.SecurityGroups {
			if e := envOf(g.Tags); e != "" {
				envs[e] = true
			}
		}
	}
	for env := range envs {
		left, err := c.describe(ctx, filter("tag:"+TagEnvironment, env), filter("tag:"+TagManagedBy, "k2"), filter("instance-state-name", aliveStates...))
		if err != nil {
			return err
		}
		others := 0
		for _, in := range left {
			if !contains(mine, aws.ToString(in.InstanceId)) {
				others++
			}
		}
		if others > 0 {
			continue // the group still serves the environment's other machines
		}
		if err := c.waitTerminated(ctx, env); err != nil {
			return err
		}
		if err := c.deleteGroups(ctx, env); err != nil {
			return err
		}
	}
	return nil
}

// waitTerminated waits until none of env's instances is shutting down.
func (c *clients) waitTerminated(ctx context.Context, env string) error {
	for {
		ins, err := c.describe(ctx, filter("tag:"+TagEnvironment, env), filter("tag:"+TagManagedBy, "k2"),
			filter("instance-state-name", append([]string{"shutting-down"}, aliveStates...)...))
		if err != nil {
			return err
		}
		if len(ins) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the instances of %s to terminate: %w", env, ctx.Err())
		case <-time.After(c.cfg.poll):
		}
	}
}

// Console copies the instance's console output (GetConsoleOutput: EC2
// keeps the last 64 KiB, refreshed every few minutes on real EC2); with
// Follow it polls for more until ctx ends.
func (p *Provider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	c, ds := session(ctx, req.Config)
	if ds.HasErrors() {
		return ds.Err()
	}
	var seen []byte
	for {
		out, err := c.ec2.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(req.MachineID)})
		if err != nil {
			return classify(err)
		}
		b, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
		if err != nil {
			return fmt.Errorf("decoding the console of %s: %w", req.MachineID, err)
		}
		if _, err := req.Output.Write(newSuffix(seen, b)); err != nil {
			return err
		}
		seen = b
		if !req.Follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.cfg.poll):
		}
	}
}

// newSuffix is what cur adds to prev: the console is a sliding window.
func newSuffix(prev, cur []byte) []byte {
	if len(prev) == 0 {
		return cur
	}
	for n := min(len(prev), len(cur)); n > 0; n-- {
		if string(prev[len(prev)-n:]) == string(cur[:n]) {
			return cur[n:]
		}
	}
	return cur
}
