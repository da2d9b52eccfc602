package k8sfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact/k8sfile"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	values := map[string]string{"replicas": "3", "env": "prod", "empty": "", "dollar": "${env}"}
	tests := []struct {
		in, want string
		err      error // matched with errors.Is
	}{
		{in: "", want: ""},
		{in: "plain", want: "plain"},
		{in: "${replicas}", want: "3"},
		{in: "web-${env}-${replicas}", want: "web-prod-3"},
		{in: "${empty}x", want: "x"},
		{in: "$$", want: "$"},
		{in: "$${env}", want: "${env}"},
		{in: "$$$${env}", want: "$${env}"},
		{in: "$5 and $", want: "$5 and $"},
		{in: "$env", want: "$env"},
		{in: "${dollar}", want: "${env}"}, // values are not expanded again
		{in: "${missing}", err: k8sfile.ErrUndefined},
		{in: "a ${env} ${nope}", err: k8sfile.ErrUndefined},
		{in: "${", err: k8sfile.ErrTemplate},
		{in: "${env", err: k8sfile.ErrTemplate},
		{in: "${}", err: k8sfile.ErrTemplate},
		{in: "${a-b}", err: k8sfile.ErrTemplate},
		{in: "${9x}", err: k8sfile.ErrTemplate},
		{in: "${env:-x}", err: k8sfile.ErrTemplate},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := k8sfile.Expand(tt.in, values)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Expand(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Expand(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestExpandNamesTheMissingVariable(t *testing.T) {
	t.Parallel()
	_, err := k8sfile.Expand("x=${replicas}", nil)
	if err == nil || !strings.Contains(err.Error(), `"replicas"`) {
		t.Fatalf("error %v does not name replicas", err)
	}
}

func TestParseChartRef(t *testing.T) {
	t.Parallel()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in      string
		want    k8sfile.ChartRef
		wantErr string // substring of the error; "" for success
	}{
		{in: "oci://registry.local:5000/charts/redis", want: k8sfile.ChartRef{Kind: k8sfile.ChartOCI,
			Repository: "registry.local:5000/charts/redis", Chart: "redis"}},
		{in: "oci://localhost/redis:17.3.2", want: k8sfile.ChartRef{Kind: k8sfile.ChartOCI,
			Repository: "localhost/redis", Tag: "17.3.2", Chart: "redis"}},
		{in: "oci://registry.local/a/b/ingress-nginx@" + digest, want: k8sfile.ChartRef{Kind: k8sfile.ChartOCI,
			Repository: "registry.local/a/b/ingress-nginx", Digest: digest, Chart: "ingress-nginx"}},
		{in: "OCI://registry.local/charts/redis", want: k8sfile.ChartRef{Kind: k8sfile.ChartOCI,
			Repository: "registry.local/charts/redis", Chart: "redis"}},
		{in: "https://charts.example.com/stable#postgresql", want: k8sfile.ChartRef{Kind: k8sfile.ChartRepoURL,
			RepoURL: "https://charts.example.com/stable", Chart: "postgresql"}},
		{in: "http://127.0.0.1:8080#my_chart.v2", want: k8sfile.ChartRef{Kind: k8sfile.ChartRepoURL,
			RepoURL: "http://127.0.0.1:8080", Chart: "my_chart.v2"}},
		{in: "helm/k8s.io/metrics-server", want: k8sfile.ChartRef{Kind: k8sfile.ChartAlias,
			Alias: "k8s.io", Chart: "metrics-server"}},
		{in: "helm/bitnami/redis", want: k8sfile.ChartRef{Kind: k8sfile.ChartAlias, Alias: "bitnami", Chart: "redis"}},

		{in: "redis", wantErr: "is not a chart reference"},
		{in: "bitnami/redis", wantErr: "is not a chart reference"},
		{in: "./charts/redis", wantErr: "is not a chart reference"},
		{in: "oci://redis", wantErr: "no registry host"},
		{in: "oci://registry.local/Charts/redis", wantErr: "lowercase"},
		{in: "oci://registry.local/redis@sha256:12", wantErr: "bad digest"},
		{in: "https://charts.example.com/stable", wantErr: "add #<chart>"},
		{in: "https://charts.example.com/stable#", wantErr: "not a chart name"},
		{in: "https://#redis", wantErr: "not a valid repository URL"},
		{in: "helm/redis", wantErr: "helm/<repo-alias>/<chart>"},
		{in: "helm/a/b/c", wantErr: "helm/<repo-alias>/<chart>"},
		{in: "helm//redis", wantErr: "not a repository alias"},
		{in: "helm/bitnami/", wantErr: "not a chart name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := k8sfile.ParseChartRef(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseChartRef(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChartRef(%q): %v", tt.in, err)
			}
			tt.want.Ref = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseChartRef(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseQuantity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		bytes   int64
		milli   int64
		wantErr bool
	}{
		{in: "4Gi", bytes: 4 << 30, milli: 4 << 30 * 1000},
		{in: "500Mi", bytes: 500 << 20, milli: 500 << 20 * 1000},
		{in: "20G", bytes: 20e9, milli: 20e12},
		{in: "1.5Gi", bytes: 3 << 29, milli: 3 << 29 * 1000},
		{in: "2", bytes: 2, milli: 2000},
		{in: "0.5", bytes: 1, milli: 500},
		{in: "500m", bytes: 1, milli: 500},
		{in: "1Ki", bytes: 1024, milli: 1024000},
		{in: "3k", bytes: 3000, milli: 3000000},
		{in: "4GB", wantErr: true},
		{in: "4 Gi", wantErr: true},
		{in: "-1Gi", wantErr: true},
		{in: "Gi", wantErr: true},
		{in: "", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "99999999999Ei", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			b, errB := k8sfile.ParseBytes(tt.in)
			m, errM := k8sfile.ParseMilliCPU(tt.in)
			if tt.wantErr {
				if errB == nil {
					t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, b)
				}
				return
			}
			if errB != nil || errM != nil {
				t.Fatalf("ParseBytes(%q): %v; ParseMilliCPU: %v", tt.in, errB, errM)
			}
			if diff := cmp.Diff([2]int64{tt.bytes, tt.milli}, [2]int64{b, m}); diff != "" {
				t.Errorf("(bytes, millicores) of %q (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestValidateRef(t *testing.T) {
	t.Parallel()
	good := []string{
		"nginx", "nginx:1.27", "k2/base:v1.37", "localhost/x", "localhost:5000/a/b:c",
		"registry.local:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"a.b-c/d__e/f-g:TAG_1.0-rc",
	}
	bad := []string{"", "Nginx", "nginx:", "nginx:-x", "a//b", "-a/b", "a/b@sha256:XYZ", "host:port/x", ":tag", "a b"}
	for _, r := range good {
		if err := k8sfile.ValidateRef(r); err != nil {
			t.Errorf("ValidateRef(%q): %v", r, err)
		}
	}
	for _, r := range bad {
		if err := k8sfile.ValidateRef(r); err == nil {
			t.Errorf("ValidateRef(%q) = nil, want an error", r)
		}
	}
}

// TestErrors checks the error's contract: every problem is an *Error that
// matches ErrInvalid, positions point at the offending token, and the list
// is capped with "… and N more".
func TestErrors(t *testing.T) {
	t.Parallel()
	src := "FROM scratch\nAPP web image=nginx replicas=x\n"
	for i := range 30 {
		src += "BOGUS" + strings.Repeat("x", i) + "\n"
	}
	_, _, err := k8sfile.Parse("dir/K8sfile", []byte(src))
	if !errors.Is(err, k8sfile.ErrInvalid) {
		t.Fatalf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	var first *k8sfile.Error
	if !errors.As(err, &first) {
		t.Fatal("errors.As(err, *Error) = false")
	}
	want := &k8sfile.Error{
		Pos:         k8sfile.Pos{File: "dir/K8sfile", Line: 2, Col: 30},
		Instruction: "APP",
		Msg:         `bad replicas: "x" is not a whole number`,
		Hint:        "give a whole number ≥ 0: replicas=3",
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("first error (-want +got):\n%s", diff)
	}
	if got, want := first.Error(), `dir/K8sfile:2:30: APP: bad replicas: "x" is not a whole number; give a whole number ≥ 0: replicas=3`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := len(k8sfile.Errors(err)); got != k8sfile.MaxErrors {
		t.Errorf("len(Errors(err)) = %d, want %d", got, k8sfile.MaxErrors)
	}
	lines := strings.Split(err.Error(), "\n")
	if got, want := lines[len(lines)-1], "… and 11 more"; got != want {
		t.Errorf("last line = %q, want %q", got, want)
	}
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, k8sfile.DefaultName)
	if err := os.WriteFile(path, []byte("FROM scratch\nADD ./a.yaml\nAPP a image=nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := k8sfile.ParseFile(path)
	es := k8sfile.Errors(err)
	if len(es) != 1 || es[0].Pos.File != path || es[0].Pos.Line != 3 {
		t.Fatalf("ParseFile: %v; want one error at %s:3", err, path)
	}
	if _, _, err := k8sfile.ParseFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ParseFile(missing) = %v, want ErrNotExist", err)
	}
}

func TestInstallChartRef(t *testing.T) {
	t.Parallel()
	f, _, err := k8sfile.Parse("K8sfile", []byte("FROM scratch\nINSTALL oci://registry.local/charts/redis:17.0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	in := f.Layers[0].(*k8sfile.Install)
	want := k8sfile.ChartRef{Kind: k8sfile.ChartOCI, Ref: "oci://registry.local/charts/redis:17.0.0",
		Repository: "registry.local/charts/redis", Tag: "17.0.0", Chart: "redis"}
	if diff := cmp.Diff(want, in.ChartRef()); diff != "" {
		t.Errorf("ChartRef() (-want +got):\n%s", diff)
	}
	if in.Version != "17.0.0" || in.Name != "redis" {
		t.Errorf("Version, Name = %q, %q; want the tag and the chart's name", in.Version, in.Name)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	src := `FROM scratch
ARG replicas=2
ARG domain
ARG ports=80
ARG cp=1
ARG mem=4Gi
INSTALL helm/repo/chart set host=${domain} literal=$$x
APP web image=nginx:1.27 port=${ports} replicas=${replicas} env DOMAIN=${domain}
MACHINES control-plane=${cp} worker=3 memory=${mem}
`
	f, _, err := k8sfile.Parse("K8sfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		got, err := f.Resolve(map[string]string{"domain": "shop.test", "ports": "80,443"})
		if err != nil {
			t.Fatal(err)
		}
		app := got.Layers[1].(*k8sfile.App)
		in := got.Layers[0].(*k8sfile.Install)
		type summary struct {
			Ports              []string
			Replicas, Memory   string
			Env, Set           []k8sfile.KV
			TemplateKeptInFile string
		}
		want := summary{
			Ports: []string{"80", "443"}, Replicas: "2", Memory: "4Gi",
			Env:                []k8sfile.KV{{Key: "DOMAIN", Value: "shop.test"}},
			Set:                []k8sfile.KV{{Key: "host", Value: "shop.test"}, {Key: "literal", Value: "$x"}},
			TemplateKeptInFile: "${replicas}",
		}
		gotS := summary{app.Ports, app.Replicas, got.Machines[1].Memory, app.Env, in.Set,
			f.Layers[1].(*k8sfile.App).Replicas}
		if diff := cmp.Diff(want, gotS); diff != "" {
			t.Errorf("Resolve (-want +got):\n%s", diff)
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		_, err := f.Resolve(map[string]string{"domain": "x", "replicas": "two", "cp": "0", "mem": "4", "replica": "1"})
		if !errors.Is(err, k8sfile.ErrUnknownArg) || !strings.Contains(err.Error(), "did you mean replicas?") {
			t.Fatalf("unknown value: got %v", err)
		}
		_, err = f.Resolve(map[string]string{"domain": "x", "replicas": "two", "cp": "0", "mem": "4"})
		var got []string
		for _, e := range k8sfile.Errors(err) {
			got = append(got, e.Error())
		}
		want := []string{
			`K8sfile:8:1: APP: bad replicas: "two" is not a whole number; ${replicas} is "two" in this environment; give a whole number ≥ 0: replicas=3`,
			`K8sfile:9:10: MACHINES: bad memory: "4" is less than 1Mi (a bare number is bytes; write 4Gi for 4 GiB); ${mem} is "4" in this environment; give a size such as memory=4Gi or memory=512Mi`,
			`K8sfile:9:10: MACHINES: control-plane pool has no machines; ${cp} is "0" in this environment; give it at least 1`,
			`K8sfile:9:30: MACHINES: bad memory: "4" is less than 1Mi (a bare number is bytes; write 4Gi for 4 GiB); ${mem} is "4" in this environment; give a size such as memory=4Gi or memory=512Mi`,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Resolve errors (-want +got):\n%s", diff)
		}
	})
	t.Run("missing required", func(t *testing.T) {
		t.Parallel()
		_, err := f.Resolve(nil)
		if got, want := err.Error(), "K8sfile:3:5: ARG: domain has no default and no value was given; give it a value for this environment: --set domain=<value>"; got != want {
			t.Errorf("Resolve(nil) = %q, want %q", got, want)
		}
	})
}

// TestParsePartial: with errors, ParsePartial still returns the instructions
// on lines without one (for one-pass checks of the build context), and Parse
// returns no file.
func TestParsePartial(t *testing.T) {
	t.Parallel()
	src := "FROM scratch\nADD ./a\nADD ./b as B\nAPP web image=nginx:1 port=x\nAPP api image=nginx:1\nMACHINES control-plane=1 cpu=lots\nMACHINES worker=2\n"
	f, _, err := k8sfile.ParsePartial("K8sfile", []byte(src))
	if err == nil || f == nil {
		t.Fatalf("ParsePartial = %v, %v; want a partial file and an error", f, err)
	}
	var layers, pools []string
	for _, l := range f.Layers {
		layers = append(layers, l.LayerName())
	}
	for _, m := range f.Machines {
		pools = append(pools, m.Pool)
	}
	if diff := cmp.Diff([]string{"a", "api"}, layers); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"worker"}, pools); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if f, _, err := k8sfile.Parse("K8sfile", []byte(src)); f != nil || err == nil {
		t.Errorf("Parse = %v, %v; want no file and the error", f, err)
	}
}
