package aws_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/providers/aws"
)

// TestImportImage: a raw disk image becomes an AMI through S3 PutObject,
// ImportSnapshot and RegisterImage; running it again finds that AMI; a
// file that is no disk image is refused before anything is uploaded.
func TestImportImage(t *testing.T) {
	fake, cfg := fakeConfig(t, ec2fake.Options{ImportDelay: 150 * time.Millisecond}, nil)
	disk := filepath.Join(t.TempDir(), "k2-os.raw")
	b := make([]byte, 2<<20)
	b[510], b[511] = 0x55, 0xAA
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var steps []string
	o := aws.ImportOptions{Config: cfg, File: disk, Bucket: "k2-images", CreateBucket: true, Arch: "arm64",
		Progress: func(s string) { steps = append(steps, s) }}
	res, err := aws.ImportImage(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ImageID, "ami-") || !strings.HasPrefix(res.SnapshotID, "snap-") || res.Name != "k2-os" || res.Bytes != 2<<20 {
		t.Errorf("result: %+v", res)
	}
	reg := fake.Calls("RegisterImage")[0].Params
	for k, want := range map[string]string{"Name": "k2-os", "Architecture": "arm64", "RootDeviceName": "/dev/xvda", "ImdsSupport": "v2.0",
		"BlockDeviceMapping.1.Ebs.SnapshotId": res.SnapshotID, "EnaSupport": "true", "BootMode": "uefi-preferred"} {
		if got := reg.Get(k); got != want {
			t.Errorf("RegisterImage %s = %q, want %q", k, got, want)
		}
	}
	imp := fake.Calls("ImportSnapshot")[0].Params
	if imp.Get("DiskContainer.Format") != "RAW" || imp.Get("DiskContainer.UserBucket.S3Key") != "k2/k2-os.raw" || imp.Get("ClientToken") == "" {
		t.Errorf("ImportSnapshot: %v", imp)
	}
	if n := len(fake.Calls("DeleteObject")); n != 1 {
		t.Errorf("the upload was not removed (%d DeleteObject)", n)
	}
	t.Logf("steps: %q", steps)

	again, err := aws.ImportImage(context.Background(), o)
	if err != nil || again.ImageID != res.ImageID {
		t.Errorf("second import: %+v %v, want %s", again, err, res.ImageID)
	}

	bad := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(bad, []byte("not a disk"), 0o644)
	puts := len(fake.Calls("PutObject"))
	_, err = aws.ImportImage(context.Background(), aws.ImportOptions{Config: cfg, File: bad, Bucket: "k2-images"})
	if err == nil || !aws.IsConfigError(err) || !strings.Contains(err.Error(), "not a raw disk image") {
		t.Errorf("importing a text file: %v", err)
	}
	if len(fake.Calls("PutObject")) != puts {
		t.Error("a bad file was uploaded")
	}
}
