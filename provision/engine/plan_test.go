package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func ptr(s string) *string { return &s }

func prodEnv() *state.Environment {
	return &state.Environment{Name: "prod", UID: "0123456789abcdef", Provider: "metal",
		Values: map[string]string{"replicas": "2", "mem": "8Gi", "stale": "x"}}
}

func config() *artifact.Config {
	return &artifact.Config{
		Kubernetes: "v1.37.2",
		Args: []artifact.ArgSpec{
			{Name: "replicas", Default: ptr("1")},
			{Name: "workers", Default: ptr("3")},
			{Name: "mem", Default: ptr("4Gi")},
			{Name: "domain"}, // required
			{Name: "tag", Default: ptr("1.27")},
		},
		Machines: []artifact.MachineSpec{
			{Pool: "control-plane", Count: "1", CPU: "2", Memory: "4Gi"},
			{Pool: "worker", Count: "${workers}", CPU: "1500m", Memory: "${mem}", Disk: "20Gi", Arch: "amd64"},
		},
		Apps: []artifact.AppSpec{{Name: "web", Image: "nginx:${tag}", Replicas: "${replicas}", Ports: []string{"80"}}},
		Layers: []artifact.LayerSpec{
			{Name: "base", Kind: artifact.KindManifests, From: "k2/base:v1.37", Objects: make([]artifact.Object, 4)},
			{Name: "argocd", Kind: artifact.KindChart, Objects: make([]artifact.Object, 12)},
			{Name: "web", Kind: artifact.KindApp, Objects: make([]artifact.Object, 1)},
		},
	}
}

func metalCaps() *sdk.Capabilities {
	return &sdk.Capabilities{
		Architectures: []string{"amd64"},
		Classes: []sdk.MachineClass{
			{Name: "large", CPU: 8, MemoryBytes: 32 << 30},
			{Name: "small", CPU: 2, MemoryBytes: 4 << 30},
			{Name: "medium", CPU: 4, MemoryBytes: 16 << 30},
		},
		MaxMachines:      10,
		BootstrapMethods: []string{sdk.BootstrapNetworkBoot, sdk.BootstrapUserData},
	}
}

