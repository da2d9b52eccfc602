package aws

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"k2.dev/k2/providers/sdk"
)

// clients are the AWS API clients of one call.
type clients struct {
	cfg    *config
	aws    aws.Config
	ec2    *ec2.Client
	s3     *s3.Client
	ssm    *ssm.Client
	region string
}

// credentialCheckTimeout bounds finding credentials: with none at all the
// SDK's chain ends at the instance metadata service, which may not answer.
const credentialCheckTimeout = 15 * time.Second

// connect loads the SDK configuration the way every AWS tool does
// (environment, shared config and credentials files with profiles, SSO,
// web identity, container and instance credentials), applies the provider
// config over it and checks that credentials and a region are found. What
// the user must fix comes back as diagnostics.
func connect(ctx context.Context, cfg *config) (*clients, sdk.Diagnostics) {
	var ds sdk.Diagnostics
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.backoff
				o.RateLimiter = ratelimit.None // MaxAttempts bounds retries; no client-side quota
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	if cfg.EndpointURL != "" {
		opts = append(opts, awsconfig.WithBaseEndpoint(cfg.EndpointURL))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		ds.Errorf("config.profile", "loading the AWS configuration: %v", err)
		return nil, ds
	}
	if ac.Region == "" {
		ds.Errorf("config.region", "no AWS region: set region in the provider config, AWS_REGION, or region in the profile of ~/.aws/config")
		return nil, ds
	}
	cctx, cancel := context.WithTimeout(ctx, credentialCheckTimeout)
	defer cancel()
	if _, err := ac.Credentials.Retrieve(cctx); err != nil {
		if ctx.Err() != nil {
			ds.Errorf("config", "looking for AWS credentials: %v", ctx.Err())
			return nil, ds
		}
		ds = append(ds, sdk.Diagnostic{Severity: sdk.SeverityError, Path: "config",
			Summary: "no AWS credentials found; tried: " + strings.Join(credentialSources(cfg), "; "),
			Detail:  "set access_key_id/secret_access_key in the provider config, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile (aws configure, aws sso login); the SDK said: " + err.Error()})
		return nil, ds
	}
	c := &clients{cfg: cfg, aws: ac, region: ac.Region}
	c.ec2 = ec2.NewFromConfig(ac)
	c.s3 = s3.NewFromConfig(ac, func(o *s3.Options) {
		o.UsePathStyle = cfg.EndpointURL != "" || os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	})
	c.ssm = ssm.NewFromConfig(ac)
	return c, nil
}

// credentialSources describes, in the SDK's order, where credentials were
// looked for and what was found there.
func credentialSources(cfg *config) []string {
	set := func(k string) bool { return os.Getenv(k) != "" }
	var out []string
	if cfg.AccessKeyID != "" {
		out = append(out, "the provider config (access_key_id): rejected")
	} else {
		out = append(out, "the provider config: no access_key_id")
	}
	switch {
	case set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"):
		out = append(out, "environment: AWS_ACCESS_KEY_ID is set but was not usable")
	default:
		out = append(out, "environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set")
	}
	profile := cfg.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	home, _ := os.UserHomeDir()
	files := []string{}
	for _, f := range []struct{ env, def string }{{"AWS_SHARED_CREDENTIALS_FILE", "credentials"}, {"AWS_CONFIG_FILE", "config"}} {
		p := os.Getenv(f.env)
		if p == "" {
			p = filepath.Join(home, ".aws", f.def)
		}
		if _, err := os.Stat(p); err != nil {
			files = append(files, p+" (absent)")
		} else {
			files = append(files, p)
		}
	}
	out = append(out, fmt.Sprintf("shared files %s: profile %q has no usable keys, SSO session, credential_process or role", strings.Join(files, " and "), profile))
	if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
		out = append(out, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but gave no credentials")
	} else {
		out = append(out, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set")
	}
	if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
		out = append(out, "container (ECS/EKS): endpoint set but gave no credentials")
	} else {
		out = append(out, "container (ECS/EKS): AWS_CONTAINER_CREDENTIALS_* not set")
	}
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		out = append(out, "EC2 instance metadata: disabled by AWS_EC2_METADATA_DISABLED=true")
	} else {
		out = append(out, "EC2 instance metadata: no instance role (not on EC2, or no instance profile)")
	}
	return out
}

