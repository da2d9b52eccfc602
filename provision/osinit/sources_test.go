package osinit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0,115200 quiet k2.config=http://10.0.0.1:8080/m/abc k2.label="a b" ro` + "\n")
	want := Cmdline{"BOOT_IMAGE": "/vmlinuz", "console": "ttyS0,115200", "quiet": "", "k2.config": "http://10.0.0.1:8080/m/abc", "k2.label": "a b", "ro": ""}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// fakeSource is a source with a fixed answer that counts its calls.
type fakeSource struct {
	name  string
	doc   []byte
	err   error
	calls int
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Fetch(context.Context) ([]byte, error) {
	f.calls++
	return f.doc, f.err
}

func TestFindOrder(t *testing.T) {
	ctx := context.Background()
	none := func(name string) *fakeSource { return &fakeSource{name: name, err: ErrNoConfig} }
	// The first source with a config wins; later ones are not asked.
	a, b, c := none("kernel command line"), &fakeSource{name: "cidata", doc: []byte("B")}, &fakeSource{name: "IMDS", doc: []byte("C")}
	doc, src, err := Find(ctx, []Source{a, b, c})
	if err != nil || string(doc) != "B" || src != "cidata" || c.calls != 0 {
		t.Errorf("Find = %q, %q, %v; IMDS asked %d times", doc, src, err, c.calls)
	}
	// A source that has a config it cannot read stops the search: a
	// config named on the kernel command line is never skipped.
	down := &fakeSource{name: "kernel command line", err: errors.New("connection refused")}
	b.calls = 0
	_, src, err = Find(ctx, []Source{down, b})
	if err == nil || !strings.Contains(err.Error(), "kernel command line: connection refused") || b.calls != 0 || src != "kernel command line" {
		t.Errorf("Find with an unreachable config = %v (cidata asked %d times)", err, b.calls)
	}
	// None: the message the console shows.
	_, _, err = Find(ctx, []Source{none("kernel command line"), none("cidata"), none("IMDS")})
	if err == nil || err.Error() != "no machine config found: tried kernel command line, cidata, IMDS" || !errors.Is(err, ErrNoConfig) {
		t.Errorf("Find with nothing = %v", err)
	}
}

func TestDefaultSourcesOrder(t *testing.T) {
	r := &runner{o: Options{Cmdline: filepath.Join(t.TempDir(), "none")}}
	var names []string
	for _, s := range r.sources() {
		names = append(names, s.Name())
	}
	if d := cmp.Diff([]string{"kernel command line", "cidata", "IMDS"}, names); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	r.o.Config = "/etc/k2/machine.yaml"
	if s := r.sources(); len(s) != 1 || s[0].Name() != "--config /etc/k2/machine.yaml" {
		t.Errorf("with --config: %v", s)
	}
}

func TestCmdlineSource(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/m/secret-path" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("doc"))
	}))
	defer srv.Close()
	ctx := context.Background()
	s := &CmdlineSource{Cmdline: Cmdline{"console": "ttyS0"}}
	if _, err := s.Fetch(ctx); !errors.Is(err, ErrNoConfig) {
		t.Errorf("without k2.config: %v", err)
	}
	s.Cmdline[CmdlineConfig] = srv.URL + "/m/secret-path"
	if b, err := s.Fetch(ctx); err != nil || string(b) != "doc" {
		t.Errorf("Fetch = %q, %v", b, err)
	}
	s.Cmdline[CmdlineConfig] = srv.URL + "/m/other-secret"
	_, err := s.Fetch(ctx)
	if err == nil || errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "other-secret") {
		t.Errorf("a 404 must be an error that hides the path: %v", err)
	}
	s.Cmdline[CmdlineConfig] = "ftp://x"
	if _, err := s.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "want an http:// or https:// URL") {
		t.Errorf("ftp: %v", err)
	}
}

func TestRefSource(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(f, []byte("doc"), 0o600)
	if b, err := (&RefSource{Ref: f}).Fetch(context.Background()); err != nil || string(b) != "doc" {
		t.Errorf("file: %q %v", b, err)
	}
	_, err := (&RefSource{Ref: f + ".missing"}).Fetch(context.Background())
	if err == nil || errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
}

// imdsFake is an IMDSv2 endpoint: user-data only with a session token.
func imdsFake(t *testing.T, userData string) (*httptest.Server, *atomic.Int32) {
	var noToken atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
				http.Error(w, "ttl required", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			w.Write([]byte("tok-123"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/user-data":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "tok-123" {
				noToken.Add(1)
				http.Error(w, "", http.StatusUnauthorized)
				return
			}
			if userData == "" {
				http.NotFound(w, r)
				return
			}
			w.Write([]byte(userData))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &noToken
}

func TestIMDSSource(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // as every AWS test; an explicit endpoint is still asked
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "")
	t.Setenv("K2_IMDS_ENDPOINT", "")
	ctx := context.Background()
	srv, noToken := imdsFake(t, "apiVersion: machine.k2.dev/v1\n")
	b, err := (&IMDSSource{Endpoint: srv.URL}).Fetch(ctx)
	if err != nil || string(b) != "apiVersion: machine.k2.dev/v1\n" {
		t.Fatalf("Fetch = %q, %v", b, err)
	}
	if noToken.Load() != 0 {
		t.Error("user-data was asked without a session token (IMDSv1)")
	}
	empty, _ := imdsFake(t, "")
	if _, err := (&IMDSSource{Endpoint: empty.URL}).Fetch(ctx); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no user-data: %v", err)
	}
	t.Setenv("K2_IMDS_ENDPOINT", srv.URL)
	if b, err := (&IMDSSource{}).Fetch(ctx); err != nil || len(b) == 0 {
		t.Errorf("$K2_IMDS_ENDPOINT: %q %v", b, err)
	}
	// Elsewhere than EC2, with no endpoint named, nothing is asked.
	t.Setenv("K2_IMDS_ENDPOINT", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "sys/class/dmi/id"), 0o755)
	os.WriteFile(filepath.Join(root, "sys/class/dmi/id/sys_vendor"), []byte("QEMU\n"), 0o644)
	if _, err := (&IMDSSource{SysRoot: root}).Fetch(ctx); !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "not an EC2 instance") {
		t.Errorf("not EC2: %v", err)
	}
	os.WriteFile(filepath.Join(root, "sys/class/dmi/id/sys_vendor"), []byte("Amazon EC2\n"), 0o644)
	if !onEC2(root) {
		t.Error("DMI sys_vendor Amazon EC2 is EC2")
	}
}
