package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"k2.dev/k2/providers/sdk"
)

// ImportOptions are the inputs of ImportImage. File and Bucket are
// required.
type ImportOptions struct {
	// Config is the aws provider config (region, credentials, endpoint_url).
	Config sdk.Config
	// File is a raw disk image: `k2 os build --format raw`.
	File string
	// Bucket receives the upload; CreateBucket makes it when missing.
	Bucket       string
	CreateBucket bool
	// Key of the upload; default k2/<name>.raw.
	Key string
	// Name of the AMI; default the file's name without extension.
	Name string
	// Arch is amd64 (default) or arm64.
	Arch string
	// RoleName is the VM Import service role; default "vmimport".
	RoleName string
	// KeepObject keeps the upload after the import (default: delete it).
	KeepObject bool
	// Progress gets one line per step; nil discards.
	Progress func(string)
}

// ImportResult is what ImportImage made.
type ImportResult struct {
	ImageID      string `json:"imageId"`
	SnapshotID   string `json:"snapshotId"`
	ImportTaskID string `json:"importTaskId"`
	Name         string `json:"name"`
	Region       string `json:"region"`
	Bytes        int64  `json:"bytes"`
}

// ImportImage turns a raw k2 OS disk image into an AMI: it uploads the
// file to S3 (PutObject), imports it as an EBS snapshot (ImportSnapshot,
// waiting on DescribeImportSnapshotTasks) and registers an AMI from the
// snapshot (RegisterImage: hvm, ENA, UEFI preferred, IMDSv2 only). The
// import carries a client token derived from the name and the file's
// digest, so running it again after an interruption does not import
// twice. Use the image id as the provider config's ami.
func ImportImage(ctx context.Context, o ImportOptions) (*ImportResult, error) {
	progress := o.Progress
	if progress == nil {
		progress = func(string) {}
	}
	cfg, ds := load(o.Config)
	if ds.HasErrors() {
		return nil, ds.Err()
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	awsArch, ok := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[o.Arch]
	if !ok {
		return nil, userErrorf("arch", "architecture %q: use amd64 or arm64", o.Arch)
	}
	if o.Bucket == "" {
		return nil, userErrorf("bucket", "an S3 bucket is needed to stage the image (--bucket)")
	}
	if o.Name == "" {
		o.Name = strings.TrimSuffix(filepath.Base(o.File), filepath.Ext(o.File))
	}
	if o.Key == "" {
		o.Key = "k2/" + o.Name + ".raw"
	}
	if o.RoleName == "" {
		o.RoleName = "vmimport"
	}
	f, err := os.Open(o.File)
	if err != nil {
		return nil, userErrorf("file", "opening the disk image: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 || st.Size()%512 != 0 {
		return nil, userErrorf("file", "%s is not a raw disk image (%d bytes, not whole 512-byte sectors); build one with 'k2 os build --format raw'", o.File, st.Size())
	}
	progress(fmt.Sprintf("hashing %s (%d MiB)", o.File, st.Size()>>20))
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	digest := hex.EncodeToString(h.Sum(nil))
	c, cds := connect(ctx, cfg)
	if cds.HasErrors() {
		return nil, cds.Err()
	}
	res := &ImportResult{Name: o.Name, Region: c.region, Bytes: st.Size()}

	if _, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(o.Bucket)}); err != nil {
		if !o.CreateBucket {
			return nil, fmt.Errorf("S3 bucket %s: %w (create it, or pass --create-bucket)", o.Bucket, classify(err))
		}
		progress("creating bucket " + o.Bucket)
		if _, err := c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(o.Bucket)}); err != nil && errorCode(err) != "BucketAlreadyOwnedByYou" {
			return nil, fmt.Errorf("creating S3 bucket %s: %w", o.Bucket, classify(err))
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("uploading to s3://%s/%s", o.Bucket, o.Key))
	body := &progressReader{r: f, total: st.Size(), report: progress}
	if _, err := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key), Body: body,
		ContentLength: aws.Int64(st.Size())}); err != nil {
		return nil, fmt.Errorf("uploading %s: %w", o.File, classify(err))
	}
	token := "k2-import-" + digest[:40]
	tags := c.tags("image", "import-"+digest[:16], map[string]string{"Name": o.Name, "k2.dev/image-sha256": digest})
	task, err := c.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		ClientToken: aws.String(token),
		Description: aws.String("k2 OS " + o.Name),
		RoleName:    aws.String(o.RoleName),
		DiskContainer: &types.SnapshotDiskContainer{Format: aws.String("RAW"),
			UserBucket: &types.UserBucket{S3Bucket: aws.String(o.Bucket), S3Key: aws.String(o.Key)}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImportSnapshotTask, Tags: tags}},
	})
	if err != nil {
		return nil, fmt.Errorf("importing the snapshot: %w (real AWS needs the %q service role: see docs/aws.md)", classify(err), o.RoleName)
	}
	res.ImportTaskID = aws.ToString(task.ImportTaskId)
	progress("import task " + res.ImportTaskID)
	for {
		out, err := c.ec2.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{res.ImportTaskID}})
		if err != nil {
			return nil, classify(err)
		}
		if len(out.ImportSnapshotTasks) == 0 || out.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return nil, fmt.Errorf("import task %s vanished", res.ImportTaskID)
		}
		d := out.ImportSnapshotTasks[0].SnapshotTaskDetail
		status := aws.ToString(d.Status)
		if status == "completed" {
			res.SnapshotID = aws.ToString(d.SnapshotId)
			break
		}
		if status == "deleted" || status == "deleting" {
			return nil, fmt.Errorf("import task %s failed: %s", res.ImportTaskID, aws.ToString(d.StatusMessage))
		}
		progress(fmt.Sprintf("import %s %s%%: %s", status, aws.ToString(d.Progress), aws.ToString(d.StatusMessage)))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for import task %s (it goes on; run again to pick it up): %w", res.ImportTaskID, ctx.Err())
		case <-time.After(cfg.poll):
		}
	}
	progress("snapshot " + res.SnapshotID + "; registering " + o.Name)
	img, err := c.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String(o.Name), Description: aws.String("k2 OS, imported from " + filepath.Base(o.File) + " sha256:" + digest),
		Architecture: types.ArchitectureValues(awsArch), RootDeviceName: aws.String("/dev/xvda"),
		VirtualizationType: aws.String("hvm"), EnaSupport: aws.Bool(true), BootMode: types.BootModeValuesUefiPreferred,
		ImdsSupport: types.ImdsSupportValuesV20,
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
			Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(res.SnapshotID), DeleteOnTermination: aws.Bool(true), VolumeType: types.VolumeTypeGp3}}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: tags}},
	})
	if errorCode(err) == "InvalidAMIName.Duplicate" {
		if id := existingImage(ctx, c, o.Name, digest); id != "" {
			res.ImageID = id // an earlier run registered it
		} else {
			return nil, userErrorf("name", "an AMI named %s already exists; pick another --name", o.Name)
		}
	} else if err != nil {
		return nil, fmt.Errorf("registering the AMI: %w", classify(err))
	} else {
		res.ImageID = aws.ToString(img.ImageId)
	}
	if !o.KeepObject {
		if _, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)}); err != nil {
			progress(fmt.Sprintf("warning: could not delete s3://%s/%s: %v", o.Bucket, o.Key, classify(err)))
		}
	}
	return res, nil
}