func TestPlanGolden(t *testing.T) {
	p, err := engine.NewPlan(engine.PlanOptions{
		Env: prodEnv(), ArtifactRef: "127.0.0.1:5000/hello:v1", ArtifactDigest: "sha256:" + strings.Repeat("ab", 32),
		Config: config(), ValuesFile: map[string]string{"domain": "example.test", "mem": "16Gi"},
		Sets: map[string]string{"workers": "2"}, Capabilities: metalCaps(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := p.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.txt", text.Bytes())
	golden(t, "plan.json", append(js, '\n'))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestPlanValues(t *testing.T) {
	p, err := engine.NewPlan(engine.PlanOptions{
		Env: prodEnv(), Config: config(),
		ValuesFile: map[string]string{"domain": "file.test", "mem": "16Gi", "unknown": "1"},
		Sets:       map[string]string{"domain": "set.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.ResolvedValue{
		{Name: "domain", Value: "set.test", Source: engine.SourceSet},
		{Name: "mem", Value: "16Gi", Source: engine.SourceValuesFile},
		{Name: "replicas", Value: "2", Source: engine.SourceEnv},
		{Name: "tag", Value: "1.27", Source: engine.SourceDefault},
		{Name: "workers", Value: "3", Source: engine.SourceDefault},
	}
	if diff := cmp.Diff(want, p.Values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[0], "stale") || !strings.Contains(p.Warnings[1], "unknown") {
		t.Errorf("warnings = %q", p.Warnings)
	}
	if !p.Unverified || p.Bootstrap != "" {
		t.Errorf("a plan without capabilities: unverified=%v bootstrap=%q", p.Unverified, p.Bootstrap)
	}
	if p.Apps[0].Image != "nginx:1.27" || p.Apps[0].Replicas != "2" {
		t.Errorf("app = %+v", p.Apps[0])
	}
}

func TestPlanMissingArg(t *testing.T) {
	cfg := config()
	cfg.Args = append(cfg.Args, artifact.ArgSpec{Name: "region"})
	_, err := engine.NewPlan(engine.PlanOptions{Env: prodEnv(), Config: cfg, Capabilities: metalCaps()})
	var me *engine.MissingArgError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want *MissingArgError", err)
	}
	if diff := cmp.Diff([]string{"domain", "region"}, me.Args); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	want := `required ARG "domain", "region" has no value for environment "prod"; set it with --set domain=…, in a --values file, or once for the environment with 'k2 env set prod domain=…'`
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if code := usererr.ExitCode(nil, err); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
}

func TestPlanUnknownSet(t *testing.T) {
	_, err := engine.NewPlan(engine.PlanOptions{Env: prodEnv(), Config: config(), Sets: map[string]string{"domain": "x", "replcas": "3"}})
	if err == nil || !strings.Contains(err.Error(), "--set replcas: unknown ARG") || !strings.Contains(err.Error(), "declares: domain, mem, replicas, tag, workers") {
		t.Errorf("err = %v", err)
	}
}

func TestPlanMachines(t *testing.T) {
	env := prodEnv()
	p, err := engine.NewPlan(engine.PlanOptions{Env: env, Config: config(), Sets: map[string]string{"domain": "d", "workers": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	type m struct {
		Name, Pool, Role string
		CPU              int32
		Mem              int64
	}
	var got []m
	for _, x := range p.Machines {
		got = append(got, m{x.Name, x.Pool, x.Role, x.CPU, x.MemoryBytes})
	}
	want := []m{
		{"prod-control-plane-0", "control-plane", "control-plane", 2, 4 << 30},
		{"prod-worker-0", "worker", "worker", 2, 8 << 30}, // 1500m rounds up to 2 cores
		{"prod-worker-1", "worker", "worker", 2, 8 << 30},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Request ids: stable for the env, distinct per machine, new for a re-created env.
	again, _ := engine.NewPlan(engine.PlanOptions{Env: env, Config: config(), Sets: map[string]string{"domain": "d", "workers": "2"}})
	seen := map[string]bool{}
	for i, x := range p.Machines {
		if again.Machines[i].RequestID != x.RequestID {
			t.Errorf("request id of %s changed between plans", x.Name)
		}
		if seen[x.RequestID] || !strings.HasPrefix(x.RequestID, "k2-") || len(x.RequestID) != 35 {
			t.Errorf("request id %q duplicate or malformed", x.RequestID)
		}
		seen[x.RequestID] = true
	}
	recreated := *env
	recreated.UID = "fedcba9876543210"
	if engine.RequestID(&recreated, "worker", 0) == engine.RequestID(env, "worker", 0) {
		t.Error("a re-created environment reuses request ids")
	}

	// No MACHINES: one control-plane machine of the provider's default size.
	cfg := config()
	cfg.Machines = nil
	p, err = engine.NewPlan(engine.PlanOptions{Env: env, Config: cfg, Sets: map[string]string{"domain": "d"}})
	if err != nil || len(p.Machines) != 1 || p.Machines[0].Role != "control-plane" || p.Machines[0].CPU != 0 {
		t.Errorf("default pools: %+v, %v", p, err)
	}
}

func TestPlanBadTemplates(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool artifact.MachineSpec
		sets map[string]string
		want string
	}{
		{"bad count", artifact.MachineSpec{Pool: "worker", Count: "${workers}"}, map[string]string{"workers": "many"}, `MACHINES worker: count "${workers}": "many" is not a whole number`},
		{"negative", artifact.MachineSpec{Pool: "worker", Count: "${workers}"}, map[string]string{"workers": "-1"}, `is not a whole number ≥ 0`},
		{"bad memory", artifact.MachineSpec{Pool: "worker", Count: "1", Memory: "${mem}"}, map[string]string{"mem": "lots"}, `MACHINES worker: memory "${mem}"`},
		{"undeclared", artifact.MachineSpec{Pool: "worker", Count: "${nope}"}, nil, `MACHINES worker: count "${nope}"`},
		{"no control plane", artifact.MachineSpec{Pool: "control-plane", Count: "${workers}"}, map[string]string{"workers": "0"}, "pool control-plane has no machine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config()
			cfg.Machines = []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, tc.pool}
			if tc.pool.Pool == "control-plane" {
				cfg.Machines = cfg.Machines[1:]
			}
			sets := map[string]string{"domain": "d"}
			for k, v := range tc.sets {
				sets[k] = v
			}
			_, err := engine.NewPlan(engine.PlanOptions{Env: prodEnv(), Config: cfg, Sets: sets})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if code := usererr.ExitCode(nil, err); code != 3 {
				t.Errorf("exit code %d, want 3", code)
			}
		})
	}
}

func TestPlanCapabilities(t *testing.T) {
	type capErr struct{ Pool, Capability string }
	for _, tc := range []struct {
		name     string
		caps     func(c *sdk.Capabilities)
		pools    []artifact.MachineSpec
		want     []capErr
		contains string
	}{
		{name: "fits", caps: func(*sdk.Capabilities) {}},
		{name: "arch", caps: func(c *sdk.Capabilities) {}, pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "gpu", Count: "2", Arch: "arm64"}},
			want: []capErr{{"gpu", "arch"}}, contains: "pool gpu: arch: provider metal does not offer arm64 (it offers amd64)"},
		{name: "size too big", caps: func(*sdk.Capabilities) {}, pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", CPU: "16"}},
			want: []capErr{{"control-plane", "size"}}, contains: "no machine class of provider metal has 16 CPU (classes: large=8 CPU, 32Gi memory"},
		{name: "no sizes at all", caps: func(c *sdk.Capabilities) { c.Classes = nil }, pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", Memory: "2Gi"}},
			want: []capErr{{"control-plane", "size"}}, contains: "takes neither custom sizes nor machine classes"},
		{name: "custom sizes", caps: func(c *sdk.Capabilities) { c.Classes, c.CustomSizes = nil, true }, pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", CPU: "64"}}},
		{name: "count", caps: func(c *sdk.Capabilities) { c.MaxMachines = 2 }, pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "3"}},
			want: []capErr{{"worker", "count"}}, contains: "pool worker: count: 3 machines, but provider metal makes at most 2 per request"},
		{name: "bootstrap", caps: func(c *sdk.Capabilities) { c.BootstrapMethods = []string{"carrier-pigeon"} },
			want: []capErr{{"", "bootstrap"}}, contains: "provider metal: bootstrap: offers carrier-pigeon; k2 can deliver exec, user-data, network-boot"},
		{name: "all at once", caps: func(c *sdk.Capabilities) { c.BootstrapMethods = nil; c.MaxMachines = 1 },
			pools: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "arm", Count: "1", Arch: "arm64"}, {Pool: "worker", Count: "2"}},
			want:  []capErr{{"", "bootstrap"}, {"arm", "arch"}, {"worker", "count"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := metalCaps()
			tc.caps(caps)
			cfg := config()
			if tc.pools != nil {
				cfg.Machines = tc.pools
			}
			p, err := engine.NewPlan(engine.PlanOptions{Env: prodEnv(), Config: cfg, Sets: map[string]string{"domain": "d"}, Capabilities: caps})
			var got []capErr
			for _, e := range flatten(err) {
				var ce *engine.CapabilityError
				if errors.As(e, &ce) {
					got = append(got, capErr{ce.Pool, ce.Capability})
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("capability errors (-want +got):\n%s\nerr: %v", diff, err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.contains) || !strings.Contains(err.Error(), "nothing was created") {
					t.Errorf("message %q lacks %q", err, tc.contains)
				}
				if code := usererr.ExitCode(nil, err); code != 4 {
					t.Errorf("exit code %d, want 4", code)
				}
			} else if p.Bootstrap != sdk.BootstrapUserData {
				t.Errorf("bootstrap = %q, want user-data (k2's first preference the provider offers)", p.Bootstrap)
			}
		})
	}
}

// flatten unwraps joined errors into their leaves.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if _, ok := err.(*engine.CapabilityError); !ok { //nolint:errorlint // walks the tree itself
			return flatten(u)
		}
	}
	return []error{err}
}

