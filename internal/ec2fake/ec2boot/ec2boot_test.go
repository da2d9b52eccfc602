package ec2boot_test

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/internal/ec2fake/ec2boot"
)

// TestBoot boots an instance whose "OS" is a shell script: inside its
// namespace it reads its user-data from 169.254.169.254 with the IMDSv2
// token flow and prints it with its address; terminating the instance
// stops it and removes the namespace.
func TestBoot(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if why := ec2boot.Usable(); why != "" {
		t.Skip(why)
	}
	script := `t=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) &&
curl -sf -H "X-aws-ec2-metadata-token: $t" http://169.254.169.254/latest/user-data && echo &&
echo "v1: $(curl -s -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/user-data)" &&
ip -4 -o addr show eth0; exec sleep 600`
	b, err := ec2boot.New(ec2boot.Options{Dir: t.TempDir(), StopGrace: 2 * time.Second,
		Command: func(ec2fake.Machine, string) []string { return []string{"sh", "-c", script} }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fake := ec2fake.New(ec2fake.Options{SubnetCIDR: b.Subnet().String(), Booter: b})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(fake.Parameter("/aws/service/debian/release/12/latest/amd64")),
		InstanceType: "t3.micro", MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		UserData:        aws.String(base64.StdEncoding.EncodeToString([]byte("hello machine"))),
		MetadataOptions: &ec2types.InstanceMetadataOptionsRequest{HttpTokens: ec2types.HttpTokensStateRequired}})
	if err != nil {
		t.Fatal(err)
	}
	id := *out.Instances[0].InstanceId
	addr := *out.Instances[0].PrivateIpAddress
	if err := ec2.NewInstanceRunningWaiter(c, func(o *ec2.InstanceRunningWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	var console string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		co, err := c.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := base64.StdEncoding.DecodeString(aws.ToString(co.Output))
		if console = string(b); strings.Contains(console, "inet ") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"hello machine", "v1: 401", "inet " + addr + "/24"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if err := ec2.NewInstanceTerminatedWaiter(c, func(o *ec2.InstanceTerminatedWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, time.Minute); err != nil {
		t.Fatal(err)
	}
}
