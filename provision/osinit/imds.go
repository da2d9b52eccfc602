package osinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"k2.dev/k2/provision/machineconfig"
)

// IMDSSource reads the machine config from the EC2 instance metadata
// service's user-data, with IMDSv2 only (a session token first; no IMDSv1
// fallback). It asks only where asking makes sense: when Endpoint is set
// (k2.imds=URL, --imds-endpoint, $K2_IMDS_ENDPOINT or the AWS SDK's
// $AWS_EC2_METADATA_SERVICE_ENDPOINT) or the machine's firmware says it is
// an EC2 instance; elsewhere it reports no config without a packet sent.
type IMDSSource struct {
	// Endpoint overrides the default http://169.254.169.254.
	Endpoint string
	// SysRoot is where /sys is (tests); default "/".
	SysRoot string
	// Timeout per attempt; default 5 s.
	Timeout time.Duration
	// Ready, if set, is called before the first request (k2 init waits
	// for the network there); its error is the fetch's.
	Ready func(context.Context) error
}

// Name names the source in messages.
func (s *IMDSSource) Name() string { return "IMDS" }

// endpoint is the explicit endpoint, if any.
func (s *IMDSSource) endpoint() string {
	if s.Endpoint != "" {
		return s.Endpoint
	}
	if e := os.Getenv("K2_IMDS_ENDPOINT"); e != "" {
		return e
	}
	return os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
}

// Fetch reads the machine config from the instance's user data.
func (s *IMDSSource) Fetch(ctx context.Context) ([]byte, error) {
	ep := s.endpoint()
	if ep == "" {
		if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
			return nil, fmt.Errorf("disabled by AWS_EC2_METADATA_DISABLED: %w", ErrNoConfig)
		}
		if !onEC2(s.SysRoot) {
			return nil, fmt.Errorf("not an EC2 instance: %w", ErrNoConfig)
		}
	}
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			return nil, err
		}
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	o := imds.Options{
		Endpoint:       ep,
		EnableFallback: aws.FalseTernary, // IMDSv2 only
		// An explicit endpoint is asked even where the environment
		// disables the SDK's own probing (tests set that everywhere).
		ClientEnableState: imds.ClientEnabled,
		HTTPClient:        awshttp.NewBuildableClient().WithTimeout(timeout),
		Retryer:           aws.NopRetryer{},
	}
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	out, err := imds.New(o).GetUserData(ctx, &imds.GetUserDataInput{})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return nil, fmt.Errorf("the instance has no user-data: %w", ErrNoConfig)
		}
		return nil, fmt.Errorf("reading user-data from %s: %w", s.describe(), err)
	}
	defer out.Content.Close()
	return io.ReadAll(io.LimitReader(out.Content, machineconfig.MaxSize+1))
}

func (s *IMDSSource) describe() string {
	if ep := s.endpoint(); ep != "" {
		return ep
	}
	return "the instance metadata service"
}

// onEC2 reads the firmware's identity: Nitro instances say "Amazon EC2" in
// DMI, Xen ones have an ec2 hypervisor UUID.
func onEC2(root string) bool {
	if root == "" {
		root = "/"
	}
	for _, f := range []string{"sys/class/dmi/id/sys_vendor", "sys/class/dmi/id/bios_vendor", "sys/class/dmi/id/board_vendor"} {
		if b, err := os.ReadFile(filepath.Join(root, f)); err == nil && strings.Contains(string(b), "Amazon EC2") {
			return true
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/hypervisor/uuid")); err == nil && strings.HasPrefix(strings.ToLower(string(b)), "ec2") {
		return true
	}
	return false
}
