package aws

import (
	"context"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// instanceType is a chosen type with its size.
type instanceType struct {
	Name string
	CPU  int32
	MiB  int64
}

// family preference among types of equal size: burstable general purpose
// first (cheapest), then general purpose, compute, memory.
func familyRank(name string) int {
	fam, _, _ := strings.Cut(name, ".")
	for i, p := range []string{"t3", "t3a", "t4g", "m7i", "m6i", "m7g", "m6g", "m5", "c7i", "c6i", "c7g", "c6g", "r7i", "r6i", "r7g", "r6g"} {
		if fam == p {
			return i
		}
	}
	return 100
}

// chooseType returns the configured instance type, or the smallest
// current-generation, non-metal type of arch with at least cpu vCPUs and
// mem bytes (DescribeInstanceTypes, every page).
func (c *clients) chooseType(ctx context.Context, arch string, cpu int32, mem int64) (instanceType, error) {
	awsArch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[arch]
	if c.cfg.InstanceType != "" {
		out, err := c.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{types.InstanceType(c.cfg.InstanceType)}})
		if errorCode(err) == "InvalidInstanceType" {
			return instanceType{}, userErrorf("config.instance_type", "instance type %s does not exist in %s", c.cfg.InstanceType, c.region)
		}
		if err != nil {
			return instanceType{}, classify(err)
		}
		if len(out.InstanceTypes) == 0 {
			return instanceType{}, userErrorf("config.instance_type", "instance type %s is not offered in %s", c.cfg.InstanceType, c.region)
		}
		t := out.InstanceTypes[0]
		if t.ProcessorInfo == nil || !containsArch(t.ProcessorInfo.SupportedArchitectures, awsArch) {
			return instanceType{}, userErrorf("config.instance_type", "instance type %s is not %s (%s machines need a type of that architecture)", c.cfg.InstanceType, awsArch, arch)
		}
		return typeOf(t), nil
	}
	p := ec2.NewDescribeInstanceTypesPaginator(c.ec2, &ec2.DescribeInstanceTypesInput{Filters: []types.Filter{
		filter("processor-info.supported-architecture", awsArch), filter("current-generation", "true"), filter("bare-metal", "false")}})
	var all []instanceType
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return instanceType{}, classify(err)
		}
		for _, t := range page.InstanceTypes {
			all = append(all, typeOf(t))
		}
	}
	var fit []instanceType
	for _, t := range all {
		if t.CPU >= cpu && t.MiB<<20 >= mem {
			fit = append(fit, t)
		}
	}
	if len(fit) == 0 {
		return instanceType{}, userErrorf("machines", "no %s instance type in %s has %d vCPUs and %d MiB of memory (%d types looked at)", awsArch, c.region, cpu, mem>>20, len(all))
	}
	sort.Slice(fit, func(i, j int) bool {
		a, b := fit[i], fit[j]
		if a.CPU != b.CPU {
			return a.CPU < b.CPU
		}
		if a.MiB != b.MiB {
			return a.MiB < b.MiB
		}
		if familyRank(a.Name) != familyRank(b.Name) {
			return familyRank(a.Name) < familyRank(b.Name)
		}
		return a.Name < b.Name
	})
	return fit[0], nil
}

func typeOf(t types.InstanceTypeInfo) instanceType {
	it := instanceType{Name: string(t.InstanceType)}
	if t.VCpuInfo != nil {
		it.CPU = aws.ToInt32(t.VCpuInfo.DefaultVCpus)
	}
	if t.MemoryInfo != nil {
		it.MiB = aws.ToInt64(t.MemoryInfo.SizeInMiB)
	}
	sizes.Store(it.Name, it)
	return it
}

func containsArch(l []types.ArchitectureType, a string) bool {
	for _, x := range l {
		if string(x) == a {
			return true
		}
	}
	return false
}

// image resolves the AMI of arch: the configured one (checked to exist
// and be of arch), or the one the SSM parameter names.
func (c *clients) image(ctx context.Context, arch string) (string, error) {
	awsArch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[arch]
	id := c.cfg.AMI
	if id == "" {
		name := strings.ReplaceAll(c.cfg.AMIParameter, "{arch}", arch)
		out, err := c.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		if errorCode(err) == "ParameterNotFound" {
			return "", userErrorf("config.ami_parameter", "SSM parameter %s does not exist in %s; set ami, or ami_parameter to a public AMI parameter", name, c.region)
		}
		if err != nil {
			return "", classify(err)
		}
		id = aws.ToString(out.Parameter.Value)
	}
	var out *ec2.DescribeImagesOutput
	err := retryEventual(ctx, c.cfg.poll, func() error {
		var err error
		out, err = c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		return err
	}, "InvalidAMIID.NotFound")
	if code := errorCode(err); code == "InvalidAMIID.NotFound" || code == "InvalidAMIID.Malformed" || (err == nil && len(out.Images) == 0) {
		return "", userErrorf("config.ami", "AMI %s does not exist in %s (AMIs belong to one region: import or copy it there)", id, c.region)
	}
	if err != nil {
		return "", classify(err)
	}
	if got := string(out.Images[0].Architecture); got != awsArch {
		return "", userErrorf("config.ami", "AMI %s is %s, but the machine is %s; give an AMI of that architecture", id, got, arch)
	}
	return id, nil
}
