package ec2fake_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/internal/ec2fake"
)

// rawDisk writes a tiny raw disk image: whole sectors with an MBR boot
// signature, which is what the fake's ImportSnapshot checks.
func rawDisk(t *testing.T) string {
	t.Helper()
	b := make([]byte, 1<<20)
	b[510], b[511] = 0x55, 0xAA
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBoto3 runs Debian's python3-boto3 — a client nobody here wrote —
// against the fake: every call k2 makes, parsed by botocore's own service
// models, waiters and paginators (testdata/boto3_check.py). Skipped
// without python3-boto3 (CI installs it, and there a missing one fails).
func TestBoto3(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import boto3").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-boto3 is missing in CI (.ci/run installs it): %v", err)
		}
		t.Skipf("python3 with boto3 not found (apt-get install python3-boto3): %v", err)
	}
	fake := ec2fake.New(ec2fake.Options{})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cmd := exec.Command(debianPython, "testdata/boto3_check.py", srv.URL, rawDisk(t))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("boto3 check: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var sum struct {
		InstanceTypes int    `json:"instanceTypes"`
		Instance      string `json:"instance"`
		Image         string `json:"image"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.Instance == "" {
		t.Fatalf("boto3 check printed %q: %v", stdout.String(), err)
	}
	// What boto3 sent is what the fake recorded: the client token of the
	// RunInstances retry, the user-data base64-encoded by botocore.
	runs := fake.Calls("RunInstances")
	if len(runs) != 4 { // DryRun, first, retry, mismatch
		t.Fatalf("fake saw %d RunInstances, want 4", len(runs))
	}
	for _, c := range runs {
		if c.Params.Get("ClientToken") != "boto-token-1" {
			t.Errorf("RunInstances without the client token: %v", c.Params)
		}
	}
	if ud := runs[1].Params.Get("UserData"); ud != "I2Nsb3VkLWNvbmZpZwp7fQo=" {
		t.Errorf("user-data as sent by boto3: %q", ud)
	}
	t.Logf("boto3 (%s) parsed every answer: %d instance types over pages, instance %s, image %s; %d calls",
		boto3Version(), sum.InstanceTypes, sum.Instance, sum.Image, len(fake.Calls()))
}

// debianPython is Debian's interpreter, whose boto3 is the python3-boto3
// package (a python3 earlier on PATH may carry another one).
const debianPython = "/usr/bin/python3"

func boto3Version() string {
	out, _ := exec.Command(debianPython, "-c", "import boto3; print(boto3.__version__)").Output()
	return strings.TrimSpace(string(out))
}
