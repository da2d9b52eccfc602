package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/aws"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
)

func newAWSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "aws",
		Short: "Amazon EC2 helpers for the aws provider",
		Long: `Helpers for the built-in aws provider (docs/aws.md). 'k2 aws image import'
turns a k2 OS disk image into an AMI that 'k2 deploy --provider aws' boots.`,
	}
	image := &cobra.Command{Use: "image", Short: "Manage k2 OS AMIs"}
	image.AddCommand(newAWSImageImportCmd(g))
	cmd.AddCommand(image)
	return cmd
}

type awsImportFlags struct {
	configFile   string
	sets         []string
	env          string
	bucket       string
	createBucket bool
	key          string
	name         string
	arch         string
	role         string
	keep         bool
}

func newAWSImageImportCmd(g *globals) *cobra.Command {
	var f awsImportFlags
	cmd := &cobra.Command{
		Use:   "import <disk.raw> --bucket <bucket>",
		Short: "Upload a raw k2 OS disk image and register it as an AMI",
		Long: `Upload a raw disk image ('k2 os build --format raw') to S3 (PutObject), import
it as an EBS snapshot (ImportSnapshot, waiting for the import task) and
register an AMI from it (RegisterImage: hvm, ENA, UEFI preferred, IMDSv2
only). Prints the AMI id: give it to the aws provider as its "ami" setting.

Region, credentials and endpoint come from the aws provider config: an
environment's (--env), a file (--provider-config) or --set key=value, over
the SDK's usual chain (AWS_REGION, AWS_PROFILE, ~/.aws/...). Real AWS needs
the VM Import service role (default name vmimport; docs/aws.md shows it).
Running it again after an interruption picks up the same import.`,
		Example: `  k2 os build --format raw -o out/
  k2 aws image import out/disk.raw --bucket my-k2-images --name k2-os-v1 --set region=eu-west-1
  k2 env create prod --provider aws --provider-config aws.yaml   # ami: ami-…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			cfg, err := awsConfig(cmd, g, &f)
			if err != nil {
				return err
			}
			res, err := aws.ImportImage(cmd.Context(), aws.ImportOptions{
				Config: cfg, File: args[0], Bucket: f.bucket, CreateBucket: f.createBucket, Key: f.key,
				Name: f.name, Arch: f.arch, RoleName: f.role, KeepObject: f.keep,
				Progress: func(s string) { fmt.Fprintln(g.stderr, s) },
			})
			if err != nil {
				if aws.IsConfigError(err) {
					return usererr.Wrap(usererr.KindInvalid, err, "")
				}
				return usererr.Wrap(usererr.KindProvider, err, "")
			}
			return output.Render(g.stdout, format, res, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, res.ImageID)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.bucket, "bucket", "", "S3 bucket to stage the image in (required)")
	fl.BoolVar(&f.createBucket, "create-bucket", false, "create the bucket if it does not exist")
	fl.StringVar(&f.key, "key", "", "S3 key of the upload (default k2/<name>.raw)")
	fl.StringVar(&f.name, "name", "", "AMI name (default: the file name without extension)")
	fl.StringVar(&f.arch, "arch", "amd64", "architecture of the image: amd64 or arm64")
	fl.StringVar(&f.role, "role-name", "vmimport", "VM Import service role")
	fl.BoolVar(&f.keep, "keep-object", false, "keep the S3 upload after the import")
	fl.StringVar(&f.env, "env", "", "use this environment's aws provider config")
	fl.StringVar(&f.configFile, "provider-config", "", "YAML or JSON file of aws provider settings")
	fl.StringArrayVar(&f.sets, "set", nil, "aws provider setting key=value (repeatable), e.g. region=eu-west-1")
	_ = cmd.MarkFlagRequired("bucket")
	return cmd
}

// awsConfig is the aws provider config from an environment, a file and
// --set, checked against the provider's schema.
func awsConfig(cmd *cobra.Command, g *globals, f *awsImportFlags) (sdk.Config, error) {
	desc, err := aws.New().Describe(cmd.Context(), &sdk.DescribeRequest{})
	if err != nil {
		return nil, err
	}
	if f.env != "" {
		if f.configFile != "" {
			return nil, usererr.Usage("--env and --provider-config both give the provider config; use one")
		}
		s, err := g.openState(cmd.Context())
		if err != nil {
			return nil, err
		}
		defer s.Close()
		e, err := s.GetEnv(cmd.Context(), f.env)
		if err != nil {
			return nil, engine.UserError(err)
		}
		if e.Provider != aws.Name {
			return nil, usererr.New(usererr.KindUsage, "environment %s uses provider %s, not aws", f.env, e.Provider)
		}
		cfg := sdk.Config(e.ProviderConfig)
		if len(f.sets) == 0 {
			return cfg, nil
		}
		return nil, usererr.Usage("--set with --env is not supported; change the environment's config file instead")
	}
	cfg, err := host.LoadConfig(f.configFile, f.sets, desc.ConfigSchema)
	if err != nil {
		return nil, err
	}
	if ds := sdk.CheckConfig(desc.ConfigSchema, cfg); ds.HasErrors() {
		return nil, usererr.Wrap(usererr.KindInvalid, ds.Err(), "see 'k2 plugin describe aws' for the settings")
	}
	return cfg, nil
}