// TestPlanDatastore: one server defaults to SQLite and more to an embedded
// etcd; an embedded etcd takes 1 or an odd number of servers, SQLite one; an
// external endpoint any number, and an ARG chooses per environment.
func TestPlanDatastore(t *testing.T) {
	for _, tc := range []struct {
		count, datastore, arg string
		want                  engine.PlanDatastore
		err                   string
	}{
		{count: "1", want: engine.PlanDatastore{Kind: "sqlite", Servers: 1}},
		{count: "3", want: engine.PlanDatastore{Kind: "etcd", Servers: 3}},
		{count: "5", datastore: "etcd", want: engine.PlanDatastore{Kind: "etcd", Servers: 5}},
		{count: "1", datastore: "etcd", want: engine.PlanDatastore{Kind: "etcd", Servers: 1}},
		{count: "3", datastore: "${ds}", arg: "postgres://k2:pw@127.0.0.1:1/k2", want: engine.PlanDatastore{Kind: "external", Endpoint: "postgres://k2:pw@127.0.0.1:1/k2", Servers: 3}},
		{count: "2", datastore: "etcd://127.0.0.1:1", want: engine.PlanDatastore{Kind: "external", Endpoint: "etcd://127.0.0.1:1", Servers: 2}},
		{count: "2", err: "odd number of servers"},
		{count: "4", datastore: "etcd", err: "use control-plane=3 or 5"},
		{count: "3", datastore: "sqlite", err: "SQLite serves one server"},
		{count: "3", datastore: "${ds}", arg: "mongodb://x", err: "neither sqlite, etcd nor"},
	} {
		t.Run(tc.count+" "+tc.datastore+" "+tc.arg, func(t *testing.T) {
			cfg := &artifact.Config{
				Args:     []artifact.ArgSpec{{Name: "ds", Default: ptr("etcd")}},
				Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: tc.count, Datastore: tc.datastore}, {Pool: "worker", Count: "1"}},
			}
			env := prodEnv()
			env.Values = map[string]string{}
			if tc.arg != "" {
				env.Values["ds"] = tc.arg
			}
			p, err := engine.NewPlan(engine.PlanOptions{Env: env, Config: cfg})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || usererr.ExitCode(nil, err) != 3 {
					t.Fatalf("err = %v, want %q (invalid)", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, p.Datastore); diff != "" {
				t.Errorf("datastore (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanOS: an artifact whose machines boot Talos (OS talos version=…)
// plans only against a provider that boots it; any other is refused before
// anything is made, naming the provider (exit 4).
func TestPlanOS(t *testing.T) {
	cfg := config()
	cfg.OS = &artifact.OSSpec{Name: "talos", Version: "v1.10.6"}
	opts := engine.PlanOptions{Env: &state.Environment{Name: "prod", UID: "u", Provider: "local"}, Config: cfg, Sets: map[string]string{"domain": "d"}, Capabilities: metalCaps()}
	_, err := engine.NewPlan(opts)
	var ce *engine.CapabilityError
	if !errors.As(err, &ce) || ce.Capability != "os" {
		t.Fatalf("err %v, want an os CapabilityError", err)
	}
	for _, want := range []string{"provider local: os: the artifact's machines boot talos", "provider local's machines boot only k2", "nothing was created"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if code := usererr.ExitCode(nil, err); code != 4 {
		t.Errorf("exit code %d, want 4", code)
	}

	caps := metalCaps()
	caps.OperatingSystems = []string{sdk.OSK2, sdk.OSTalos}
	opts.Capabilities = caps
	p, err := engine.NewPlan(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !p.ForeignOS() || p.Artifact.OS != "talos" || p.Artifact.OSVersion != "v1.10.6" {
		t.Errorf("plan artifact %+v", p.Artifact)
	}
	var b bytes.Buffer
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "OS:         talos v1.10.6") {
		t.Errorf("plan text lacks the OS:\n%s", b.String())
	}
	// k2 OS artifacts say nothing of the OS (the plan's JSON is stable).
	p, err = engine.NewPlan(engine.PlanOptions{Env: prodEnv(), Config: config(), Sets: map[string]string{"domain": "d"}, Capabilities: metalCaps()})
	if err != nil || p.ForeignOS() || p.Artifact.OS != "" {
		t.Errorf("k2 OS plan: %v %+v", err, p.Artifact)
	}
}
