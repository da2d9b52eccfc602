package ec2fake_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"k2.dev/k2/internal/ec2fake"
)

// TestIMDS reads an instance's user-data and region through the SDK's own
// IMDS client (IMDSv2 token flow), and checks that a request without a
// token is refused for an instance launched with HttpTokens=required.
func TestIMDS(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // the test's own SDK must not probe; the client below is explicit
	fake := ec2fake.New(ec2fake.Options{})
	api := httptest.NewServer(fake)
	defer api.Close()
	id := runOne(t, api.URL, "hello from user-data")
	md := httptest.NewServer(fake.IMDSHandler(id))
	defer md.Close()
	c := imds.New(imds.Options{Endpoint: md.URL, ClientEnableState: imds.ClientEnabled})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ud, err := c.GetUserData(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(ud.Content)
	if string(b) != "hello from user-data" {
		t.Errorf("user-data %q", b)
	}
	reg, err := c.GetRegion(ctx, nil)
	if err != nil || reg.Region != "us-east-1" {
		t.Errorf("region %v %v", reg, err)
	}
	resp, err := http.Get(md.URL + "/latest/user-data")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("IMDSv1 request answered %d, want 401", resp.StatusCode)
	}
}

// runOne launches one instance with raw EC2 Query form values (the wire
// format) and returns its id.
func runOne(t *testing.T, endpoint, userData string) string {
	t.Helper()
	v := url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "ImageId": {debianAMI(t, endpoint)},
		"InstanceType": {"t3.micro"}, "MinCount": {"1"}, "MaxCount": {"1"}, "MetadataOptions.HttpTokens": {"required"},
		"UserData": {encode(userData)}}
	body := post(t, endpoint, v)
	return between(body, "<instanceId>", "</instanceId>")
}