// permissionError is a call AWS refused for lack of permission.
type permissionError struct {
	Op, Action, Message string
}

func (e *permissionError) Error() string {
	return fmt.Sprintf("AWS denied %s: grant the IAM action %s to the credentials k2 uses (docs/aws.md lists every action k2 needs); AWS said: %s",
		e.Op, e.Action, e.Message)
}

// authError is a call AWS refused because the credentials are not valid.
type authError struct {
	Op, Code, Message string
}

func (e *authError) Error() string {
	return fmt.Sprintf("AWS refused the credentials for %s (%s): %s; check the access key, its secret and session token, or log in again (aws sso login)", e.Op, e.Code, e.Message)
}

// iamPrefix maps an SDK service id to its IAM action prefix.
var iamPrefix = map[string]string{"EC2": "ec2", "S3": "s3", "SSM": "ssm", "STS": "sts"}

// classify turns AWS's permission and credential errors into typed
// errors; other errors pass through.
func classify(err error) error {
	var oe *smithy.OperationError
	var ae smithy.APIError
	if err == nil || !errors.As(err, &oe) || !errors.As(err, &ae) {
		return err
	}
	switch ae.ErrorCode() {
	case "UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "Client.UnauthorizedOperation":
		prefix := iamPrefix[oe.ServiceID]
		if prefix == "" {
			prefix = strings.ToLower(oe.ServiceID)
		}
		action := prefix + ":" + oe.OperationName
		if oe.ServiceID == "EC2" && oe.OperationName == "RunInstances" {
			action += " (and ec2:CreateTags, to tag at launch)"
		}
		return &permissionError{Op: oe.ServiceID + " " + oe.OperationName, Action: action, Message: ae.ErrorMessage()}
	case "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "RequestExpired", "UnrecognizedClientException", "InvalidAccessKeyId":
		return &authError{Op: oe.ServiceID + " " + oe.OperationName, Code: ae.ErrorCode(), Message: ae.ErrorMessage()}
	}
	return err
}

// diagnose turns an error a user can fix into a diagnostic at path; it
// reports whether it did.
func diagnose(ds *sdk.Diagnostics, path string, err error) bool {
	var pe *permissionError
	var ae *authError
	var ue *userError
	switch {
	case errors.As(err, &pe):
		*ds = append(*ds, sdk.Diagnostic{Severity: sdk.SeverityError, Path: "config", Summary: pe.Error()})
	case errors.As(err, &ae):
		*ds = append(*ds, sdk.Diagnostic{Severity: sdk.SeverityError, Path: "config", Summary: ae.Error()})
	case errors.As(err, &ue):
		p := ue.Path
		if p == "" {
			p = path
		}
		*ds = append(*ds, sdk.Diagnostic{Severity: sdk.SeverityError, Path: p, Summary: ue.Msg})
	default:
		return false
	}
	return true
}

// userError is a problem with the config or request a user must fix.
type userError struct {
	Path, Msg string
}

func (e *userError) Error() string { return e.Msg }

func userErrorf(path, format string, args ...any) error {
	return &userError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// errorCode is the AWS error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// retryEventual retries f while it fails with one of codes — EC2's answer
// for a resource it made a moment ago but does not show yet — until ctx
// ends or a minute has passed.
func retryEventual(ctx context.Context, poll time.Duration, f func() error, codes ...string) error {
	deadline := time.Now().Add(time.Minute)
	wait := min(poll, 250*time.Millisecond)
	for {
		err := f()
		if err == nil || !contains(codes, errorCode(err)) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, poll)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