// existingImage is the own AMI named name made from the same file, or "".
func existingImage(ctx context.Context, c *clients, name, digest string) string {
	out, err := c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{filter("name", name)}})
	if err != nil {
		return ""
	}
	for _, img := range out.Images {
		if tagValue(img.Tags, "k2.dev/image-sha256") == digest {
			return aws.ToString(img.ImageId)
		}
	}
	return ""
}

// progressReader reports each further quarter of an upload read. It
// keeps Seek, so the SDK can read it for its checksum and rewind, or
// rewind to retry; a quarter is reported once.
type progressReader struct {
	r        io.ReadSeeker
	total    int64
	done     int64
	reported int64 // quarters reported
	report   func(string)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if q := p.done * 4 / max(p.total, 1); q > p.reported {
		p.reported = q
		p.report(fmt.Sprintf("uploaded %d%% (%d MiB)", q*25, p.done>>20))
	}
	return n, err
}

func (p *progressReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.r.Seek(off, whence)
	if err == nil {
		p.done = n
	}
	return n, err
}

// IsConfigError reports whether err is a problem with the options or the
// config that the user must fix (exit code 3); AWS refusing a call (a
// missing permission, bad credentials) is not one.
func IsConfigError(err error) bool {
	var ue *userError
	var de *sdk.DiagnosticsError
	return errors.As(err, &ue) || errors.As(err, &de)
}
